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
    shards: &Shards,
) -> (BTreeMap<String, Vec<ExporterTarget>>, Vec<String>) {
    let mut all = BTreeMap::new();
    let mut notes = Vec::new();
    for e in exporters {
        let pods = if e.detect_shards {
            service_pods(e, scopes, known)
        } else {
            BTreeMap::new()
        };
        let mut found = Vec::new();
        let mut matched = Vec::new();
        let mut other_ports = Vec::new();
        for (ns, service, slice) in selected_slices(e, scopes, known) {
            matched.push(format!("{ns}/{service}"));
            let before = found.len();
            let per = match pods.get(&(ns.to_string(), service.to_string())) {
                Some(ready) => decide(ready, shards),
                None => e.per,
            };
            targets_of_slice(e, per, ns, service, slice, &mut found);
            if found.len() == before {
                other_ports.extend(slice.ports.iter().map(shown_port));
            }
        }
        found.sort();
        found.dedup();
        notes.extend(unread_notes(e, &pods, shards));
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
    per: Per,
    ns: &str,
    service: &str,
    slice: &Slice,
    out: &mut Vec<ExporterTarget>,
) {
    for port in slice.ports.iter().filter(|p| wanted_port(&e.ports, p)) {
        let Some(number) = port.port else {
            continue;
        };
        match per {
            Per::Service => {
                if names::is_label(service) {
                    let name = port.name.as_deref().filter(|n| !n.is_empty());
                    out.push(ExporterTarget {
                        namespace: ns.to_string(),
                        name: service.to_string(),
                        port: name.map_or_else(|| number.to_string(), str::to_string),
                        node: None,
                        per,
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
        per: Per::Endpoint,
    })
}

/// A pod read to tell a shard: namespace, name and uid (a StatefulSet's
/// pod keeps its name when it is made again).
pub type PodKey = (String, String, String);

/// What reading each pod said: sharded or not, or why it could not be read.
pub type Shards = BTreeMap<PodKey, Result<bool, String>>;

/// At most this many pods are read at once, whatever the slices say.
pub const MAX_SHARD_READS: usize = 8;

/// Each slice of a Service `e` selects, with its namespace and Service.
fn selected_slices<'a>(
    e: &'a Exporter,
    scopes: &'a [Scope],
    known: &'a [&'a BTreeMap<String, Slice>],
) -> impl Iterator<Item = (&'a str, &'a str, &'a Slice)> + 'a {
    e.namespaces.iter().flat_map(move |ns| {
        let slices = scopes
            .iter()
            .position(|s| &s.namespace == ns)
            .and_then(|i| known.get(i));
        slices
            .into_iter()
            .flat_map(|s| s.values())
            .filter(|slice| selects(&e.selection, &slice.metadata.labels))
            .filter_map(move |slice| {
                let service = slice.metadata.labels.get(SERVICE_NAME)?;
                Some((ns.as_str(), service.as_str(), slice))
            })
    })
}

/// The ready pods behind each `(namespace, service)` an exporter selects.
fn service_pods(
    e: &Exporter,
    scopes: &[Scope],
    known: &[&BTreeMap<String, Slice>],
) -> BTreeMap<(String, String), Vec<PodKey>> {
    let mut all: BTreeMap<(String, String), Vec<PodKey>> = BTreeMap::new();
    for (ns, service, slice) in selected_slices(e, scopes, known) {
        let ready = all
            .entry((ns.to_string(), service.to_string()))
            .or_default();
        for ep in &slice.endpoints {
            if let Some(t) = endpoint_target(ep, ns, 0) {
                let uid = ep
                    .target_ref
                    .as_ref()
                    .and_then(|r| r.uid.as_deref())
                    .unwrap_or_default();
                ready.push((t.namespace, t.name, uid.to_string()));
            }
        }
    }
    for ready in all.values_mut() {
        ready.sort();
        ready.dedup();
    }
    all
}

/// Per endpoint when a Service has more than one ready pod and a pod read
/// of them is a shard (the pods of one Deployment or StatefulSet share
/// their arguments); per service otherwise, unread or unreadable too.
pub fn decide(ready: &[PodKey], shards: &Shards) -> Per {
    let sharded = ready.len() > 1 && ready.iter().any(|k| shards.get(k) == Some(&Ok(true)));
    if sharded { Per::Endpoint } else { Per::Service }
}

/// Whether a container's command and arguments make it one shard of
/// several: `--total-shards` above 1 (manual sharding), or `--pod` /
/// `--pod-namespace` (automated sharding, in a StatefulSet).
pub fn is_sharded<'a>(words: impl IntoIterator<Item = &'a str>) -> bool {
    let words: Vec<&str> = words.into_iter().flat_map(str::split_whitespace).collect();
    words.iter().enumerate().any(|(i, word)| {
        let flag = word.trim_start_matches('-');
        if flag.len() == word.len() {
            return false;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, words.get(i + 1).copied()),
        };
        match name {
            "pod" | "pod-namespace" => true,
            // Unreadable is taken as sharded: `--total-shards` is there.
            "total-shards" => value
                .and_then(|v| v.trim_matches(['"', '\'']).parse::<u64>().ok())
                .is_none_or(|n| n > 1),
            _ => false,
        }
    })
}

/// The pods to read so that each Service of a `detect_shards` exporter
/// with more than one ready pod has one pod read: at most
/// `MAX_SHARD_READS`; and every pod that still counts, to prune the rest.
pub fn shard_reads(
    exporters: &[Exporter],
    scopes: &[Scope],
    known: &[&BTreeMap<String, Slice>],
    shards: &Shards,
) -> (Vec<PodKey>, Vec<PodKey>) {
    let mut wanted = Vec::new();
    let mut live = Vec::new();
    for e in exporters.iter().filter(|e| e.detect_shards) {
        for ready in service_pods(e, scopes, known).into_values() {
            if ready.len() > 1 && !ready.iter().any(|k| shards.contains_key(k)) {
                wanted.push(ready[0].clone());
            }
            live.extend(ready);
        }
    }
    wanted.truncate(MAX_SHARD_READS);
    (wanted, live)
}

/// A pod as read to tell a shard: its containers' command and arguments.
#[derive(Debug, Deserialize)]
struct ShardPod {
    #[serde(default, deserialize_with = "null_as_empty")]
    spec: ShardSpec,
}

#[derive(Debug, Default, Deserialize)]
struct ShardSpec {
    #[serde(default, deserialize_with = "null_as_empty")]
    containers: Vec<ShardContainer>,
}

#[derive(Debug, Default, Deserialize)]
struct ShardContainer {
    #[serde(default, deserialize_with = "null_as_empty")]
    command: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    args: Vec<String>,
}

const GET_PODS: Permission = Permission {
    verb: "get",
    resource: "pods",
};

/// Reads each pod of `wanted` once into `shards`; a failure is kept as
/// its reason (the Service stays per service) and is not the cluster's.
pub async fn read_shards(client: &KubeClient, wanted: Vec<PodKey>, shards: &mut Shards) {
    for key in wanted {
        let path = format!("/api/v1/namespaces/{}/pods/{}", key.0, key.1);
        let said = match client.get::<ShardPod>(&path, JSON, GET_PODS).await {
            Ok(Some(pod)) => Ok(pod
                .spec
                .containers
                .iter()
                .any(|c| is_sharded(c.command.iter().chain(&c.args).map(String::as_str)))),
            Ok(None) => Err("not found".to_string()),
            Err(e) => Err(client.redact(&e.to_string())),
        };
        shards.insert(key, said);
    }
}

/// Why a Service with several pods is per service for want of reading one.
fn unread_notes(
    e: &Exporter,
    pods: &BTreeMap<(String, String), Vec<PodKey>>,
    shards: &Shards,
) -> Vec<String> {
    let mut notes = Vec::new();
    for ((ns, service), ready) in pods {
        if ready.len() < 2 || decide(ready, shards) == Per::Endpoint {
            continue;
        }
        if let Some((k, Err(why))) = ready.iter().find_map(|k| shards.get(k).map(|s| (k, s))) {
            notes.push(format!(
                "exporter {}: pod {}/{} of {ns}/{service} could not be read to tell whether it is sharded ({why}): scraped per service",
                e.job, k.0, k.1
            ));
        }
    }
    notes
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
        let (found, notes) = targets(&all, &scopes, &[&kube_system, &monitoring], &Shards::new());
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
        let (found, notes) = targets(&all, &scopes, &[&kube_system], &Shards::new());
        assert!(found.values().all(Vec::is_empty));
        assert_eq!(
            notes,
            [
                "exporter kube-dns: no Service labelled k8s-app=kube-dns in namespace kube-system (no EndpointSlice says so)",
                "exporter t: kube-system/kube-dns has no port web (it has dns=53)",
            ]
        );
    }

    #[test]
    fn shards_are_told_by_total_shards_above_one_or_automated_sharding() {
        let sharded = |words: &[&str]| is_sharded(words.iter().copied());
        assert!(sharded(&[
            "/kube-state-metrics",
            "--shard=1",
            "--total-shards=2"
        ]));
        assert!(sharded(&["--total-shards", "3"]));
        assert!(sharded(&[
            "sh",
            "-c",
            "exec kube-state-metrics --total-shards=2"
        ]));
        assert!(sharded(&[
            "--pod=$(POD_NAME)",
            "--pod-namespace=$(POD_NAMESPACE)"
        ]));
        assert!(sharded(&["--total-shards=lots"]), "there, unreadable");
        assert!(!sharded(&["--total-shards=1", "--shard=0"]));
        assert!(!sharded(&["--port=8080", "--telemetry-port=8081"]));
        assert!(!sharded(&["pod", "total-shards=2", ""]));
        assert!(!sharded(&[]));
    }

    #[test]
    fn several_pods_of_which_one_read_is_a_shard_are_per_endpoint() {
        let key = |n: &str| ("monitoring".to_string(), n.to_string(), format!("u-{n}"));
        let (a, b) = (key("ksm-0"), key("ksm-1"));
        let mut shards = Shards::new();
        assert_eq!(
            decide(&[a.clone(), b.clone()], &shards),
            Per::Service,
            "unread"
        );
        shards.insert(a.clone(), Ok(true));
        assert_eq!(decide(&[a.clone(), b.clone()], &shards), Per::Endpoint);
        assert_eq!(
            decide(std::slice::from_ref(&a), &shards),
            Per::Service,
            "one pod"
        );
        shards.insert(a.clone(), Ok(false));
        assert_eq!(decide(&[a.clone(), b.clone()], &shards), Per::Service);
        shards.insert(a.clone(), Err("forbidden".into()));
        assert_eq!(decide(&[a, b], &shards), Per::Service);
    }

    /// Two ready pods behind kube-state-metrics: one is read (bounded), and
    /// the targets follow what it said; an unreadable pod is a note.
    #[test]
    fn a_sharded_kube_state_metrics_is_per_endpoint_an_unsharded_one_per_service() {
        let all = exporters("[exporter.kube-state-metrics]\n");
        let scopes = scopes(&all);
        let monitoring = slices(serde_json::json!([
            {"metadata": {"name": "ksm-1", "labels": {"app.kubernetes.io/name": "kube-state-metrics", "kubernetes.io/service-name": "kube-state-metrics"}},
             "ports": [{"name": "http-metrics", "port": 8080}],
             "endpoints": [
                {"nodeName": "n-1", "targetRef": {"kind": "Pod", "name": "ksm-0", "uid": "u0"}},
                {"nodeName": "n-2", "targetRef": {"kind": "Pod", "name": "ksm-1", "uid": "u1"}},
                {"conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "ksm-2", "uid": "u2"}}]},
        ]));
        let known = [&BTreeMap::new(), &monitoring];
        let mut shards = Shards::new();
        let (wanted, live) = shard_reads(&all, &scopes, &known, &shards);
        let first = (
            "monitoring".to_string(),
            "ksm-0".to_string(),
            "u0".to_string(),
        );
        assert_eq!(wanted, std::slice::from_ref(&first), "one pod per Service");
        assert_eq!(live.len(), 2, "ready pods only: {live:?}");
        shards.insert(first.clone(), Ok(true));
        assert!(shard_reads(&all, &scopes, &known, &shards).0.is_empty());
        let (found, notes) = targets(&all, &scopes, &known, &shards);
        let ksm: Vec<(&str, &str, Per)> = found["kube-state-metrics"]
            .iter()
            .map(|t| (t.name.as_str(), t.port.as_str(), t.per))
            .collect();
        assert_eq!(
            ksm,
            [
                ("ksm-0", "8080", Per::Endpoint),
                ("ksm-1", "8080", Per::Endpoint)
            ]
        );
        assert!(notes.is_empty(), "{notes:?}");
        shards.insert(first.clone(), Ok(false));
        let (found, _) = targets(&all, &scopes, &known, &shards);
        let ksm = &found["kube-state-metrics"];
        assert_eq!(ksm.len(), 1, "{ksm:?}");
        assert_eq!(
            (ksm[0].name.as_str(), ksm[0].per),
            ("kube-state-metrics", Per::Service)
        );
        shards.insert(first, Err("pods \"ksm-0\" is forbidden".into()));
        let (found, notes) = targets(&all, &scopes, &known, &shards);
        assert_eq!(found["kube-state-metrics"][0].per, Per::Service);
        assert_eq!(
            notes,
            [
                "exporter kube-state-metrics: pod monitoring/ksm-0 of monitoring/kube-state-metrics could not be read to tell whether it is sharded (pods \"ksm-0\" is forbidden): scraped per service"
            ]
        );
        // `per` written: no detection.
        let written = exporters("[exporter.kube-state-metrics]\nper = \"service\"\n");
        assert!(!written[0].detect_shards);
        assert!(
            shard_reads(&written, &scopes, &known, &Shards::new())
                .0
                .is_empty()
        );
    }
}
