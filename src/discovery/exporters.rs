//! `[exporter.<job>]`: each exporter's Service found through the
//! EndpointSlices of its namespaces.
//!
//! Requests are bounded by namespaces, not by exporters: one list and one
//! watch per distinct namespace that any exporter names (`scopes`), never
//! a cluster-wide one. Where one label selector says what every exporter
//! of a namespace wants (Services by name, or a single selector), the
//! server is asked for those slices alone; the view below matches every
//! slice itself all the same, so a server that ignores the selector gives
//! the same targets.
//!
//! A Service's labels are on its EndpointSlices too (the EndpointSlice
//! controller copies them), so a `selector` is matched on the slices and
//! no Service is read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::client::{KubeClient, Permission};
use super::decode::null_as_empty;
use super::objects::{Kind, SliceEndpoint, SlicePort};
use super::{DiscoveryError, JSON, Listed, encode, list_all};
use crate::config::cluster::PortRef;
use crate::config::exporter::{Exporter, Per, Selection};
use crate::config::names;
use crate::targets::ExporterTarget;

/// The label the EndpointSlice controller puts on every slice of a Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// An EndpointSlice with its labels (the Service's, copied).
#[derive(Debug, Deserialize)]
pub struct Slice {
    pub metadata: SliceMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<SlicePort>,
}

#[derive(Debug, Deserialize)]
pub struct SliceMeta {
    pub name: String,
    /// Absent in a namespace's list is that namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One namespace's EndpointSlices, as listed and watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub namespace: String,
    /// The `labelSelector` asked of the server, when one can say it.
    pub selector: Option<String>,
}

/// The namespaces to list and watch, sorted, each once.
pub fn scopes(exporters: &[Exporter]) -> Vec<Scope> {
    let mut namespaces: Vec<&str> = exporters
        .iter()
        .flat_map(|e| e.namespaces.iter().map(String::as_str))
        .collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    namespaces
        .into_iter()
        .map(|ns| {
            let wanted: Vec<&Selection> = exporters
                .iter()
                .filter(|e| e.namespaces.iter().any(|n| n == ns))
                .map(|e| &e.selection)
                .collect();
            Scope {
                namespace: ns.to_string(),
                selector: server_selector(&wanted),
            }
        })
        .collect()
}

/// One selector for all of `wanted`: Services by name (`in (…)`), or the
/// one selector they all share; `None` when it takes more than one.
fn server_selector(wanted: &[&Selection]) -> Option<String> {
    let mut services: Vec<&str> = Vec::new();
    for s in wanted {
        match s {
            Selection::Service(name) => services.push(name),
            Selection::Selector(pairs) => {
                let same = wanted.iter().all(|w| *w == *s);
                return same.then(|| {
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                });
            }
        }
    }
    services.sort_unstable();
    services.dedup();
    match services.as_slice() {
        [] => None,
        [one] => Some(format!("{SERVICE_NAME}={one}")),
        many => Some(format!("{SERVICE_NAME} in ({})", many.join(","))),
    }
}

pub fn path(scope: &Scope) -> String {
    let base = format!(
        "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices",
        scope.namespace
    );
    match &scope.selector {
        Some(s) => format!("{base}?labelSelector={}", encode(s)),
        None => base,
    }
}

const LIST: Permission = Permission {
    verb: "list",
    resource: "endpointslices",
};

/// One scope's slices by name, and the version to watch from.
pub type Known = (BTreeMap<String, Slice>, String);

pub async fn list(client: &KubeClient, scope: &Scope) -> Result<Known, DiscoveryError> {
    let path = path(scope);
    let listed: Listed<Slice> = list_all(
        client,
        &path,
        JSON,
        LIST,
        "endless pagination of EndpointSlices",
    )
    .await?
    .ok_or_else(|| DiscoveryError::NotFound {
        what: "the EndpointSlice API (discovery.k8s.io/v1, Kubernetes 1.21 and later), which exporters are found through".into(),
        url: path.clone(),
    })?;
    let slices = listed
        .items
        .into_iter()
        .map(|s| (s.metadata.name.clone(), s))
        .collect();
    Ok((slices, listed.version))
}

/// Every exporter's targets, by job, from what is known of each scope
/// (`known[i]` is `scopes[i]`'s); and why a job has none, when it is a
/// fact worth saying (no Service matched, not that port).
pub fn targets(
    exporters: &[Exporter],
    scopes: &[Scope],
    known: &[&BTreeMap<String, Slice>],
) -> (BTreeMap<String, Vec<ExporterTarget>>, Vec<String>) {
    let mut all = BTreeMap::new();
    let mut notes = Vec::new();
    for e in exporters {
        let mut found = Vec::new();
        let mut matched = Vec::new();
        let mut other_ports = Vec::new();
        for ns in &e.namespaces {
            let slices = scopes
                .iter()
                .position(|s| &s.namespace == ns)
                .and_then(|i| known.get(i));
            for slice in slices.into_iter().flat_map(|s| s.values()) {
                if !selects(&e.selection, &slice.metadata.labels) {
                    continue;
                }
                let Some(service) = slice.metadata.labels.get(SERVICE_NAME) else {
                    continue;
                };
                matched.push(format!("{ns}/{service}"));
                let before = found.len();
                targets_of_slice(e, ns, service, slice, &mut found);
                if found.len() == before {
                    other_ports.extend(slice.ports.iter().map(shown_port));
                }
            }
        }
        found.sort();
        found.dedup();
        if found.is_empty() {
            notes.extend(note(e, &matched, &other_ports));
        }
        all.insert(e.job.clone(), found);
    }
    (all, notes)
}

/// The targets one slice of `service` gives.
fn targets_of_slice(
    e: &Exporter,
    ns: &str,
    service: &str,
    slice: &Slice,
    out: &mut Vec<ExporterTarget>,
) {
    for port in slice.ports.iter().filter(|p| wanted_port(&e.ports, p)) {
        let Some(number) = port.port else {
            continue;
        };
        match e.per {
            Per::Service => {
                if names::is_label(service) {
                    let name = port.name.as_deref().filter(|n| !n.is_empty());
                    out.push(ExporterTarget {
                        namespace: ns.to_string(),
                        name: service.to_string(),
                        port: name.map_or_else(|| number.to_string(), str::to_string),
                        node: None,
                    });
                }
            }
            Per::Endpoint => out.extend(
                slice
                    .endpoints
                    .iter()
                    .filter_map(|ep| endpoint_target(ep, ns, number)),
            ),
        }
    }
}

/// A ready endpoint that is a pod, with names Kubernetes allows (they go
/// into the proxy path).
fn endpoint_target(ep: &SliceEndpoint, ns: &str, port: u16) -> Option<ExporterTarget> {
    if ep.conditions.ready == Some(false) {
        return None;
    }
    let target = ep.target_ref.as_ref()?;
    if target.kind.is_some_and(|k| k != Kind::Pod) {
        return None;
    }
    let namespace = target.namespace.as_deref().unwrap_or(ns);
    if !names::is_label(namespace) || !names::is_subdomain(&target.name) {
        return None;
    }
    Some(ExporterTarget {
        namespace: namespace.to_string(),
        name: target.name.to_string(),
        port: port.to_string(),
        node: ep
            .node_name
            .as_deref()
            .filter(|n| names::is_subdomain(n))
            .map(str::to_string),
    })
}

fn selects(selection: &Selection, labels: &BTreeMap<String, String>) -> bool {
    match selection {
        Selection::Service(name) => labels.get(SERVICE_NAME) == Some(name),
        Selection::Selector(pairs) => pairs.iter().all(|(k, v)| labels.get(k) == Some(v)),
    }
}

fn wanted_port(ports: &[PortRef], port: &SlicePort) -> bool {
    ports.iter().any(|want| match want {
        PortRef::Number(n) => port.port == Some(*n),
        PortRef::Name(name) => port.name.as_deref() == Some(name),
    })
}

fn shown_port(p: &SlicePort) -> String {
    format!(
        "{}={}",
        p.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("-"),
        p.port.map_or("-".into(), |n| n.to_string())
    )
}

fn note(e: &Exporter, matched: &[String], other_ports: &[String]) -> Option<String> {
    let ports: Vec<String> = e.ports.iter().map(ToString::to_string).collect();
    let ports = ports.join(" or ");
    if matched.is_empty() {
        let what = match &e.selection {
            Selection::Service(name) => format!("no Service `{name}`"),
            Selection::Selector(pairs) => format!(
                "no Service labelled {}",
                pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        return Some(format!(
            "exporter {}: {what} in namespace {} (no EndpointSlice says so)",
            e.job,
            e.namespaces.join(" or ")
        ));
    }
    if other_ports.is_empty() {
        // The slices are there but list no port: no pod behind the
        // Service yet, a fact of the moment.
        return None;
    }
    let mut matched = matched.to_vec();
    matched.sort();
    matched.dedup();
    let mut others = other_ports.to_vec();
    others.sort();
    others.dedup();
    Some(format!(
        "exporter {}: {} has no port {ports} (it has {})",
        e.job,
        matched.join(", "),
        others.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::Cluster;
    use crate::config::diagnostic::SourceText;

    fn exporters(tables: &str) -> Vec<Exporter> {
        let text = format!(
            "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"/t\"\nca_file = \"/ca\"\n{tables}"
        );
        Cluster::parse(&SourceText::new("/etc/promfed.d/c.toml", text), "c")
            .unwrap()
            .cluster
            .exporters
    }

    fn slices(json: serde_json::Value) -> BTreeMap<String, Slice> {
        let list: Vec<Slice> = serde_json::from_value(json).unwrap();
        list.into_iter()
            .map(|s| (s.metadata.name.clone(), s))
            .collect()
    }

    #[test]
    fn one_scope_per_namespace_narrowed_when_one_selector_says_it() {
        let all = exporters(concat!(
            "[exporter.kube-state-metrics]\n[exporter.kube-dns]\n",
            "[exporter.a]\nnamespace = \"apps\"\nservice = \"a\"\nport = 1\n",
            "[exporter.b]\nnamespace = \"apps\"\nservice = \"b\"\nport = 1\n",
            "[exporter.t]\nnamespace = \"traefik\"\nselector = \"app=traefik\"\nport = 1\n",
        ));
        let s = scopes(&all);
        let shown: Vec<(&str, Option<&str>)> = s
            .iter()
            .map(|s| (s.namespace.as_str(), s.selector.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                ("apps", Some("kubernetes.io/service-name in (a,b)")),
                // kube-dns and kube-state-metrics share it: two selectors.
                ("kube-system", None),
                (
                    "monitoring",
                    Some("app.kubernetes.io/name=kube-state-metrics")
                ),
                ("traefik", Some("app=traefik")),
            ]
        );
        assert_eq!(
            path(&s[0]),
            "/apis/discovery.k8s.io/v1/namespaces/apps/endpointslices?labelSelector=kubernetes.io%2Fservice-name+in+%28a%2Cb%29"
        );
    }

    /// The view alone, on slices as a server in "null" or "omit" shape
    /// sends them: ready pods per endpoint, one target per Service port.
    #[test]
    fn objects_to_targets_per_endpoint_and_per_service() {
        let all = exporters("[exporter.kube-state-metrics]\n[exporter.kube-dns]\n");
        let scopes = scopes(&all);
        let kube_system = slices(serde_json::json!([
            {"metadata": {"name": "kube-dns-1", "labels": {"k8s-app": "kube-dns", "kubernetes.io/service-name": "kube-dns"}},
             "ports": [{"name": "dns", "port": 53}, {"name": "metrics", "port": 9153}],
             "endpoints": [
                {"conditions": {"ready": true}, "nodeName": "n-1", "targetRef": {"kind": "Pod", "name": "coredns-a", "namespace": "kube-system"}},
                {"conditions": null, "targetRef": {"kind": "Pod", "name": "coredns-b"}},
                {"conditions": {"ready": false}, "nodeName": "n-3", "targetRef": {"kind": "Pod", "name": "coredns-c"}},
                {"nodeName": "n-4", "targetRef": {"kind": "Pod", "name": "../x"}}]},
            {"metadata": {"name": "placeholder", "labels": null}, "endpoints": null, "ports": null},
        ]));
        let monitoring = slices(serde_json::json!([
            {"metadata": {"name": "ksm-1", "labels": {"app.kubernetes.io/name": "kube-state-metrics", "kubernetes.io/service-name": "kube-state-metrics"}},
             "ports": [{"name": "http-metrics", "port": 8080}, {"name": "telemetry", "port": 8081}],
             "endpoints": [{"targetRef": {"kind": "Pod", "name": "ksm-0"}}, {"targetRef": {"kind": "Pod", "name": "ksm-1"}}]},
        ]));
        let (found, notes) = targets(&all, &scopes, &[&kube_system, &monitoring]);
        let dns: Vec<(&str, Option<&str>, &str)> = found["kube-dns"]
            .iter()
            .map(|t| (t.name.as_str(), t.node.as_deref(), t.port.as_str()))
            .collect();
        assert_eq!(
            dns,
            [
                ("coredns-a", Some("n-1"), "9153"),
                ("coredns-b", None, "9153")
            ]
        );
        let ksm = &found["kube-state-metrics"];
        assert_eq!(
            ksm.len(),
            1,
            "one target per Service port, not per pod: {ksm:?}"
        );
        assert_eq!(
            (
                ksm[0].namespace.as_str(),
                ksm[0].name.as_str(),
                ksm[0].port.as_str()
            ),
            ("monitoring", "kube-state-metrics", "http-metrics")
        );
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_missing_service_or_port_is_a_note_not_a_failure() {
        let all = exporters(
            "[exporter.kube-dns]\n[exporter.t]\nnamespace = \"kube-system\"\nservice = \"kube-dns\"\nport = \"web\"\n",
        );
        let scopes = scopes(&all);
        let kube_system = slices(serde_json::json!([
            {"metadata": {"name": "kube-dns-1", "labels": {"kubernetes.io/service-name": "kube-dns"}},
             "ports": [{"name": "dns", "port": 53}], "endpoints": []},
        ]));
        let (found, notes) = targets(&all, &scopes, &[&kube_system]);
        assert!(found.values().all(Vec::is_empty));
        assert_eq!(
            notes,
            [
                "exporter kube-dns: no Service labelled k8s-app=kube-dns in namespace kube-system (no EndpointSlice says so)",
                "exporter t: kube-system/kube-dns has no port web (it has dns=53)",
            ]
        );
    }
}
