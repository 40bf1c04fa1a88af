//! The Kubernetes permissions a cluster file's enabled jobs need: one list,
//! from which `promfed rbac` writes the role and `promfed doctor` asks the
//! API server, so the two can never disagree.

use crate::config::cluster::Cluster;
use crate::config::exporter::Per;
use crate::config::federate::Source;
use crate::config::settings::DiscoveryMode;

/// One verb on one kind of object, cluster-wide or in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub verb: &'static str,
    pub object: Object,
    /// `None`: cluster-wide (a ClusterRole); else a Role in that namespace.
    pub namespace: Option<String>,
    /// Which job needs it, for the reader.
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    /// `group` is "" for the core API.
    Resource {
        group: &'static str,
        resource: &'static str,
        subresource: Option<&'static str>,
    },
    /// A non-resource URL, such as the API server's `/metrics`.
    Path(&'static str),
}

impl Object {
    const fn core(resource: &'static str) -> Object {
        Object::Resource {
            group: "",
            resource,
            subresource: None,
        }
    }

    const fn proxy(resource: &'static str) -> Object {
        Object::Resource {
            group: "",
            resource,
            subresource: Some("proxy"),
        }
    }

    /// As RBAC rules name it: `nodes/proxy`, `endpointslices`, `/metrics`.
    pub fn rbac_name(&self) -> String {
        match self {
            Object::Resource {
                resource,
                subresource: Some(sub),
                ..
            } => format!("{resource}/{sub}"),
            Object::Resource { resource, .. } => resource.to_string(),
            Object::Path(path) => path.to_string(),
        }
    }
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match &self.object {
            Object::Resource { group: "", .. } | Object::Path(_) => self.object.rbac_name(),
            Object::Resource { group, .. } => format!("{}.{group}", self.object.rbac_name()),
        };
        match &self.namespace {
            Some(ns) => write!(f, "{} {name} in namespace {ns}", self.verb),
            None => write!(f, "{} {name}", self.verb),
        }
    }
}

const fn slices() -> Object {
    Object::Resource {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        subresource: None,
    }
}

/// Every permission `cluster` needs, sorted, each once.
pub fn needed(cluster: &Cluster, mode: DiscoveryMode) -> Vec<Need> {
    let mut needs = Vec::new();
    let mut add = |verbs: &[&'static str], object: Object, namespace: Option<&str>, why: &str| {
        for verb in verbs {
            needs.push(Need {
                verb,
                object: object.clone(),
                namespace: namespace.map(str::to_string),
                why: why.to_string(),
            });
        }
    };
    const FOLLOW: &[&str] = &["list", "watch"];
    if cluster.kubelet.enabled || cluster.cadvisor.component.enabled {
        add(
            FOLLOW,
            Object::core("nodes"),
            None,
            "kubelet and cAdvisor targets",
        );
        add(
            &["get"],
            Object::proxy("nodes"),
            None,
            "scraping kubelet and cAdvisor",
        );
    }
    if cluster.apiserver.enabled {
        add(
            &["get"],
            Object::Path("/metrics"),
            None,
            "scraping the API server",
        );
    }
    if cluster.node_exporter.component.enabled {
        let ns = Some(cluster.node_exporter.namespace.as_str());
        add(FOLLOW, slices(), ns, "node-exporter targets");
        if mode == DiscoveryMode::KubernetesSd {
            // Prometheus's endpointslice role also follows the pods and
            // services of the namespace, for their labels.
            add(FOLLOW, Object::core("pods"), ns, "node-exporter targets");
            add(
                FOLLOW,
                Object::core("services"),
                ns,
                "node-exporter targets",
            );
        }
        add(
            &["get"],
            Object::proxy("pods"),
            ns,
            "scraping node-exporter",
        );
    }
    if let Some(pods) = &cluster.pods {
        let namespaces: Vec<Option<&str>> = match pods.namespaces.as_slice() {
            [] => vec![None],
            some => some.iter().map(|n| Some(n.as_str())).collect(),
        };
        for ns in namespaces {
            add(FOLLOW, Object::core("pods"), ns, "annotated pods ([pods])");
            add(
                &["get"],
                Object::proxy("pods"),
                ns,
                "scraping annotated pods ([pods])",
            );
        }
    }
    if let Some(Source::Service { namespace, .. }) = cluster.federate.as_ref().map(|f| &f.source) {
        add(
            &["get"],
            Object::proxy("services"),
            Some(namespace),
            "federating ([federate])",
        );
    }
    for e in &cluster.exporters {
        let (targets, scraping) = (
            format!("exporter {} targets", e.job),
            format!("scraping exporter {}", e.job),
        );
        for ns in e.namespaces.iter().map(|n| Some(n.as_str())) {
            add(FOLLOW, slices(), ns, &targets);
            let kubernetes_sd = mode == DiscoveryMode::KubernetesSd;
            if e.detect_shards && !kubernetes_sd {
                let why = format!("telling whether exporter {} is sharded", e.job);
                add(&["get"], Object::core("pods"), ns, &why);
            }
            match e.per {
                Per::Endpoint => {
                    if kubernetes_sd {
                        // Prometheus's endpointslice role follows these too.
                        add(FOLLOW, Object::core("pods"), ns, &targets);
                        add(FOLLOW, Object::core("services"), ns, &targets);
                    }
                    add(&["get"], Object::proxy("pods"), ns, &scraping);
                }
                Per::Service => {
                    if kubernetes_sd {
                        add(FOLLOW, Object::core("services"), ns, &targets);
                    }
                    add(&["get"], Object::proxy("services"), ns, &scraping);
                }
            }
        }
    }
    if let (Some(m), DiscoveryMode::FileSd) = (&cluster.monitors, mode) {
        let namespaces: Vec<Option<&str>> = match m.namespaces.as_slice() {
            [] => vec![None],
            some => some.iter().map(|n| Some(n.as_str())).collect(),
        };
        for ns in namespaces {
            for resource in ["servicemonitors", "podmonitors"] {
                let object = Object::Resource {
                    group: "monitoring.coreos.com",
                    resource,
                    subresource: None,
                };
                add(FOLLOW, object, ns, "monitors ([monitors])");
            }
            add(FOLLOW, slices(), ns, "ServiceMonitor targets ([monitors])");
            add(
                FOLLOW,
                Object::core("pods"),
                ns,
                "PodMonitor targets ([monitors])",
            );
            add(
                &["get"],
                Object::proxy("pods"),
                ns,
                "scraping monitor targets ([monitors])",
            );
        }
    }
    needs.sort();
    // The same permission for two jobs is one rule: keep the first reason.
    needs.dedup_by(|a, b| a.verb == b.verb && a.object == b.object && a.namespace == b.namespace);
    // A cluster-wide grant covers the namespaced ones.
    let wide: Vec<(&'static str, Object)> = needs
        .iter()
        .filter(|n| n.namespace.is_none())
        .map(|n| (n.verb, n.object.clone()))
        .collect();
    needs.retain(|n| {
        n.namespace.is_none() || !wide.iter().any(|(v, o)| *v == n.verb && *o == n.object)
    });
    needs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::SourceText;

    fn cluster(extra: &str) -> Cluster {
        let text = format!(
            "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"t\"\nca_file = \"c\"\n{extra}"
        );
        Cluster::parse(&SourceText::new("/etc/promfed.d/x.toml", text), "x")
            .unwrap()
            .cluster
    }

    fn shown(needs: &[Need]) -> Vec<String> {
        needs.iter().map(Need::to_string).collect()
    }

    #[test]
    fn monitors_need_their_crds_slices_pods_and_the_pod_proxy_where_they_look() {
        let needs = shown(&needed(
            &cluster(
                "[kubelet]\nenabled = false\n[cadvisor]\nenabled = false\n[apiserver]\nenabled = false\n[node_exporter]\nenabled = false\n[monitors]\nnamespaces = [\"shop\"]\n",
            ),
            DiscoveryMode::FileSd,
        ));
        assert_eq!(
            needs,
            [
                "get pods/proxy in namespace shop",
                "list pods in namespace shop",
                "list endpointslices.discovery.k8s.io in namespace shop",
                "list podmonitors.monitoring.coreos.com in namespace shop",
                "list servicemonitors.monitoring.coreos.com in namespace shop",
                "watch pods in namespace shop",
                "watch endpointslices.discovery.k8s.io in namespace shop",
                "watch podmonitors.monitoring.coreos.com in namespace shop",
                "watch servicemonitors.monitoring.coreos.com in namespace shop",
            ]
        );
        let wide = shown(&needed(&cluster("[monitors]\n"), DiscoveryMode::FileSd));
        assert!(
            wide.contains(&"watch servicemonitors.monitoring.coreos.com".to_string()),
            "{wide:?}"
        );
    }

    #[test]
    fn the_default_jobs_need_nodes_their_proxy_metrics_and_node_exporter() {
        assert_eq!(
            shown(&needed(&cluster(""), DiscoveryMode::FileSd)),
            [
                "get nodes/proxy",
                "get pods/proxy in namespace monitoring",
                "get /metrics",
                "list nodes",
                "list endpointslices.discovery.k8s.io in namespace monitoring",
                "watch nodes",
                "watch endpointslices.discovery.k8s.io in namespace monitoring",
            ]
        );
    }

    /// Jobs turned off take their permissions away; a cluster-wide grant
    /// makes the namespaced one of the same verb redundant.
    #[test]
    fn only_enabled_jobs_count_and_a_cluster_wide_grant_covers_a_namespace() {
        let off = "[kubelet]\nenabled = false\n[cadvisor]\nenabled = false\n[apiserver]\nenabled = false\n";
        let needs = shown(&needed(&cluster(off), DiscoveryMode::FileSd));
        assert!(
            needs
                .iter()
                .all(|n| !n.contains("nodes") && !n.contains("/metrics")),
            "{needs:?}"
        );
        let pods_everywhere = needed(&cluster("[pods]\nenabled = true\n"), DiscoveryMode::FileSd);
        let proxy: Vec<String> = shown(&pods_everywhere)
            .into_iter()
            .filter(|n| n.starts_with("get pods/proxy"))
            .collect();
        assert_eq!(proxy, ["get pods/proxy"], "one cluster-wide rule, not two");
        let sd = shown(&needed(&cluster(""), DiscoveryMode::KubernetesSd));
        assert!(
            sd.contains(&"watch services in namespace monitoring".to_string()),
            "{sd:?}"
        );
    }

    /// Each exporter: its slices followed and its proxy, in each of its
    /// namespaces only; Services followed only for Prometheus's own
    /// discovery; kube-state-metrics's pods read only by promfed's.
    #[test]
    fn exporters_need_their_slices_and_their_proxy_in_their_namespaces() {
        let c = cluster(
            "[node_exporter]\nenabled = false\n[kubelet]\nenabled = false\n[cadvisor]\nenabled = false\n[apiserver]\nenabled = false\n[exporter.kube-state-metrics]\n[exporter.kube-dns]\n",
        );
        assert_eq!(
            shown(&needed(&c, DiscoveryMode::FileSd)),
            [
                // kube-state-metrics's pods, read to tell a shard.
                "get pods in namespace kube-system",
                "get pods in namespace monitoring",
                "get pods/proxy in namespace kube-system",
                "get services/proxy in namespace kube-system",
                "get services/proxy in namespace monitoring",
                "list endpointslices.discovery.k8s.io in namespace kube-system",
                "list endpointslices.discovery.k8s.io in namespace monitoring",
                "watch endpointslices.discovery.k8s.io in namespace kube-system",
                "watch endpointslices.discovery.k8s.io in namespace monitoring",
            ]
        );
        let sd = shown(&needed(&c, DiscoveryMode::KubernetesSd));
        for need in [
            "watch services in namespace monitoring",
            "list pods in namespace kube-system",
            "watch services in namespace kube-system",
        ] {
            assert!(sd.contains(&need.to_string()), "{need}: {sd:?}");
        }
        assert!(
            !sd.iter()
                .any(|n| n.contains("pods in namespace monitoring")),
            "{sd:?}"
        );
        assert!(
            sd.contains(&"watch services in namespace monitoring".to_string()),
            "{sd:?}"
        );
        let written = cluster(
            "[node_exporter]\nenabled = false\n[kubelet]\nenabled = false\n[cadvisor]\nenabled = false\n[apiserver]\nenabled = false\n[exporter.kube-state-metrics]\nper = \"service\"\n",
        );
        let file_sd = shown(&needed(&written, DiscoveryMode::FileSd));
        assert!(
            !file_sd.iter().any(|n| n.starts_with("get pods ")),
            "{file_sd:?}"
        );
    }
}
