//! Keeping one cluster's targets current, for the daemon: LIST the nodes
//! and the node-exporter service's EndpointSlices, then WATCH both from the
//! listed resource versions (with bookmarks), so that a node or pod change
//! reaches the targets in the time of one event, not of a relist.
//!
//! - A `410 Gone` (the server forgot the version) leads to a relist; so do
//!   the slow resync (`resync_interval`, the safety net) and a poke (the
//!   cluster's credentials may have rotated).
//! - A watch the server ends (its `timeoutSeconds`) is opened again from
//!   the last version seen; one that ends before any event counts as a
//!   failure and waits its backoff; a failure backs off and relists.
//! - However the server behaves, each resource is asked at most 12 times
//!   a minute after a burst of 3 (`pace`), and the resync runs while a
//!   watch opens.
//! - A server without `discovery.k8s.io/v1` is listed again at every
//!   resync instead (its Endpoints are not watched).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep, sleep_until};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::client::{EventStream, KubeClient, Permission, RawEvent};
use super::decode;
use super::exporters;
use super::health::Health;
use super::monitors;
use super::objects::{EndpointSlice, Node};
use super::pace::{Backoff, Ceilings};
use super::pods;
use super::which::Which;
use super::{
    DiscoveryError, JSON, Limits, Listed, NODES_AS_METADATA, encode, endpoints_pods, list_all,
    pods_of_slices, targets_of,
};
use crate::config::cluster::Cluster;
use crate::targets::ClusterTargets;

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
pub struct Known {
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
    /// Each exporter namespace's slices, in `exporters::scopes` order;
    /// empty without exporters.
    exporter_slices: Vec<exporters::Known>,
    /// The exporters' pods read to tell a shard (kube-state-metrics).
    exporter_shards: exporters::Shards,
    /// `None`: `[monitors]` is off.
    monitors: Option<monitors::Known>,
}

/// The annotated pods to scrape, by `namespace/name`, and the version to
/// watch each scope (a namespace, or all) from.
struct KnownPods {
    found: BTreeMap<String, crate::targets::ScrapePod>,
    versions: Vec<String>,
}

/// Runs until the task is aborted: every new set of targets (or failure)
/// goes to `report`. `relist` asks for a relist now. `first` is a list
/// already made (the daemon's start-up transaction): watched from at once.
/// `health` takes in each list and each watch's events, for status.
pub async fn follow(
    cluster: Arc<Cluster>,
    health: Arc<Health>,
    limits: Limits,
    resync: Duration,
    relist: Arc<Notify>,
    first: Option<super::Resume>,
    mut report: impl FnMut(Result<ClusterTargets, DiscoveryError>),
) {
    let mut first = first.map(|r| r.0);
    let mut backoff = Backoff::new(resync, super::pace::seed(cluster.name.as_str()));
    let ceilings = Ceilings::default();
    // Set when the identity may list but not watch (RBAC without `watch`):
    // the cluster is then listed every 30 s instead.
    let mut may_not_watch = false;
    loop {
        let listed = match KubeClient::new(&cluster, limits.request_timeout) {
            Ok(client) => match first.take() {
                Some(known) => Ok((client, known)),
                None => list_within(&client, &cluster, limits, &ceilings)
                    .await
                    .map(|known| (client, known)),
            },
            Err(e) => Err(e),
        };
        let (client, mut known) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                let delay = backoff.failure(e.retry_after());
                report(Err(e));
                wait(delay, &relist).await;
                continue;
            }
        };
        backoff.reset();
        health.listed();
        let listed_targets = known.targets(&cluster, limits);
        let mut last = seen(&listed_targets);
        report(listed_targets);
        let started = Instant::now();
        let watched = if may_not_watch {
            health.unwatched();
            wait(LIST_INTERVAL.min(resync), &relist).await;
            Ok(Ended::Relist)
        } else if known.watchable() {
            let mut watching = Watching {
                client: &client,
                cluster: &cluster,
                health: &health,
                ceilings: &ceilings,
                limits,
                resync,
            };
            watching
                .run(&mut known, &relist, &mut last, &mut report)
                .await
        } else {
            health.unwatched();
            wait(resync, &relist).await;
            Ok(Ended::Relist)
        };
        match watched {
            Ok(Ended::Relist) => {}
            // Gone right after a fresh list: the server is not well; do not
            // relist in a tight loop.
            Ok(Ended::Gone) if started.elapsed() < Duration::from_secs(1) => {
                wait(backoff.failure(None), &relist).await;
            }
            Ok(Ended::Gone) => {}
            // Only a refused watch: a list refused during the resync is
            // an ordinary failure.
            Err(DiscoveryError::Forbidden {
                message,
                verb: "watch",
                ..
            }) => {
                tracing::warn!(
                    cluster = %cluster.name,
                    stage = "discovery",
                    "cluster {}: {message}: this identity may list but not watch, so the cluster is listed every {LIST_INTERVAL:?}; grant `watch` as `promfed rbac` prints it to get changes as they happen",
                    cluster.name
                );
                may_not_watch = true;
            }
            Err(e) => {
                let delay = backoff.failure(e.retry_after());
                report(Err(e));
                wait(delay, &relist).await;
            }
        }
    }
}

/// The cluster's lists, within the discovery deadline.
pub(super) async fn list_within(
    client: &KubeClient,
    cluster: &Cluster,
    limits: Limits,
    ceilings: &Ceilings<Which>,
) -> Result<Known, DiscoveryError> {
    tokio::time::timeout(limits.deadline, Box::pin(list(client, cluster, ceilings)))
        .await
        .unwrap_or_else(|_| {
            Err(DiscoveryError::Timeout {
                url: cluster.api_server.url.to_string(),
                what: "whole discovery",
                limit: limits.deadline,
            })
        })
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

async fn list(
    client: &KubeClient,
    cluster: &Cluster,
    ceilings: &Ceilings<Which>,
) -> Result<Known, DiscoveryError> {
    let mut known = Known {
        nodes: None,
        slices: None,
        endpoint_pods: Vec::new(),
        from_endpoints: false,
        pods: None,
        exporter_slices: Vec::new(),
        exporter_shards: exporters::Shards::new(),
        monitors: None,
    };
    if cluster.kubelet.enabled || cluster.cadvisor.component.enabled {
        ceilings.admit(Which::Nodes).await;
        let listed: Listed<Node> = list_all(
            client,
            nodes_path(),
            NODES_AS_METADATA,
            LIST_NODES,
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
        ceilings.admit(Which::Slices).await;
        let listed: Option<Listed<EndpointSlice>> = list_all(
            client,
            &slices_path(cluster),
            JSON,
            LIST_SLICES,
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
    if let Some(wanted) = &cluster.pods {
        for scope in 0..pods::scopes(wanted).len() {
            ceilings.admit(Which::Pods(scope)).await;
        }
        let (found, versions) = pods::list(client, cluster).await?;
        known.pods = Some(KnownPods { found, versions });
    }
    for (i, scope) in exporters::scopes(&cluster.exporters).iter().enumerate() {
        ceilings.admit(Which::Exporters(i)).await;
        known
            .exporter_slices
            .push(exporters::list(client, scope).await?);
    }
    known.read_shards(client, cluster).await;
    if let Some(wanted) = &cluster.monitors {
        let mut scopes = Vec::new();
        for (i, scope) in monitors::scopes(wanted).iter().enumerate() {
            let admit = |r| ceilings.admit(Which::Monitors(i, r));
            scopes.push(monitors::list_scope(client, wanted, scope, admit).await?);
        }
        known.monitors = Some(monitors::Known::new(scopes));
    }
    Ok(known)
}

/// What each request needs, to name it in a 403: a refused list says
/// `list`, a refused watch `watch`.
const LIST_NODES: Permission = Permission {
    verb: "list",
    resource: "nodes",
};
const WATCH_NODES: Permission = Permission {
    verb: "watch",
    resource: "nodes",
};
const LIST_SLICES: Permission = Permission {
    verb: "list",
    resource: "endpointslices",
};
const WATCH_SLICES: Permission = Permission {
    verb: "watch",
    resource: "endpointslices",
};

impl Known {
    /// Watches are possible unless node-exporter pods come from Endpoints.
    fn watchable(&self) -> bool {
        !self.from_endpoints
    }

    pub(super) fn targets(
        &self,
        cluster: &Cluster,
        limits: Limits,
    ) -> Result<ClusterTargets, DiscoveryError> {
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
        if !cluster.exporters.is_empty() {
            let slices: Vec<_> = self.exporter_slices.iter().map(|(s, _)| s).collect();
            let scopes = exporters::scopes(&cluster.exporters);
            (targets.exporters, targets.exporter_notes) =
                exporters::targets(&cluster.exporters, &scopes, &slices, &self.exporter_shards);
            super::check_exporter_counts(cluster, &targets, limits)?;
        }
        if let (Some(known), Some(wanted)) = (&self.monitors, &cluster.monitors) {
            targets.monitors = Some(Box::new(known.found(wanted, limits.max_targets)));
        }
        Ok(targets)
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

impl Known {
    /// The version the watch `which` resumes from, kept current by its
    /// events.
    fn version(&mut self, which: Which) -> Option<&mut String> {
        match which {
            Which::Nodes => self.nodes.as_mut().map(|(_, v)| v),
            Which::Slices => self.slices.as_mut().map(|(_, v)| v),
            Which::Pods(scope) => self.pods.as_mut().and_then(|p| p.versions.get_mut(scope)),
            Which::Exporters(scope) => self.exporter_slices.get_mut(scope).map(|(_, v)| v),
            Which::Monitors(scope, r) => self.monitors.as_mut().and_then(|m| m.version(scope, r)),
        }
    }

    /// Takes in a relist made while the watches went on: what was listed
    /// replaces what was known, and a watch that reopens starts from the
    /// list. False when the lists no longer match the watches (the server
    /// stopped serving EndpointSlices): then everything starts again.
    fn relisted(&mut self, new: Known) -> bool {
        if new.watches() != self.watches() || new.from_endpoints != self.from_endpoints {
            return false;
        }
        *self = new;
        true
    }

    /// Reads the exporter pods that tell whether a Service's pods are
    /// shards, and forgets those no slice names any more.
    async fn read_shards(&mut self, client: &KubeClient, cluster: &Cluster) {
        if !cluster.exporters.iter().any(|e| e.detect_shards) {
            return;
        }
        let scopes = exporters::scopes(&cluster.exporters);
        let slices: Vec<_> = self.exporter_slices.iter().map(|(s, _)| s).collect();
        let (wanted, live) =
            exporters::shard_reads(&cluster.exporters, &scopes, &slices, &self.exporter_shards);
        self.exporter_shards.retain(|k, _| live.contains(k));
        exporters::read_shards(client, wanted, &mut self.exporter_shards).await;
    }

    /// The watches this cluster holds.
    fn watches(&self) -> Vec<Which> {
        let mut all = Vec::new();
        if self.nodes.is_some() {
            all.push(Which::Nodes);
        }
        if self.slices.is_some() {
            all.push(Which::Slices);
        }
        if let Some(pods) = &self.pods {
            all.extend((0..pods.versions.len()).map(Which::Pods));
        }
        all.extend((0..self.exporter_slices.len()).map(Which::Exporters));
        if let Some(m) = &self.monitors {
            all.extend(m.watches().into_iter().map(|(i, r)| Which::Monitors(i, r)));
        }
        all
    }
}

/// One watch's next step: opened, or read up to its next event. Each
/// watch is its own future, with its own silence timer, and gives its
/// stream back whichever watch speaks first. Opening is a step of its own:
/// its future (a TLS handshake) is large, and a quiet watch waits for its
/// first event for up to an hour.
type Step<'a> = Pin<Box<dyn Future<Output = Stepped> + Send + 'a>>;

struct Stepped {
    which: Which,
    stream: Option<EventStream>,
    got: Result<Got, DiscoveryError>,
}

/// What one step of a watch brought.
enum Got {
    Opened,
    Event(RawEvent),
    /// The server ended the watch.
    Ended,
}

fn read_on<'a>(which: Which, mut stream: EventStream) -> Step<'a> {
    Box::pin(async move {
        let got = match stream.next().await {
            Ok(Some(event)) => Ok(Got::Event(event)),
            Ok(None) => Ok(Got::Ended),
            Err(e) => Err(e),
        };
        Stepped {
            which,
            stream: Some(stream),
            got,
        }
    })
}

/// Why a watch ended without failing: both lead to a relist.
pub enum Ended {
    /// The resync time, or a relist asked for.
    Relist,
    /// A `410 Gone`: the server forgot the version.
    Gone,
}

/// What the watches of one cluster share.
struct Watching<'a> {
    client: &'a KubeClient,
    cluster: &'a Cluster,
    health: &'a Health,
    ceilings: &'a Ceilings<Which>,
    limits: Limits,
    /// How often the cluster is listed again while its watches go on.
    resync: Duration,
}

/// A relist made while the watches go on (the resync).
type Relisting<'a> = Pin<Box<dyn Future<Output = Result<Known, DiscoveryError>> + Send + 'a>>;

/// One watch's bookkeeping: events since it was opened, and the backoff
/// of a watch that keeps ending before its first event.
struct Life {
    events: u64,
    backoff: Backoff,
}

impl<'a> Watching<'a> {
    /// Opens `which` from `version` after `delay` (and its ceiling).
    fn open(&self, which: Which, version: String, delay: Duration) -> Step<'a> {
        let (client, ceilings) = (self.client, self.ceilings.clone());
        let (path, accept, needs) = self.target(which);
        Box::pin(async move {
            sleep(delay).await;
            ceilings.admit(which).await;
            let opened = client
                .watch(&watch_path(&path, &version), accept, needs)
                .await;
            match opened {
                Ok(stream) => Stepped {
                    which,
                    stream: Some(stream),
                    got: Ok(Got::Opened),
                },
                Err(e) => Stepped {
                    which,
                    stream: None,
                    got: Err(e),
                },
            }
        })
    }

    fn target(&self, which: Which) -> (String, &'static str, Permission) {
        match which {
            Which::Nodes => (nodes_path().to_string(), NODE_AS_METADATA, WATCH_NODES),
            Which::Slices => (slices_path(self.cluster), JSON, WATCH_SLICES),
            Which::Pods(scope) => {
                let scopes = self
                    .cluster
                    .pods
                    .as_ref()
                    .map(pods::scopes)
                    .unwrap_or_default();
                let scope = scopes.get(scope).cloned().flatten();
                (pods::path(&scope), JSON, pods::WATCH)
            }
            Which::Exporters(scope) => {
                let scopes = exporters::scopes(&self.cluster.exporters);
                let path = scopes.get(scope).map(exporters::path).unwrap_or_default();
                (path, JSON, WATCH_SLICES)
            }
            Which::Monitors(scope, r) => {
                let wanted = self.cluster.monitors.as_ref();
                let path = wanted
                    .and_then(|m| {
                        let scopes = monitors::scopes(m);
                        scopes.get(scope).map(|s| monitors::path(m, s, r))
                    })
                    .unwrap_or_default();
                (path, JSON, r.permission("watch"))
            }
        }
    }

    /// Watches until a relist request or a 410, or a failure (`Err`).
    /// Every `resync` the cluster is listed again (the safety net) while
    /// the watches go on: a resync costs one list per resource, and no
    /// event waits for it. The timer and the relist request are heard
    /// while watches open, too.
    async fn run(
        &mut self,
        known: &mut Known,
        relist: &Notify,
        last: &mut Seen,
        report: &mut impl FnMut(Result<ClusterTargets, DiscoveryError>),
    ) -> Result<Ended, DiscoveryError> {
        let seed = super::pace::seed(self.cluster.name.as_str());
        let mut lives: BTreeMap<Which, Life> = BTreeMap::new();
        let mut steps = FuturesUnordered::new();
        for which in known.watches() {
            let version = known.version(which).cloned().unwrap_or_default();
            steps.push(self.open(which, version, Duration::ZERO));
            let backoff = Backoff::new(super::pace::MAX_BACKOFF, seed ^ lives.len() as u64);
            lives.insert(which, Life { events: 0, backoff });
        }
        let mut until = Instant::now() + self.resync;
        let mut relisting: Option<Relisting<'a>> = None;
        loop {
            let Stepped { which, stream, got } = tokio::select! {
                Some(stepped) = steps.next() => stepped,
                () = sleep_until(until), if relisting.is_none() => {
                    let (client, cluster, limits, ceilings) =
                        (self.client, self.cluster, self.limits, self.ceilings.clone());
                    relisting = Some(Box::pin(async move {
                        list_within(client, cluster, limits, &ceilings).await
                    }));
                    continue;
                }
                Some(listed) = maybe(&mut relisting) => {
                    relisting = None;
                    until = Instant::now() + self.resync;
                    if !known.relisted(listed?) {
                        return Ok(Ended::Relist);
                    }
                    self.health.listed();
                    self.report_if_new(known, last, report);
                    continue;
                }
                () = relist.notified() => return Ok(Ended::Relist),
            };
            let Some(life) = lives.get_mut(&which) else {
                continue;
            };
            let event = match got? {
                Got::Event(event) => event,
                Got::Opened => {
                    self.health.opened(which);
                    steps.extend(stream.map(|s| read_on(which, s)));
                    continue;
                }
                Got::Ended => {
                    // Open it again from where it was: at once if it had
                    // spoken, after a backoff if not.
                    let delay = match life.events {
                        0 => life.backoff.failure(None),
                        _ => {
                            life.backoff.reset();
                            Duration::ZERO
                        }
                    };
                    life.events = 0;
                    let version = known.version(which).cloned().unwrap_or_default();
                    steps.push(self.open(which, version, delay));
                    continue;
                }
            };
            life.events += 1;
            self.health.heard(which);
            steps.extend(stream.map(|s| read_on(which, s)));
            if let Some(ended) = self.take_in(known, which, &event, last, report)? {
                return Ok(ended);
            }
            if matches!(which, Which::Exporters(_)) {
                // Reported once its new pods are read: no per-service
                // moment for a Service that turned out sharded.
                known.read_shards(self.client, self.cluster).await;
                self.report_if_new(known, last, report);
            }
        }
    }

    /// Takes in one event: the targets reported if they changed; `Some`
    /// when the watches must end.
    fn take_in(
        &self,
        known: &mut Known,
        which: Which,
        event: &RawEvent,
        last: &mut Seen,
        report: &mut impl FnMut(Result<ClusterTargets, DiscoveryError>),
    ) -> Result<Option<Ended>, DiscoveryError> {
        let url = self.client.base();
        if event.kind == "ERROR" {
            if event.object["code"] == 410 {
                return Ok(Some(Ended::Gone));
            }
            return Err(DiscoveryError::BadResponse {
                url: url.to_string(),
                detail: format!(
                    "the watch ended with an error: {}",
                    self.client
                        .redact(event.object["message"].as_str().unwrap_or_default())
                ),
            });
        }
        let version = event.object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let changed = match which {
            Which::Nodes => apply_node(known, event),
            Which::Slices => apply_slice(known, event),
            Which::Pods(..) => apply_pod(known, event),
            Which::Exporters(scope) => apply_exporter_slice(known, scope, event),
            Which::Monitors(scope, r) => Ok(known
                .monitors
                .as_mut()
                .is_some_and(|m| m.take_in(scope, r, event))),
        }
        .map_err(|detail| DiscoveryError::BadResponse {
            url: url.to_string(),
            detail: format!(
                "a watch event that is not the object expected: {}",
                self.client.redact(&detail)
            ),
        })?;
        if let (Some(slot), Some(version)) = (known.version(which), version) {
            *slot = version;
        }
        if changed && !matches!(which, Which::Exporters(_)) {
            self.report_if_new(known, last, report);
        }
        Ok(None)
    }

    /// Reports the targets when they differ from the last report.
    fn report_if_new(
        &self,
        known: &Known,
        last: &mut Seen,
        report: &mut impl FnMut(Result<ClusterTargets, DiscoveryError>),
    ) {
        let now = known.targets(self.cluster, self.limits);
        let digest = seen(&now);
        if digest != *last {
            *last = digest;
            report(now);
        }
    }
}

/// The relist's result once it is done; never while there is none.
async fn maybe(relisting: &mut Option<Relisting<'_>>) -> Option<Result<Known, DiscoveryError>> {
    match relisting {
        Some(listing) => Some(listing.await),
        None => std::future::pending().await,
    }
}

/// Takes in a node event; whether the set of nodes changed.
fn apply_node(known: &mut Known, event: &RawEvent) -> Result<bool, String> {
    let Some((names, _)) = known.nodes.as_mut() else {
        return Ok(false);
    };
    if !matches!(event.kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
        return Ok(false);
    }
    let node: Node = decode::from_value(&event.object)?;
    Ok(match event.kind.as_str() {
        "DELETED" => names.remove(node.metadata.name.as_str()),
        _ => names.insert(node.metadata.name.into_boxed_str()),
    })
}

/// Takes in a slice event; whether any slice changed.
fn apply_slice(known: &mut Known, event: &RawEvent) -> Result<bool, String> {
    let Some((slices, _)) = known.slices.as_mut() else {
        return Ok(false);
    };
    if !matches!(event.kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
        return Ok(false);
    }
    let slice: EndpointSlice = decode::from_value(&event.object)?;
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
fn apply_pod(known: &mut Known, event: &RawEvent) -> Result<bool, String> {
    let Some(known_pods) = known.pods.as_mut() else {
        return Ok(false);
    };
    if !matches!(event.kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
        return Ok(false);
    }
    let pod: pods::Pod = decode::from_value(&event.object)?;
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

/// Takes in an EndpointSlice event of an exporter namespace; whether any
/// slice changed.
fn apply_exporter_slice(known: &mut Known, scope: usize, event: &RawEvent) -> Result<bool, String> {
    let Some((slices, _)) = known.exporter_slices.get_mut(scope) else {
        return Ok(false);
    };
    if !matches!(event.kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
        return Ok(false);
    }
    let slice: exporters::Slice = decode::from_value(&event.object)?;
    let name = slice.metadata.name.clone();
    Ok(match event.kind.as_str() {
        "DELETED" => slices.remove(&name).is_some(),
        _ => {
            slices.insert(name, slice);
            true
        }
    })
}
