//! The scrape jobs of one cluster, all going through its API server.

use crate::config::cluster::{Cluster, PortRef};
use crate::config::settings::{DiscoveryMode, Settings};
use crate::render::files::NamedFile;
use crate::render::limits::JobLimits;
use crate::render::scrape_config::*;
use crate::targets::{self, JobKind};

/// The YAML of every enabled job of `cluster`, in a fixed order, as items
/// of a block list (`- job_name: …`). The series drops are the same for
/// every cluster and most of the bytes (5 of 7.5 KB), so their YAML is made
/// once per process.
pub fn cluster_yaml(cluster: &Cluster, settings: &Settings) -> (JobsYaml, Vec<NamedFile>) {
    let mut out = Vec::new();
    let mut files = Vec::new();
    for kind in JobKind::ALL.into_iter().filter(|k| k.enabled_in(cluster)) {
        let (job, drops) = job(cluster, kind, settings);
        files.extend(super::files::in_job(&job));
        let own = serde_norway::to_string(&[job]).expect("scrape configs serialise");
        out.push((own.into_boxed_str(), drops.yaml()));
    }
    for e in &cluster.exporters {
        let job = super::exporters::job(cluster, e, settings);
        files.extend(super::files::in_job(&job));
        let own = serde_norway::to_string(&[job]).expect("scrape configs serialise");
        out.push((own.into_boxed_str(), ""));
    }
    for m in &cluster.monitor_jobs {
        let job = super::monitors::job(cluster, m, settings);
        let own = serde_norway::to_string(&[job]).expect("scrape configs serialise");
        out.push((own.into_boxed_str(), ""));
    }
    (out, files)
}

/// Each job's YAML in two parts: its own, and its metric drops, which are
/// the same text for every cluster and kept once (two thirds of the bytes).
pub type JobsYaml = Vec<(Box<str>, &'static str)>;

/// Which metric drops a job has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drops {
    None,
    Kubelet,
    Cadvisor,
    Apiserver,
}

impl Drops {
    /// `metric_relabel_configs:` and its rules, indented as a key of a list
    /// item, made once.
    fn yaml(self) -> &'static str {
        use std::sync::OnceLock;
        static KUBELET: OnceLock<String> = OnceLock::new();
        static CADVISOR: OnceLock<String> = OnceLock::new();
        static APISERVER: OnceLock<String> = OnceLock::new();
        let (cell, rules): (&OnceLock<String>, fn() -> Vec<Relabel>) = match self {
            Drops::None => return "",
            Drops::Kubelet => (&KUBELET, kubelet_drops),
            Drops::Cadvisor => (&CADVISOR, cadvisor_drops),
            Drops::Apiserver => (&APISERVER, apiserver_drops),
        };
        cell.get_or_init(|| {
            #[derive(serde::Serialize)]
            struct Block {
                metric_relabel_configs: Vec<Relabel>,
            }
            let block = serde_norway::to_string(&Block {
                metric_relabel_configs: rules(),
            })
            .expect("relabel rules serialise");
            block.lines().map(|l| format!("  {l}\n")).collect()
        })
    }
}

/// A job that scrapes through `cluster`'s API server, with its credentials
/// and `limits`; its targets, labels and rules are the caller's to add.
pub(super) fn proxied(
    job_name: String,
    cluster: &Cluster,
    limits: &JobLimits,
    settings: &Settings,
) -> ScrapeConfig {
    ScrapeConfig {
        job_name,
        scrape_interval: Some(limits.interval.to_string()),
        scrape_timeout: Some(limits.limits.scrape_timeout.to_string()),
        honor_labels: None,
        honor_timestamps: None,
        metrics_path: None,
        fallback_scrape_protocol: settings.dialect().fallback_scrape_protocol(),
        params: Default::default(),
        sample_limit: Some(limits.limits.sample_limit),
        body_size_limit: Some(limits.limits.body_size_limit.to_string()),
        scheme: "https",
        authorization: authorization(cluster),
        tls_config: tls_config(cluster),
        static_configs: Vec::new(),
        file_sd_configs: Vec::new(),
        kubernetes_sd_configs: Vec::new(),
        relabel_configs: Vec::new(),
        metric_relabel_configs: Vec::new(),
    }
}

fn job(cluster: &Cluster, kind: JobKind, settings: &Settings) -> (ScrapeConfig, Drops) {
    let (honor_labels, honor_timestamps, drops) = match kind {
        JobKind::Kubelet => (Some(true), None, Drops::Kubelet),
        // cAdvisor's explicit timestamps keep dead containers' series
        // around for five minutes; Prometheus 2.42 has no
        // track_timestamps_staleness, so ignore them.
        JobKind::Cadvisor => (
            Some(true),
            Some(false),
            if cluster.cadvisor.drop_high_cardinality {
                Drops::Cadvisor
            } else {
                Drops::None
            },
        ),
        JobKind::Apiserver => (None, None, Drops::Apiserver),
        JobKind::NodeExporter => (None, None, Drops::None),
        JobKind::Federate => (Some(true), None, Drops::None),
        // As Istio's sample Prometheus scrapes annotated pods.
        JobKind::Pods => (Some(true), None, Drops::None),
    };
    let limits = super::limits::builtin(cluster, kind, settings);
    let mut job = proxied(kind.job_name(&cluster.name), cluster, &limits, settings);
    job.honor_labels = honor_labels;
    job.honor_timestamps = honor_timestamps;
    if let (JobKind::Federate, Some(f)) = (kind, &cluster.federate) {
        super::federate::fill(&mut job, cluster, f);
    } else if kind == JobKind::Apiserver {
        job.metrics_path = Some(format!("{}/metrics", cluster.api_server.path_prefix));
        job.static_configs.push(StaticConfig {
            targets: vec![cluster.api_server.address.clone()],
        });
    } else {
        match settings.discovery {
            DiscoveryMode::FileSd => {
                file_sd(&mut job, cluster, settings, &targets::file_name(kind));
            }
            DiscoveryMode::KubernetesSd => {
                let (sd, relabels) = kubernetes_sd(cluster, kind);
                job.kubernetes_sd_configs.push(sd);
                job.relabel_configs.extend(relabels);
            }
        }
    }
    job.relabel_configs
        .push(Relabel::set("job", kind.job_label()));
    match kind {
        JobKind::Kubelet => job
            .relabel_configs
            .push(Relabel::set("metrics_path", "/metrics")),
        JobKind::Cadvisor => job
            .relabel_configs
            .push(Relabel::set("metrics_path", "/metrics/cadvisor")),
        _ => {}
    }
    cluster_labels(&mut job, cluster);
    if kind == JobKind::Pods {
        // `honor_labels` keeps a pod's own labels; `cluster` stays ours.
        job.metric_relabel_configs
            .push(Relabel::set("cluster", cluster.name.as_str()));
    }
    (job, drops)
}

/// Every job of the cluster names all its files: Prometheus serves
/// identical file_sd blocks with one watcher (one inotify instance of the
/// 128 a user has by default), and each job keeps the targets of its own
/// file, `file_name`.
pub(super) fn file_sd(
    job: &mut ScrapeConfig,
    cluster: &Cluster,
    settings: &Settings,
    file_name: &str,
) {
    let dir = settings.targets_dir().join(cluster.name.as_str());
    let files = targets::file_names(cluster)
        .into_iter()
        .map(|name| path_string(&dir.join(name)))
        .collect();
    job.file_sd_configs.push(FileSdConfig { files });
    job.relabel_configs.push(Relabel::keep(
        &["__meta_filepath"],
        &format!(".*/{}", regex_escape(file_name)),
    ));
}

/// `cluster` on every series, then the cluster's labels, which fill in:
/// what discovery says of a target wins.
pub(super) fn cluster_labels(job: &mut ScrapeConfig, cluster: &Cluster) {
    job.relabel_configs
        .push(Relabel::set("cluster", cluster.name.as_str()));
    for (name, value) in &cluster.labels {
        job.relabel_configs
            .push(Relabel::fill(name.as_str(), value));
    }
}

pub(super) fn authorization(cluster: &Cluster) -> Option<Authorization> {
    let auth = &cluster.auth;
    let file = auth
        .prometheus_token_file
        .as_ref()
        .or(auth.token_file.as_ref());
    file.map(|p| Authorization {
        credentials_file: path_string(p),
    })
}

pub(super) fn tls_config(cluster: &Cluster) -> TlsConfig {
    let cert = cluster.auth.client_cert.as_ref();
    TlsConfig {
        ca_file: cluster.tls.ca_file.as_deref().map(path_string),
        cert_file: cert.map(|c| path_string(&c.cert_file)),
        key_file: cert.map(|c| path_string(&c.key_file)),
        server_name: cluster.tls.server_name.clone(),
        insecure_skip_verify: cluster.tls.insecure_skip_verify,
    }
}

/// For Prometheus builds with Kubernetes discovery: the same targets, found
/// by Prometheus itself and rewritten to the same proxy paths.
fn kubernetes_sd(cluster: &Cluster, kind: JobKind) -> (KubernetesSdConfig, Vec<Relabel>) {
    let prefix = &cluster.api_server.path_prefix;
    let address = &cluster.api_server.address;
    let sd = |role, namespaces| sd_config(cluster, role, namespaces);
    match kind {
        JobKind::Kubelet | JobKind::Cadvisor => {
            let suffix = if kind == JobKind::Cadvisor {
                "/cadvisor"
            } else {
                ""
            };
            (
                sd("node", None),
                vec![
                    Relabel::set("__address__", address),
                    Relabel::copy(
                        &["__meta_kubernetes_node_name"],
                        "(.+)",
                        "__metrics_path__",
                        &format!("{prefix}/api/v1/nodes/$1/proxy/metrics{suffix}"),
                    ),
                    Relabel::copy(&["__meta_kubernetes_node_name"], "(.+)", "instance", "$1"),
                ],
            )
        }
        // EndpointSlices, as promfed's own discovery: Endpoints are
        // deprecated since Kubernetes 1.33.
        JobKind::NodeExporter => {
            let ne = &cluster.node_exporter;
            let port_filter = match &ne.port {
                PortRef::Number(n) => Relabel::keep(&["__address__"], &format!(".+:{n}")),
                PortRef::Name(name) => Relabel::keep(
                    &["__meta_kubernetes_endpointslice_port_name"],
                    &regex_escape(name),
                ),
            };
            (
                sd(
                    "endpointslice",
                    Some(Namespaces {
                        names: vec![ne.namespace.clone()],
                    }),
                ),
                vec![
                    Relabel::keep(
                        &["__meta_kubernetes_endpointslice_label_kubernetes_io_service_name"],
                        &regex_escape(&ne.service),
                    ),
                    Relabel::keep(
                        &["__meta_kubernetes_endpointslice_endpoint_conditions_ready"],
                        "true",
                    ),
                    Relabel::keep(
                        &["__meta_kubernetes_endpointslice_address_target_kind"],
                        "Pod",
                    ),
                    port_filter,
                    Relabel::copy(
                        &[
                            "__meta_kubernetes_namespace",
                            "__meta_kubernetes_endpointslice_address_target_name",
                            "__address__",
                        ],
                        "(.+);(.+);.+:([0-9]+)",
                        "__metrics_path__",
                        &format!("{prefix}/api/v1/namespaces/$1/pods/$2:$3/proxy/metrics"),
                    ),
                    Relabel::copy(
                        &["__meta_kubernetes_endpointslice_endpoint_node_name"],
                        "(.+)",
                        "instance",
                        "$1",
                    ),
                    Relabel::set("__address__", address),
                ],
            )
        }
        JobKind::Pods => (
            sd(
                "pod",
                cluster.pods.as_ref().and_then(|p| {
                    (!p.namespaces.is_empty()).then(|| Namespaces {
                        names: p.namespaces.clone(),
                    })
                }),
            ),
            pods_relabels(prefix, address),
        ),
        JobKind::Apiserver | JobKind::Federate => {
            unreachable!("the API server and federation jobs have static targets")
        }
    }
}

/// Prometheus's Kubernetes discovery of `role`, with the cluster's
/// credentials.
pub(super) fn sd_config(
    cluster: &Cluster,
    role: &'static str,
    namespaces: Option<Namespaces>,
) -> KubernetesSdConfig {
    KubernetesSdConfig {
        api_server: cluster
            .api_server
            .url
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        role,
        namespaces,
        authorization: authorization(cluster),
        tls_config: tls_config(cluster),
    }
}

/// Prometheus's own pod discovery rewritten to the pod proxy, with the
/// rules of `discovery::pods` (as far as relabelling can say them: a path
/// segment may not start with a dot).
fn pods_relabels(prefix: &str, address: &str) -> Vec<Relabel> {
    const ANNOTATION: &str = "__meta_kubernetes_pod_annotation_prometheus_io_";
    let annotation = |name: &str| format!("{ANNOTATION}{name}");
    vec![
        Relabel::keep(&[&annotation("scrape")], "true"),
        Relabel::keep(&["__meta_kubernetes_pod_phase"], "Running"),
        Relabel::keep(&["__meta_kubernetes_pod_ready"], "true"),
        // The port: the annotation's, else the container port offered.
        Relabel::copy(
            &["__meta_kubernetes_pod_container_port_number"],
            "([0-9]+)",
            "__tmp_port",
            "$1",
        ),
        Relabel::copy(&[&annotation("port")], "([0-9]+)", "__tmp_port", "$1"),
        Relabel::keep(&["__tmp_port"], "[0-9]+"),
        Relabel::set("__tmp_path", "/metrics"),
        Relabel::copy(&[&annotation("path")], "/?(.+)", "__tmp_path", "/$1"),
        Relabel::keep(&["__tmp_path"], "(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+/?|/"),
        Relabel::copy(&[&annotation("scheme")], "https", "__tmp_scheme", "https:"),
        Relabel::copy(
            &[
                "__meta_kubernetes_namespace",
                "__meta_kubernetes_pod_name",
                "__tmp_scheme",
                "__tmp_port",
                "__tmp_path",
            ],
            "(.+);(.+);(.*);(.+);(.+)",
            "__metrics_path__",
            &format!("{prefix}/api/v1/namespaces/$1/pods/$3$2:$4/proxy$5"),
        ),
        Relabel::copy(&["__meta_kubernetes_namespace"], "(.+)", "namespace", "$1"),
        Relabel::copy(&["__meta_kubernetes_pod_name"], "(.+)", "pod", "$1"),
        Relabel::copy(&["__meta_kubernetes_pod_label_app"], "(.+)", "app", "$1"),
        Relabel::copy(
            &["__meta_kubernetes_pod_label_version"],
            "(.+)",
            "version",
            "$1",
        ),
        Relabel::copy(
            &["__meta_kubernetes_pod_name", "__tmp_port"],
            "(.+);(.+)",
            "instance",
            "$1:$2",
        ),
        Relabel::set("__address__", address),
    ]
}

/// kube-prometheus drops for the kubelet: deprecated families and the
/// control-plane families the kubelet re-exports.
fn kubelet_drops() -> Vec<Relabel> {
    vec![
        Relabel::drop_names(
            "kubelet_(pod_worker_latency_microseconds|pod_start_latency_microseconds|cgroup_manager_latency_microseconds|pod_worker_start_latency_microseconds|pleg_relist_latency_microseconds|pleg_relist_interval_microseconds|runtime_operations|runtime_operations_latency_microseconds|runtime_operations_errors|eviction_stats_age_microseconds|device_plugin_registration_count|device_plugin_alloc_latency_microseconds|network_plugin_operations_latency_microseconds)",
        ),
        Relabel::drop_names(
            "scheduler_(e2e_scheduling_latency_microseconds|scheduling_algorithm_predicate_evaluation|scheduling_algorithm_priority_evaluation|scheduling_algorithm_preemption_evaluation|scheduling_algorithm_latency_microseconds|binding_latency_microseconds|scheduling_latency_seconds)",
        ),
        Relabel::drop_names(
            "apiserver_(request_count|request_latencies|request_latencies_summary|dropped_requests|storage_data_key_generation_latencies_microseconds|storage_transformation_failures_total|storage_transformation_latencies_microseconds|proxy_tunnel_sync_latency_secs|longrunning_gauge|registered_watchers)",
        ),
        Relabel::drop_names(
            "kubelet_docker_(operations|operations_latency_microseconds|operations_errors|operations_timeout)",
        ),
        Relabel::drop_names(
            "reflector_(items_per_list|items_per_watch|list_duration_seconds|lists_total|short_watches_total|watch_duration_seconds|watches_total)",
        ),
        Relabel::drop_names(
            "etcd_(helper_cache_hit_count|helper_cache_miss_count|helper_cache_entry_count|object_counts|request_cache_get_latencies_summary|request_cache_add_latencies_summary|request_latencies_summary)",
        ),
        Relabel::drop_names(
            "transformation_(transformation_latencies_microseconds|failures_total)",
        ),
        Relabel::drop_names(
            "(admission_quota_controller_adds|admission_quota_controller_depth|admission_quota_controller_longest_running_processor_microseconds|admission_quota_controller_queue_latency|admission_quota_controller_unfinished_work_seconds|admission_quota_controller_work_duration|APIServiceOpenAPIAggregationControllerQueue1_adds|APIServiceOpenAPIAggregationControllerQueue1_depth|APIServiceRegistrationController_adds|APIServiceRegistrationController_depth|AvailableConditionController_adds|AvailableConditionController_depth|crd_autoregistration_controller_adds|crd_autoregistration_controller_depth|crdEstablishing_adds|crdEstablishing_depth|DiscoveryController_adds|DiscoveryController_depth|non_structural_schema_condition_controller_adds|non_structural_schema_condition_controller_depth|autoregister_adds|autoregister_depth)",
        ),
        Relabel::drop(
            &["__name__", "le"],
            "(csi_operations|storage_operation_duration)_seconds_bucket;(0.25|2.5|15|25|120|600)(\\.0)?",
        ),
    ]
}

/// kube-prometheus-stack's cAdvisor drops: the high-cardinality families,
/// virtual network interfaces and cgroups that belong to no pod.
fn cadvisor_drops() -> Vec<Relabel> {
    vec![
        Relabel::drop_names(
            "container_cpu_(cfs_throttled_seconds_total|load_average_10s|system_seconds_total|user_seconds_total)",
        ),
        Relabel::drop_names(
            "container_fs_(io_current|io_time.*|reads_merged_total|sector_.*|writes_merged_total)",
        ),
        Relabel::drop_names("container_memory_(mapped_file|swap)"),
        Relabel::drop_names("container_(file_descriptors|tasks_state|threads_max)"),
        Relabel::drop_names("container_spec.*"),
        Relabel::drop(
            &["__name__", "interface"],
            "container_network_.*;(cali|cilium|cni|lxc|nodelocaldns|tunl).*",
        ),
        Relabel::drop(&["id", "pod"], ".+;"),
    ]
}

/// kube-prometheus drops for the API server: etcd internals, deprecated
/// admission latencies and the finest histogram buckets.
fn apiserver_drops() -> Vec<Relabel> {
    vec![
        Relabel::drop_names("etcd_(debugging|disk|server).*"),
        Relabel::drop_names("apiserver_admission_(controller|step)_admission_latencies_seconds_.*"),
        Relabel::drop(
            &["__name__", "le"],
            "apiserver_request_duration_seconds_bucket;(0.15|0.2|0.3|0.35|0.4|0.45|0.6|0.7|0.8|0.9|1.25|1.5|1.75|2|3|3.5|4|4.5|6|7|8|9|15|25|40|50)",
        ),
        Relabel::drop(
            &["__name__", "le"],
            "etcd_request_duration_seconds_bucket;(0.15|0.2|0.3|0.35|0.4|0.45|0.6|0.7|0.8|0.9|1.25|1.5|1.75|2|3|3.5|4|4.5|6|7|8|9|15|25|40|50)",
        ),
    ]
}
