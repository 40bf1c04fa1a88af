//! What discovery found in one cluster, and the `file_sd` JSON made from it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::cluster::Cluster;
use crate::config::exporter::{Exporter, Per};
use crate::config::monitors::MonitorJob;
use crate::config::names::ClusterName;
use crate::discovery_error::DiscoveryError;
use crate::fsutil;

/// Why a cluster's targets could not be refreshed: the API server's side,
/// or this host's state folder.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("cannot write targets in {}: {source}", dir.display())]
    StateWrite { dir: PathBuf, source: io::Error },
}

impl RefreshError {
    /// A short, stable word for metrics and status.
    pub fn reason(&self) -> &'static str {
        match self {
            RefreshError::Discovery(e) => e.reason(),
            RefreshError::StateWrite { .. } => "state_write",
        }
    }
}

/// The jobs promfed generates for every cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobKind {
    Kubelet,
    Cadvisor,
    Apiserver,
    NodeExporter,
    /// An in-cluster Prometheus's `/federate` (`[federate]`).
    Federate,
    /// Pods annotated `prometheus.io/scrape` (`[pods]`).
    Pods,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::Kubelet,
        JobKind::Cadvisor,
        JobKind::Apiserver,
        JobKind::NodeExporter,
        JobKind::Federate,
        JobKind::Pods,
    ];

    /// The last part of the Prometheus job name and of the targets file.
    pub fn slug(self) -> &'static str {
        match self {
            JobKind::Kubelet => "kubelet",
            JobKind::Cadvisor => "cadvisor",
            JobKind::Apiserver => "apiserver",
            JobKind::NodeExporter => "node-exporter",
            JobKind::Federate => "federate",
            JobKind::Pods => "pods",
        }
    }

    /// The `job` label, as the kubernetes-mixin dashboards and alerts expect.
    pub fn job_label(self) -> &'static str {
        match self {
            JobKind::Kubelet | JobKind::Cadvisor => "kubelet",
            JobKind::Apiserver => "apiserver",
            JobKind::NodeExporter => "node-exporter",
            // On `up` and the scrape's own series only: federated series
            // keep the job they had (`honor_labels`).
            JobKind::Federate => "federate",
            // Istio's sample Prometheus's job: its dashboards and Kiali
            // query it by this name.
            JobKind::Pods => "kubernetes-pods",
        }
    }

    /// The Prometheus job name, unique per cluster and owned by promfed.
    pub fn job_name(self, cluster: &ClusterName) -> String {
        format!("promfed/{cluster}/{}", self.slug())
    }

    pub fn enabled_in(self, c: &Cluster) -> bool {
        match self {
            JobKind::Kubelet => c.kubelet.enabled,
            JobKind::Cadvisor => c.cadvisor.component.enabled,
            JobKind::Apiserver => c.apiserver.enabled,
            JobKind::NodeExporter => c.node_exporter.component.enabled,
            JobKind::Federate => c.federate.is_some(),
            JobKind::Pods => c.pods.is_some(),
        }
    }

    /// Whether promfed's discovery feeds this job (the API server and the
    /// federated Prometheus are one static target each).
    pub fn discovered(self) -> bool {
        !matches!(self, JobKind::Apiserver | JobKind::Federate)
    }
}

/// How many inotify instances Prometheus takes for these clusters' file_sd
/// jobs: one per cluster that has any (its jobs share one
/// `file_sd_configs` block, see `render`).
pub fn file_sd_watchers<'a>(clusters: impl IntoIterator<Item = &'a Cluster>) -> usize {
    clusters
        .into_iter()
        .filter(|c| !file_names(c).is_empty())
        .count()
}

/// The targets files of every discovered job of `cluster`: the built-in
/// ones, then one per exporter.
pub fn file_names(cluster: &Cluster) -> Vec<String> {
    let mut names = defined_file_names(cluster);
    names.extend(cluster.monitor_jobs.iter().map(MonitorJob::file_name));
    names
}

/// The targets files of the jobs the cluster file itself defines.
fn defined_file_names(cluster: &Cluster) -> Vec<String> {
    JobKind::ALL
        .into_iter()
        .filter(|k| k.discovered() && k.enabled_in(cluster))
        .map(file_name)
        .chain(cluster.exporters.iter().map(exporter_file_name))
        .collect()
}

/// The file in a cluster's targets folder that keeps the monitors last
/// discovered (`[monitors]`), for the transaction to render their jobs.
pub const MONITORS_STATE: &str = "monitors.state";

/// Where `cluster`'s monitors are kept.
pub fn monitors_state_path(targets_dir: &Path, cluster: &ClusterName) -> PathBuf {
    targets_dir.join(cluster.as_str()).join(MONITORS_STATE)
}

/// The `file_sd` document of one monitor job: each target a pod through
/// the pod proxy, with the labels prometheus-operator gives it and the
/// `__meta_kubernetes_*` labels its relabelings may read.
pub fn monitor_file_sd_json(
    cluster: &Cluster,
    job: &MonitorJob,
    found: &[MonitorTarget],
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Group<'a> {
        targets: [&'a str; 1],
        labels: BTreeMap<String, String>,
    }
    let prefix = &cluster.api_server.path_prefix;
    let scheme = if job.https { "https:" } else { "" };
    let groups: Vec<Group> = found
        .iter()
        .map(|t| {
            let mut labels = t.meta.clone();
            let mut set = |k: &str, v: String| labels.insert(k.to_string(), v);
            set(
                "__metrics_path__",
                format!(
                    "{prefix}/api/v1/namespaces/{}/pods/{scheme}{}:{}/proxy{}",
                    t.namespace, t.pod, t.port, job.path
                ),
            );
            set("instance", format!("{}:{}", t.pod, t.port));
            set("job", t.job.clone());
            set("namespace", t.namespace.clone());
            set("pod", t.pod.clone());
            set("endpoint", t.endpoint.clone());
            if let Some(service) = &t.service {
                set("service", service.clone());
            }
            Group {
                targets: [cluster.api_server.address.as_str()],
                labels,
            }
        })
        .collect();
    let mut json = serde_json::to_vec_pretty(&groups).expect("target groups serialise");
    json.push(b'\n');
    json
}

/// The name of an exporter job's targets file (its job is no built-in
/// name, so no built-in job's file).
pub fn exporter_file_name(e: &Exporter) -> String {
    format!("{}.json", e.job)
}

/// A ready node-exporter pod and the node it runs on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExporterPod {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub port: u16,
}

/// A pod annotated `prometheus.io/scrape: "true"`, Running and Ready, and
/// where its metrics are.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScrapePod {
    pub namespace: String,
    pub pod: String,
    pub port: u16,
    /// `prometheus.io/path`, starting with `/`.
    pub path: String,
    /// `prometheus.io/scheme: https`: the pod proxy's `https:` form.
    pub https: bool,
    /// The pod's `app` and `version` labels, as Istio's sample keeps them.
    pub app: Option<String>,
    pub version: Option<String>,
}

/// One target of an exporter job: a pod (per endpoint) or a Service (per
/// service), and the port its proxy path names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExporterTarget {
    pub namespace: String,
    /// The pod's name, or the Service's.
    pub name: String,
    /// A number, or (per service) the Service port's name.
    pub port: String,
    /// Per endpoint: the node the pod runs on, when the endpoint says.
    pub node: Option<String>,
    /// The exporter's `per`, or what discovery found (a sharded
    /// kube-state-metrics is per endpoint).
    pub per: Per,
}

/// One cluster's discovery result; the lists are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClusterTargets {
    pub nodes: Vec<String>,
    pub node_exporters: Vec<ExporterPod>,
    pub pods: Vec<ScrapePod>,
    /// Each exporter's targets, by job.
    pub exporters: BTreeMap<String, Vec<ExporterTarget>>,
    /// Why an exporter job has no targets (no Service matched, no such
    /// port): facts of the cluster, not discovery failures.
    pub exporter_notes: Vec<String>,
    /// How many pods matched, when more than `[pods] max_targets` did (the
    /// targets are capped to the first ones by namespace and name).
    pub pods_capped: Option<usize>,
    /// `[monitors]`: the jobs of the monitors found, their targets and
    /// what was skipped; `None` without `[monitors]`.
    pub monitors: Option<Box<MonitorsFound>>,
    /// Names the API server gave that are not Kubernetes names (they would
    /// go into proxy paths), shown escaped; left out of the targets.
    pub skipped: Vec<String>,
}

/// What `[monitors]` found in one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MonitorsFound {
    /// The monitor objects as the state file keeps them (JSON): the
    /// transaction renders their jobs from it.
    pub state: String,
    /// Their jobs, sorted (as the transaction will render them).
    pub jobs: Vec<MonitorJob>,
    /// Each job's targets, by its file name.
    pub targets: BTreeMap<String, Vec<MonitorTarget>>,
    /// Every monitor or endpoint skipped, and why; or that the cluster
    /// serves no monitoring.coreos.com/v1.
    pub notes: Vec<String>,
}

/// One target of a monitor job: a pod, through the pod proxy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonitorTarget {
    pub namespace: String,
    pub pod: String,
    pub port: u16,
    /// The `job` label: the Service's name, `<ns>/<monitor>`, or the
    /// `jobLabel`'s value.
    pub job: String,
    /// The Service (ServiceMonitors).
    pub service: Option<String>,
    /// The port's name, else its number (the operator's `endpoint` label).
    pub endpoint: String,
    /// `__meta_kubernetes_*` labels, for the monitor's relabelings.
    pub meta: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct TargetGroup<'a> {
    targets: [&'a str; 1],
    labels: BTreeMap<&'static str, String>,
}

/// Where a cluster's targets for one job live.
pub fn file_path(targets_dir: &Path, cluster: &ClusterName, kind: JobKind) -> PathBuf {
    targets_dir.join(cluster.as_str()).join(file_name(kind))
}

/// The name of one job's targets file.
pub fn file_name(kind: JobKind) -> String {
    format!("{}.json", kind.slug())
}

/// The `file_sd` document for one job: every target is the API server's
/// address, told apart by the proxy path it scrapes.
pub fn file_sd_json(cluster: &Cluster, targets: &ClusterTargets, kind: JobKind) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(&groups(cluster, targets, kind))
        .expect("target groups serialise");
    json.push(b'\n');
    json
}

/// The `file_sd` document for one exporter job.
pub fn exporter_file_sd_json(cluster: &Cluster, targets: &ClusterTargets, e: &Exporter) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(&exporter_groups(cluster, targets, e))
        .expect("target groups serialise");
    json.push(b'\n');
    json
}

/// An exporter job's first target, as `first_target` tells it.
pub fn first_exporter_target(
    cluster: &Cluster,
    targets: &ClusterTargets,
    e: &Exporter,
) -> Option<(String, String)> {
    let mut group = exporter_groups(cluster, targets, e).into_iter().next()?;
    let path = group.labels.remove("__metrics_path__")?;
    Some((group.labels.remove("instance").unwrap_or_default(), path))
}

/// Per endpoint: the pod proxy, `instance` the node (else the pod), with
/// `namespace` and `pod`. Per service: the service proxy, `instance`
/// `NS/SERVICE:PORT`, and no `namespace` or `pod` (a Service has none,
/// and kube-state-metrics's own must not be filled in by the target's).
fn exporter_groups<'a>(
    cluster: &'a Cluster,
    targets: &ClusterTargets,
    e: &Exporter,
) -> Vec<TargetGroup<'a>> {
    let prefix = &cluster.api_server.path_prefix;
    let scheme = if e.https { "https:" } else { "" };
    let found = targets.exporters.get(&e.job).map_or(&[][..], Vec::as_slice);
    found
        .iter()
        .map(|t| {
            let (resource, instance) = match t.per {
                Per::Endpoint => ("pods", t.node.clone().unwrap_or_else(|| t.name.clone())),
                Per::Service => ("services", format!("{}/{}:{}", t.namespace, t.name, t.port)),
            };
            let mut labels = BTreeMap::from([
                (
                    "__metrics_path__",
                    format!(
                        "{prefix}/api/v1/namespaces/{}/{resource}/{scheme}{}:{}/proxy{}",
                        t.namespace, t.name, t.port, e.path
                    ),
                ),
                ("instance", instance),
            ]);
            if t.per == Per::Endpoint {
                labels.insert("namespace", t.namespace.clone());
                labels.insert("pod", t.name.clone());
            }
            TargetGroup {
                targets: [cluster.api_server.address.as_str()],
                labels,
            }
        })
        .collect()
}

/// One target of a discovered job, as Prometheus would scrape it: its
/// instance and the proxy path (`promfed doctor`'s sample scrape).
pub fn first_target(
    cluster: &Cluster,
    targets: &ClusterTargets,
    kind: JobKind,
) -> Option<(String, String)> {
    let mut group = groups(cluster, targets, kind).into_iter().next()?;
    let path = group.labels.remove("__metrics_path__")?;
    Some((group.labels.remove("instance").unwrap_or_default(), path))
}

fn groups<'a>(
    cluster: &'a Cluster,
    targets: &ClusterTargets,
    kind: JobKind,
) -> Vec<TargetGroup<'a>> {
    let prefix = &cluster.api_server.path_prefix;
    let address = cluster.api_server.address.as_str();
    let group = |path: String, instance: &str| TargetGroup {
        targets: [address],
        labels: BTreeMap::from([
            ("__metrics_path__", path),
            ("instance", instance.to_string()),
        ]),
    };
    let pod_group = |p: &ScrapePod| {
        let scheme = if p.https { "https:" } else { "" };
        let mut g = group(
            format!(
                "{prefix}/api/v1/namespaces/{}/pods/{scheme}{}:{}/proxy{}",
                p.namespace, p.pod, p.port, p.path
            ),
            &format!("{}:{}", p.pod, p.port),
        );
        g.labels.insert("namespace", p.namespace.clone());
        g.labels.insert("pod", p.pod.clone());
        for (label, value) in [("app", &p.app), ("version", &p.version)] {
            if let Some(v) = value {
                g.labels.insert(label, v.clone());
            }
        }
        g
    };
    match kind {
        JobKind::Kubelet => targets
            .nodes
            .iter()
            .map(|n| group(format!("{prefix}/api/v1/nodes/{n}/proxy/metrics"), n))
            .collect(),
        JobKind::Cadvisor => targets
            .nodes
            .iter()
            .map(|n| {
                group(
                    format!("{prefix}/api/v1/nodes/{n}/proxy/metrics/cadvisor"),
                    n,
                )
            })
            .collect(),
        // Through the pod proxy: the service proxy answers from a random pod.
        JobKind::NodeExporter => targets
            .node_exporters
            .iter()
            .map(|p| {
                group(
                    format!(
                        "{prefix}/api/v1/namespaces/{}/pods/{}:{}/proxy/metrics",
                        p.namespace, p.pod, p.port
                    ),
                    &p.node,
                )
            })
            .collect(),
        JobKind::Pods => targets.pods.iter().map(pod_group).collect(),
        JobKind::Apiserver | JobKind::Federate => Vec::new(),
    }
}

/// Writes the targets files of one cluster, each only if it changed.
/// Returns how many files changed.
pub fn write_cluster(
    targets_dir: &Path,
    cluster: &Cluster,
    targets: &ClusterTargets,
) -> io::Result<usize> {
    let dir = targets_dir.join(cluster.name.as_str());
    fsutil::create_dir(&dir, 0o755)?;
    let mut changed = 0;
    for kind in JobKind::ALL
        .into_iter()
        .filter(|k| k.discovered() && k.enabled_in(cluster))
    {
        let path = file_path(targets_dir, &cluster.name, kind);
        // Prometheus reads these files as its own user.
        if fsutil::write_if_changed(&path, &file_sd_json(cluster, targets, kind), 0o644)? {
            changed += 1;
        }
    }
    for e in &cluster.exporters {
        let path = dir.join(exporter_file_name(e));
        if fsutil::write_if_changed(&path, &exporter_file_sd_json(cluster, targets, e), 0o644)? {
            changed += 1;
        }
    }
    // The monitor jobs are the ones just found, not those the (older)
    // definition was rendered with.
    let mut keep = defined_file_names(cluster);
    if let Some(m) = &targets.monitors {
        changed += write_monitors(&dir, cluster, m)?;
        keep.extend(m.jobs.iter().map(MonitorJob::file_name));
    }
    remove_stale(&dir, &keep)?;
    Ok(changed)
}

/// Writes the monitors' state and each monitor job's targets; how many
/// files changed.
fn write_monitors(dir: &Path, cluster: &Cluster, m: &MonitorsFound) -> io::Result<usize> {
    let mut changed = 0;
    for job in &m.jobs {
        let found = m
            .targets
            .get(&job.file_name())
            .map_or(&[][..], Vec::as_slice);
        let json = monitor_file_sd_json(cluster, job, found);
        if fsutil::write_if_changed(&dir.join(job.file_name()), &json, 0o644)? {
            changed += 1;
        }
    }
    if fsutil::write_if_changed(&dir.join(MONITORS_STATE), m.state.as_bytes(), 0o644)? {
        changed += 1;
    }
    Ok(changed)
}

/// Removes the targets files of jobs the cluster no longer has (an
/// exporter renamed or turned off, a monitor deleted).
fn remove_stale(dir: &Path, keep: &[String]) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".json") && !keep.iter().any(|k| k == name) && path.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Makes sure a targets file exists for every discovered job, so a cluster
/// whose first discovery failed still has jobs Prometheus accepts. Existing
/// files, the last known targets, are left alone.
pub fn ensure_files(targets_dir: &Path, cluster: &Cluster) -> io::Result<()> {
    fsutil::create_dir(&targets_dir.join(cluster.name.as_str()), 0o755)?;
    for kind in JobKind::ALL
        .into_iter()
        .filter(|k| k.discovered() && k.enabled_in(cluster))
    {
        let path = file_path(targets_dir, &cluster.name, kind);
        if !path.exists() {
            fsutil::write_atomic(&path, b"[]\n", 0o644)?;
        }
    }
    let names = cluster
        .exporters
        .iter()
        .map(exporter_file_name)
        .chain(cluster.monitor_jobs.iter().map(MonitorJob::file_name));
    for name in names {
        let path = targets_dir.join(cluster.name.as_str()).join(name);
        if !path.exists() {
            fsutil::write_atomic(&path, b"[]\n", 0o644)?;
        }
    }
    Ok(())
}

/// Removes the targets of clusters that are gone.
pub fn remove_others(targets_dir: &Path, keep: &[&ClusterName]) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(targets_dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && !keep.iter().any(|k| k.as_str() == name) {
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::SourceText;

    /// An exporter may take no built-in job's name or file.
    #[test]
    fn the_built_in_names_exporters_may_not_take_are_every_built_in_jobs() {
        for kind in JobKind::ALL {
            for name in [kind.slug(), kind.job_label()] {
                assert!(
                    crate::config::exporter::BUILT_IN.contains(&name),
                    "{name} is missing from exporter::BUILT_IN"
                );
            }
        }
    }

    #[test]
    fn exporter_targets_go_through_the_pod_or_the_service_proxy() {
        let text = "api_server = \"https://10.0.0.1:6443/k8s\"\ntoken_file = \"/t\"\nca_file = \"/ca\"\n[exporter.kube-dns]\n[exporter.kube-state-metrics]\nscheme = \"https\"\n";
        let cluster = Cluster::parse(&SourceText::new("/etc/promfed.d/c.toml", text), "c")
            .unwrap()
            .cluster;
        let mut targets = ClusterTargets::default();
        let target = |name: &str, port: &str, node: Option<&str>, per| ExporterTarget {
            namespace: "kube-system".into(),
            name: name.into(),
            port: port.into(),
            node: node.map(str::to_string),
            per,
        };
        targets.exporters.insert(
            "kube-dns".into(),
            vec![
                target("coredns-a", "9153", Some("n-1"), Per::Endpoint),
                target("coredns-b", "9153", None, Per::Endpoint),
            ],
        );
        targets.exporters.insert(
            "kube-state-metrics".into(),
            vec![target(
                "kube-state-metrics",
                "http-metrics",
                None,
                Per::Service,
            )],
        );
        let json = |job: &str| -> serde_json::Value {
            let e = cluster.exporters.iter().find(|e| e.job == job).unwrap();
            serde_json::from_slice(&exporter_file_sd_json(&cluster, &targets, e)).unwrap()
        };
        assert_eq!(
            json("kube-dns"),
            serde_json::json!([
                {"targets": ["10.0.0.1:6443"], "labels": {"__metrics_path__": "/k8s/api/v1/namespaces/kube-system/pods/coredns-a:9153/proxy/metrics", "instance": "n-1", "namespace": "kube-system", "pod": "coredns-a"}},
                {"targets": ["10.0.0.1:6443"], "labels": {"__metrics_path__": "/k8s/api/v1/namespaces/kube-system/pods/coredns-b:9153/proxy/metrics", "instance": "coredns-b", "namespace": "kube-system", "pod": "coredns-b"}},
            ])
        );
        assert_eq!(
            json("kube-state-metrics"),
            serde_json::json!([
                {"targets": ["10.0.0.1:6443"], "labels": {"__metrics_path__": "/k8s/api/v1/namespaces/kube-system/services/https:kube-state-metrics:http-metrics/proxy/metrics", "instance": "kube-system/kube-state-metrics:http-metrics"}},
            ])
        );
        assert_eq!(
            file_names(&cluster)[3..],
            ["kube-dns.json", "kube-state-metrics.json"]
        );
    }
}
