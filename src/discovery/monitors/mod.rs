//! `[monitors]`: the cluster's ServiceMonitors and PodMonitors, and the
//! EndpointSlices and pods their targets are found in, listed then
//! watched in each namespace of `[monitors] namespaces` (or once,
//! cluster-wide). A server without the monitoring.coreos.com/v1 group
//! (a 404) has no monitors: said once, no watch, nothing else listed.
//!
//! Requests per scope: one list and one watch each of servicemonitors,
//! podmonitors, endpointslices (when ServiceMonitors are served) and pods
//! (when PodMonitors are), whatever the monitors say: the watches do not
//! change when a monitor does.

pub mod jobs;
pub mod objects;
pub mod targets;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::client::{KubeClient, Permission, RawEvent};
use super::exporters::Slice;
use super::{DiscoveryError, JSON, Listed, decode, encode, list_all};
use crate::config::monitors::{MonitorKind, Monitors};
use crate::targets::MonitorsFound;
use objects::Monitor;
use targets::Pod;

/// What one scope lists and watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    ServiceMonitors,
    PodMonitors,
    Slices,
    Pods,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::ServiceMonitors,
        Resource::PodMonitors,
        Resource::Slices,
        Resource::Pods,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::ServiceMonitors => "servicemonitors",
            Resource::PodMonitors => "podmonitors",
            Resource::Slices => "endpointslices",
            Resource::Pods => "pods",
        }
    }

    pub fn permission(self, verb: &'static str) -> Permission {
        Permission {
            verb,
            resource: self.name(),
        }
    }
}

/// Each namespace of `[monitors] namespaces`, or all (`None`).
pub fn scopes(m: &Monitors) -> Vec<Option<String>> {
    if m.namespaces.is_empty() {
        vec![None]
    } else {
        m.namespaces.iter().cloned().map(Some).collect()
    }
}

/// The list (and watch) path of `resource` in `scope`; monitors are asked
/// for with `[monitors] selector`.
pub fn path(m: &Monitors, scope: &Option<String>, resource: Resource) -> String {
    let group = match resource {
        Resource::ServiceMonitors | Resource::PodMonitors => "/apis/monitoring.coreos.com/v1",
        Resource::Slices => "/apis/discovery.k8s.io/v1",
        Resource::Pods => "/api/v1",
    };
    let ns = scope
        .as_ref()
        .map_or(String::new(), |ns| format!("/namespaces/{ns}"));
    let mut path = format!("{group}{ns}/{}", resource.name());
    let monitors = matches!(resource, Resource::ServiceMonitors | Resource::PodMonitors);
    if monitors && !m.selector.is_empty() {
        let selector: Vec<String> = m.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        path.push_str(&format!("?labelSelector={}", encode(&selector.join(","))));
    }
    path
}

/// One resource's objects in one scope by `namespace/name`, the version
/// to watch from, and the objects that would not decode (a note each).
pub struct Held<T> {
    items: BTreeMap<String, T>,
    version: String,
    undecodable: BTreeMap<String, String>,
}

/// At most this many undecodable objects are remembered per resource.
const MAX_UNDECODABLE: usize = 20;

impl<T: DeserializeOwned> Held<T> {
    fn new(listed: Listed<serde_json::Value>, prepare: fn(&mut T)) -> Held<T> {
        let mut held = Held {
            items: BTreeMap::new(),
            version: listed.version,
            undecodable: BTreeMap::new(),
        };
        for item in &listed.items {
            held.put(item, prepare);
        }
        held
    }

    /// Takes in one object; whether anything changed.
    fn put(&mut self, object: &serde_json::Value, prepare: fn(&mut T)) -> bool {
        let key = key_of(object);
        match decode::from_value::<T>(object) {
            Ok(mut item) => {
                prepare(&mut item);
                self.undecodable.remove(&key);
                self.items.insert(key, item);
            }
            Err(why) => {
                self.items.remove(&key);
                if self.undecodable.len() < MAX_UNDECODABLE {
                    self.undecodable.insert(key, why);
                }
            }
        }
        true
    }

    fn remove(&mut self, object: &serde_json::Value) -> bool {
        let key = key_of(object);
        self.undecodable.remove(&key).is_some() | self.items.remove(&key).is_some()
    }
}

/// `namespace/name`, escaped: only a key, and shown in notes.
fn key_of(object: &serde_json::Value) -> String {
    let meta = &object["metadata"];
    let field = |f: &str| {
        meta[f]
            .as_str()
            .unwrap_or_default()
            .escape_debug()
            .to_string()
    };
    format!("{}/{}", field("namespace"), field("name"))
}

/// One scope's lists; `None`: the server does not serve it (monitors) or
/// no monitor kind needs it (slices, pods).
#[derive(Default)]
pub struct Scope {
    service_monitors: Option<Held<Monitor>>,
    pod_monitors: Option<Held<Monitor>>,
    slices: Option<Held<Slice>>,
    pods: Option<Held<Pod>>,
}

/// What is known of a cluster's monitors between two lists.
pub struct Known {
    scopes: Vec<Scope>,
}

fn service_kind(m: &mut Monitor) {
    m.kind = MonitorKind::Service;
}
fn pod_kind(m: &mut Monitor) {
    m.kind = MonitorKind::Pod;
}
fn nothing<T>(_: &mut T) {}

/// Lists one resource; `None` on a 404 (the group or CRD is not served).
async fn list_one(
    client: &KubeClient,
    path: &str,
    resource: Resource,
) -> Result<Option<Listed<serde_json::Value>>, DiscoveryError> {
    list_all(
        client,
        path,
        JSON,
        resource.permission("list"),
        "endless pagination of monitors, slices or pods",
    )
    .await
}

/// Lists `scope`; `admit` waits for each request's turn.
pub async fn list_scope<F: Future<Output = ()>>(
    client: &KubeClient,
    m: &Monitors,
    scope: &Option<String>,
    mut admit: impl FnMut(Resource) -> F,
) -> Result<Scope, DiscoveryError> {
    let mut known = Scope::default();
    admit(Resource::ServiceMonitors).await;
    let sm = list_one(
        client,
        &path(m, scope, Resource::ServiceMonitors),
        Resource::ServiceMonitors,
    )
    .await?;
    known.service_monitors = sm.map(|l| Held::new(l, service_kind));
    admit(Resource::PodMonitors).await;
    let pm = list_one(
        client,
        &path(m, scope, Resource::PodMonitors),
        Resource::PodMonitors,
    )
    .await?;
    known.pod_monitors = pm.map(|l| Held::new(l, pod_kind));
    for (wanted, resource) in [
        (known.service_monitors.is_some(), Resource::Slices),
        (known.pod_monitors.is_some(), Resource::Pods),
    ] {
        if !wanted {
            continue;
        }
        admit(resource).await;
        let url = path(m, scope, resource);
        let listed =
            list_one(client, &url, resource)
                .await?
                .ok_or_else(|| DiscoveryError::NotFound {
                    what: format!(
                        "the {} API, which monitors' targets are found in",
                        resource.name()
                    ),
                    url,
                })?;
        match resource {
            Resource::Slices => known.slices = Some(Held::new(listed, nothing)),
            _ => known.pods = Some(Held::new(listed, nothing)),
        }
    }
    Ok(known)
}

impl Known {
    pub fn new(scopes: Vec<Scope>) -> Known {
        Known { scopes }
    }

    /// The watches: every resource listed, in every scope.
    pub fn watches(&self) -> Vec<(usize, Resource)> {
        let mut all = Vec::new();
        for (i, s) in self.scopes.iter().enumerate() {
            for (listed, r) in [
                (s.service_monitors.is_some(), Resource::ServiceMonitors),
                (s.pod_monitors.is_some(), Resource::PodMonitors),
                (s.slices.is_some(), Resource::Slices),
                (s.pods.is_some(), Resource::Pods),
            ] {
                if listed {
                    all.push((i, r));
                }
            }
        }
        all
    }

    pub fn version(&mut self, scope: usize, r: Resource) -> Option<&mut String> {
        let s = self.scopes.get_mut(scope)?;
        match r {
            Resource::ServiceMonitors => s.service_monitors.as_mut().map(|h| &mut h.version),
            Resource::PodMonitors => s.pod_monitors.as_mut().map(|h| &mut h.version),
            Resource::Slices => s.slices.as_mut().map(|h| &mut h.version),
            Resource::Pods => s.pods.as_mut().map(|h| &mut h.version),
        }
    }

    /// Takes in a watch event; whether anything changed.
    pub fn take_in(&mut self, scope: usize, r: Resource, event: &RawEvent) -> bool {
        let Some(s) = self.scopes.get_mut(scope) else {
            return false;
        };
        let deleted = match event.kind.as_str() {
            "ADDED" | "MODIFIED" => false,
            "DELETED" => true,
            _ => return false,
        };
        let o = &event.object;
        match r {
            Resource::ServiceMonitors => s
                .service_monitors
                .as_mut()
                .is_some_and(|h| change(h, o, deleted, service_kind)),
            Resource::PodMonitors => s
                .pod_monitors
                .as_mut()
                .is_some_and(|h| change(h, o, deleted, pod_kind)),
            Resource::Slices => s
                .slices
                .as_mut()
                .is_some_and(|h| change(h, o, deleted, nothing)),
            Resource::Pods => s
                .pods
                .as_mut()
                .is_some_and(|h| change(h, o, deleted, nothing)),
        }
    }

    /// The jobs, targets and notes of what is known.
    pub fn found(&self, wanted: &Monitors, max_targets: usize) -> MonitorsFound {
        let mut monitors: Vec<Monitor> = Vec::new();
        let mut notes = Vec::new();
        let mut served = false;
        for s in &self.scopes {
            for (held, word) in [
                (&s.service_monitors, "ServiceMonitor"),
                (&s.pod_monitors, "PodMonitor"),
            ] {
                let Some(h) = held else { continue };
                served = true;
                monitors.extend(h.items.values().cloned());
                notes.extend(
                    h.undecodable
                        .iter()
                        .map(|(k, why)| format!("the {word} {k} is skipped: {why}")),
                );
            }
        }
        if !served {
            notes.push("the cluster serves no monitoring.coreos.com/v1 (no ServiceMonitor or PodMonitor CRD): no monitor jobs".into());
        }
        let (jobs, job_notes) = jobs::jobs(wanted, &monitors);
        notes.extend(job_notes);
        let slices = self
            .scopes
            .iter()
            .filter_map(|s| s.slices.as_ref())
            .flat_map(|h| h.items.values());
        let pods = self
            .scopes
            .iter()
            .filter_map(|s| s.pods.as_ref())
            .flat_map(|h| h.items.values());
        let targets = targets::targets(&jobs, slices, pods, max_targets, &mut notes);
        MonitorsFound {
            state: state_text(&monitors),
            jobs,
            targets,
            notes,
        }
    }
}

fn change<T: DeserializeOwned>(
    held: &mut Held<T>,
    object: &serde_json::Value,
    deleted: bool,
    prepare: fn(&mut T),
) -> bool {
    if deleted {
        held.remove(object)
    } else {
        held.put(object, prepare)
    }
}

/// The monitors as the state file keeps them.
fn state_text(monitors: &[Monitor]) -> String {
    serde_json::to_string(monitors).unwrap_or_else(|_| "[]".into())
}

/// The jobs of the monitors a state file keeps (what the transaction
/// renders); a file that does not decode is no monitors, said.
pub fn jobs_of_state(
    wanted: &Monitors,
    text: &[u8],
) -> Result<Vec<crate::config::monitors::MonitorJob>, String> {
    let monitors: Vec<Monitor> = decode::from_slice(text)?;
    Ok(jobs::jobs(wanted, &monitors).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Monitors {
        Monitors {
            namespaces: vec![],
            selector: vec![],
        }
    }

    #[test]
    fn paths_per_scope_with_the_monitor_selector() {
        let narrowed = Monitors {
            namespaces: vec!["a".into()],
            selector: vec![("release".into(), "prom".into())],
        };
        let scope = scopes(&narrowed).remove(0);
        assert_eq!(
            path(&narrowed, &scope, Resource::ServiceMonitors),
            "/apis/monitoring.coreos.com/v1/namespaces/a/servicemonitors?labelSelector=release%3Dprom"
        );
        assert_eq!(
            path(&narrowed, &scope, Resource::Pods),
            "/api/v1/namespaces/a/pods"
        );
        assert_eq!(
            path(&all(), &None, Resource::Slices),
            "/apis/discovery.k8s.io/v1/endpointslices"
        );
    }

    #[test]
    fn events_change_what_is_held_and_a_bad_object_is_a_note() {
        let listed = Listed {
            items: vec![
                serde_json::json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"endpoints": [{"port": "w"}]}}),
            ],
            version: "1".into(),
        };
        let mut known = Known::new(vec![Scope {
            service_monitors: Some(Held::new(listed, service_kind)),
            ..Scope::default()
        }]);
        assert_eq!(known.found(&all(), 10).jobs.len(), 1);
        let event = |kind: &str, object: serde_json::Value| RawEvent {
            kind: kind.into(),
            object,
        };
        let bad = event(
            "ADDED",
            serde_json::json!({"metadata": {"name": "b", "namespace": "n"}, "spec": {"endpoints": "nope"}}),
        );
        assert!(known.take_in(0, Resource::ServiceMonitors, &bad));
        let found = known.found(&all(), 10);
        assert_eq!(found.jobs.len(), 1, "the good one stays");
        assert!(
            found
                .notes
                .iter()
                .any(|n| n.starts_with("the ServiceMonitor n/b is skipped")),
            "{:?}",
            found.notes
        );
        let gone = event(
            "DELETED",
            serde_json::json!({"metadata": {"name": "a", "namespace": "n"}}),
        );
        assert!(known.take_in(0, Resource::ServiceMonitors, &gone));
        assert!(known.found(&all(), 10).jobs.is_empty());
        let state = known.found(&all(), 10).state;
        assert_eq!(jobs_of_state(&all(), state.as_bytes()).unwrap(), vec![]);
    }

    #[test]
    fn no_group_is_one_note() {
        let found = Known::new(vec![Scope::default()]).found(&all(), 10);
        assert_eq!(found.notes.len(), 1);
        assert!(found.notes[0].contains("serves no monitoring.coreos.com/v1"));
    }
}
