//! Keeping one cluster's targets current, for the daemon: LIST the nodes
//! and the node-exporter service's EndpointSlices, then WATCH both from the
//! listed resource versions (with bookmarks), so that a node or pod change
//! reaches the targets in the time of one event, not of a relist.
//!
//! - A `410 Gone` (the server forgot the version) leads to a relist; so do
//!   the slow resync (`resync_interval`, the safety net) and a poke (the
//!   cluster's credentials may have rotated).
//! - A watch the server ends (its `timeoutSeconds`) is opened again from
//!   the last version seen; a failure backs off and relists.
//! - A server without `discovery.k8s.io/v1` is listed again at every
//!   resync instead (its Endpoints are not watched).

use std::collections::{BTreeMap, BTreeSet};
use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep, sleep_until};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::client::{EventStream, KubeClient, Permission, RawEvent};
use super::objects::{EndpointSlice, Node};
use super::pods;
use super::{
    DiscoveryError, JSON, Limits, Listed, NODES_AS_METADATA, encode, endpoints_pods, list_all,
    pods_of_slices, targets_of,
};
use crate::config::cluster::Cluster;
use crate::targets::ClusterTargets;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How often a cluster whose identity may list but not watch is listed.
const LIST_INTERVAL: Duration = Duration::from_secs(30);
/// How long the server is asked to keep one watch open: 30 to 60 minutes,
/// as a Kubernetes API server chooses for itself (`--min-request-timeout`),
/// spread so that a thousand watches do not reopen together. Each reopening
/// is a request; client-go reopens every 5 to 10 minutes.
fn watch_seconds() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    1800 + nanos % 1800
}
const NODE_AS_METADATA: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

/// What is known of the cluster between two lists.
struct Known {
    /// `None`: kubelet and cAdvisor are off.
    nodes: Option<(BTreeSet<Box<str>>, String)>,
    /// The service's slices by name, and the version to watch from; `None`:
    /// node-exporter is off, or the server has no EndpointSlices.
    slices: Option<(BTreeMap<String, EndpointSlice>, String)>,
    /// From the Endpoints, on a server without EndpointSlices.
    endpoint_pods: Vec<crate::targets::ExporterPod>,
    from_endpoints: bool,
    /// `None`: `[pods]` is off.
    pods: Option<KnownPods>,
}

/// The annotated pods to scrape, by `namespace/name`, and the version to
/// watch each scope (a namespace, or all) from.
struct KnownPods {
    found: BTreeMap<String, crate::targets::ScrapePod>,
    versions: Vec<String>,
}

/// Runs until the task is aborted: every new set of targets (or failure)
/// goes to `report`. `relist` asks for a relist now.
pub async fn follow(
    cluster: Arc<Cluster>,
    limits: Limits,
    resync: Duration,
    relist: Arc<Notify>,
    mut report: impl FnMut(Result<ClusterTargets, DiscoveryError>),
) {
    let mut backoff = FIRST_BACKOFF;
    // Set when the identity may list but not watch (RBAC without `watch`):
    // the cluster is then listed every 30 s instead.
    let mut may_not_watch = false;
    loop {
        let listed = match KubeClient::new(&cluster, limits.request_timeout) {
            Ok(client) => tokio::time::timeout(limits.deadline, Box::pin(list(&client, &cluster)))
                .await
                .unwrap_or_else(|_| {
                    Err(DiscoveryError::TooMuch {
                        what: "discovery took too long",
                        url: cluster.api_server.url.to_string(),
                        limit: format!("more than {:?} in all", limits.deadline),
                    })
                })
                .map(|known| (client, known)),
            Err(e) => Err(e),
        };
        let (client, mut known) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                report(Err(e));
                wait(backoff, &relist).await;
                backoff = (backoff * 2).min(resync.max(FIRST_BACKOFF));
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        let listed_targets = known.targets(&cluster, limits);
        let mut last = seen(&listed_targets);
        report(listed_targets);
        let started = Instant::now();
        let watched = if may_not_watch {
            wait(LIST_INTERVAL.min(resync), &relist).await;
            Ok(Ended::Relist)
        } else if known.watchable() {
            Box::pin(watch(
                &client,
                &cluster,
                &mut known,
                started + resync,
                &relist,
                limits,
                &mut last,
                &mut report,
            ))
            .await
        } else {
            wait(resync, &relist).await;
            Ok(Ended::Relist)
        };
        match watched {
            Ok(Ended::Relist) => {}
            // Gone right after a fresh list: the server is not well; do not
            // relist in a tight loop.
            Ok(Ended::Gone) if started.elapsed() < Duration::from_secs(1) => {
                wait(backoff, &relist).await;
                backoff = (backoff * 2).min(resync.max(FIRST_BACKOFF));
            }
            Ok(Ended::Gone) => {}
            Err(DiscoveryError::Forbidden { message, .. }) => {
                tracing::warn!(
                    cluster = %cluster.name,
                    stage = "discovery",
                    "cluster {}: {message}: this identity may list but not watch, so the cluster is listed every {LIST_INTERVAL:?}; grant `watch` as `promfed rbac` prints it to get changes as they happen",
                    cluster.name
                );
                may_not_watch = true;
            }
            Err(e) => {
                report(Err(e));
                wait(backoff, &relist).await;
                backoff = (backoff * 2).min(resync.max(FIRST_BACKOFF));
            }
        }
    }
}

/// Sleeps, unless a relist is asked for first.
async fn wait(time: Duration, relist: &Notify) {
    tokio::select! {
        () = sleep(time) => {}
        () = relist.notified() => {}
    }
}

/// What a report said, to tell a new one from a repeat: a digest of the
/// targets or of the error's words (a copy of the targets would double what
/// each cluster holds).
type Seen = u64;

fn seen(r: &Result<ClusterTargets, DiscoveryError>) -> Seen {
    crate::digest::keyed(&r.as_ref().map_err(ToString::to_string))
}

fn nodes_path() -> &'static str {
    "/api/v1/nodes"
}

fn slices_path(cluster: &Cluster) -> String {
    let ne = &cluster.node_exporter;
    format!(
        "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector={}",
        ne.namespace,
        encode(&format!("kubernetes.io/service-name={}", ne.service))
    )
}

async fn list(client: &KubeClient, cluster: &Cluster) -> Result<Known, DiscoveryError> {
    let mut known = Known {
        nodes: None,
        slices: None,
        endpoint_pods: Vec::new(),
        from_endpoints: false,
        pods: None,
    };
    if cluster.kubelet.enabled || cluster.cadvisor.component.enabled {
        let listed: Listed<Node> = list_all(
            client,
            nodes_path(),
            NODES_AS_METADATA,
            NODES,
            "endless pagination of nodes",
        )
        .await?
        .ok_or_else(|| DiscoveryError::NotFound {
            what: "the nodes API".into(),
            url: nodes_path().into(),
        })?;
        let names = listed
            .items
            .into_iter()
            .map(|n| n.metadata.name.into_boxed_str())
            .collect();
        known.nodes = Some((names, listed.version));
    }
    if cluster.node_exporter.component.enabled {
        let listed: Option<Listed<EndpointSlice>> = list_all(
            client,
            &slices_path(cluster),
            JSON,
            SLICES,
            "endless pagination of EndpointSlices",
        )
        .await?;
        match listed {
            Some(listed) => {
                let slices = listed
                    .items
                    .into_iter()
                    .map(|s| (s.metadata.name.clone(), s.compact()))
                    .collect();
                known.slices = Some((slices, listed.version));
            }
            None => {
                known.endpoint_pods = endpoints_pods(client, cluster).await?;
                known.from_endpoints = true;
            }
        }
    }
    if cluster.pods.is_some() {
        let (found, versions) = pods::list(client, cluster).await?;
        known.pods = Some(KnownPods { found, versions });
    }
    Ok(known)
}

const NODES: Permission = Permission {
    verb: "watch",
    resource: "nodes",
};
const SLICES: Permission = Permission {
    verb: "watch",
    resource: "endpointslices",
};

impl Known {
    /// Watches are possible unless node-exporter pods come from Endpoints.
    fn watchable(&self) -> bool {
        !self.from_endpoints
    }

    fn targets(&self, cluster: &Cluster, limits: Limits) -> Result<ClusterTargets, DiscoveryError> {
        let nodes = self
            .nodes
            .as_ref()
            .map(|(n, _)| n.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        let pods = match &self.slices {
            Some((slices, _)) if slices.is_empty() => {
                let ne = &cluster.node_exporter;
                return Err(DiscoveryError::NotFound {
                    what: format!(
                        "service {}/{} (no EndpointSlice is labelled kubernetes.io/service-name={})",
                        ne.namespace, ne.service, ne.service
                    ),
                    url: slices_path(cluster),
                });
            }
            Some((slices, _)) => pods_of_slices(cluster, slices.values())?,
            None => self.endpoint_pods.clone(),
        };
        let mut targets = targets_of(cluster, nodes.unwrap_or_default(), pods, limits)?;
        if let (Some(known), Some(wanted)) = (&self.pods, &cluster.pods) {
            (targets.pods, targets.pods_capped) = pods::capped(&known.found, wanted);
        }
        Ok(targets)
    }
}

/// A stream's next event, or never when there is no stream.
async fn next(stream: &mut Option<EventStream>) -> Result<Option<RawEvent>, DiscoveryError> {
    match stream {
        Some(s) => s.next().await,
        None => pending().await,
    }
}

fn watch_path(path: &str, version: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!(
        "{path}{separator}watch=true&allowWatchBookmarks=true&timeoutSeconds={}&resourceVersion={}",
        watch_seconds(),
        encode(version)
    )
}

/// Which watch an event came from.
#[derive(Clone, Copy)]
enum Which {
    Nodes,
    Slices,
    /// The pods of scope `.0`.
    Pods(usize),
}

impl Known {
    /// The version the watch `which` resumes from, kept current by its
    /// events.
    fn version(&mut self, which: Which) -> Option<&mut String> {
        match which {
            Which::Nodes => self.nodes.as_mut().map(|(_, v)| v),
            Which::Slices => self.slices.as_mut().map(|(_, v)| v),
            Which::Pods(scope) => self.pods.as_mut().map(|p| &mut p.versions[scope]),
        }
    }
}

/// The next event of one pods watch, with the stream given back: the
/// watches of several namespaces are read together, and a future that
/// owns its stream keeps it whichever watch speaks first.
type PodNext<'a> = std::pin::Pin<
    Box<
        dyn Future<Output = (usize, EventStream, Result<Option<RawEvent>, DiscoveryError>)>
            + Send
            + 'a,
    >,
>;

fn pod_next<'a>(scope: usize, mut stream: EventStream) -> PodNext<'a> {
    Box::pin(async move {
        let event = stream.next().await;
        (scope, stream, event)
    })
}

/// Why a watch ended without failing: both lead to a relist.
enum Ended {
    /// The resync time, or a relist asked for.
    Relist,
    /// A `410 Gone`: the server forgot the version.
    Gone,
}

/// Watches until `until`, a relist request or a 410, or a failure (`Err`).
#[allow(clippy::too_many_arguments)]
async fn watch(
    client: &KubeClient,
    cluster: &Cluster,
    known: &mut Known,
    until: Instant,
    relist: &Notify,
    limits: Limits,
    last: &mut Seen,
    report: &mut impl FnMut(Result<ClusterTargets, DiscoveryError>),
) -> Result<Ended, DiscoveryError> {
    // Boxed: opening a watch (a TLS handshake) is a large future, and the
    // long wait for events should not carry its room.
    let open_nodes = |version: String| {
        Box::pin(async move {
            client
                .watch(&watch_path(nodes_path(), &version), NODE_AS_METADATA, NODES)
                .await
        })
    };
    let open_slices = |version: String| {
        Box::pin(async move {
            client
                .watch(&watch_path(&slices_path(cluster), &version), JSON, SLICES)
                .await
        })
    };
    let mut nodes = match &known.nodes {
        Some((_, version)) => Some(open_nodes(version.clone()).await?),
        None => None,
    };
    let mut slices = match &known.slices {
        Some((_, version)) => Some(open_slices(version.clone()).await?),
        None => None,
    };
    let scopes = cluster.pods.as_ref().map(pods::scopes).unwrap_or_default();
    let open_pods = |scope: usize, version: String| {
        let path = watch_path(&pods::path(&scopes[scope]), &version);
        Box::pin(async move { client.watch(&path, JSON, pods::WATCH).await })
    };
    let mut pod_watches = FuturesUnordered::new();
    if let Some(known_pods) = &known.pods {
        for (scope, version) in known_pods.versions.iter().enumerate() {
            let stream = open_pods(scope, version.clone()).await?;
            pod_watches.push(pod_next(scope, stream));
        }
    }
    loop {
        let (which, event) = tokio::select! {
            e = next(&mut nodes) => (Which::Nodes, e),
            e = next(&mut slices) => (Which::Slices, e),
            Some((scope, stream, e)) = pod_watches.next(), if !pod_watches.is_empty() => {
                // Read on from it, unless it ended (it is opened anew below).
                if matches!(e, Ok(Some(_))) {
                    pod_watches.push(pod_next(scope, stream));
                }
                (Which::Pods(scope), e)
            }
            () = sleep_until(until) => return Ok(Ended::Relist),
            () = relist.notified() => return Ok(Ended::Relist),
        };
        let Some(event) = event? else {
            // The server ended the watch: open it again from where it was.
            let version = known.version(which).cloned().unwrap_or_default();
            match which {
                Which::Nodes => nodes = Some(open_nodes(version).await?),
                Which::Slices => slices = Some(open_slices(version).await?),
                Which::Pods(scope) => {
                    let stream = open_pods(scope, version).await?;
                    pod_watches.push(pod_next(scope, stream));
                }
            }
            continue;
        };
        if event.kind == "ERROR" {
            if event.object["code"] == 410 {
                return Ok(Ended::Gone);
            }
            return Err(DiscoveryError::BadResponse {
                url: client.base().to_string(),
                detail: format!(
                    "the watch ended with an error: {}",
                    client.redact(event.object["message"].as_str().unwrap_or_default())
                ),
            });
        }
        let version = event.object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let changed = match which {
            Which::Nodes => apply_node(known, &event)?,
            Which::Slices => apply_slice(known, &event)?,
            Which::Pods(..) => apply_pod(known, &event)?,
        };
        if let (Some(slot), Some(version)) = (known.version(which), version) {
            *slot = version;
        }
        if changed {
            let now = known.targets(cluster, limits);
            let digest = seen(&now);
            if digest != *last {
                *last = digest;
                report(now);
            }
        }
    }
}

fn undecodable(e: serde_json::Error) -> DiscoveryError {
    DiscoveryError::BadResponse {
        url: String::new(),
        detail: format!("a watch event that is not the object expected: {e}"),
    }
}

/// Takes in a node event; whether the set of nodes changed.
fn apply_node(known: &mut Known, event: &RawEvent) -> Result<bool, DiscoveryError> {
    let Some((names, _)) = known.nodes.as_mut() else {
        return Ok(false);
    };
    if !matches!(event.kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
        return Ok(false);
    }
    let node: Node = serde_json::from_value(event.object.clone()).map_err(undecodable)?;
    Ok(match event.kind.as_str() {
        "DELETED" => names.remove(node.metadata.name.as_str()),
        _ => names.insert(node.metadata.name.into_boxed_str()),
    })
}

/// Takes in a slice event; whether any slice changed.
fn apply_slice(known: &mut Known, event: &RawEvent) -> Result<bool, DiscoveryError> {
    let Some((slices, _)) = known.slices.as_mut() else {
        return Ok(false);
    };
    if !matches!(event.kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
        return Ok(false);
    }
    let slice: EndpointSlice = serde_json::from_value(event.object.clone()).map_err(undecodable)?;
    let name = slice.metadata.name.clone();
    Ok(match event.kind.as_str() {
        "DELETED" => slices.remove(&name).is_some(),
        _ => {
            slices.insert(name, slice.compact());
            true
        }
    })
}

/// Takes in a pod event; whether the pods to scrape changed.
fn apply_pod(known: &mut Known, event: &RawEvent) -> Result<bool, DiscoveryError> {
    let Some(known_pods) = known.pods.as_mut() else {
        return Ok(false);
    };
    if !matches!(event.kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
        return Ok(false);
    }
    let pod: pods::Pod = serde_json::from_value(event.object.clone()).map_err(undecodable)?;
    let key = pod.key();
    let target = match event.kind.as_str() {
        "DELETED" => None,
        _ => pods::scrape_target(&pod),
    };
    Ok(match target {
        Some(t) => known_pods.found.insert(key, t.clone()).as_ref() != Some(&t),
        None => known_pods.found.remove(&key).is_some(),
    })
}
