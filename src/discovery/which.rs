//! The watches of one cluster: which resource each follows, as discovery
//! counts it (each has its own request ceiling) and as status and metrics
//! name it.

use super::{exporters, monitors, pods};
use crate::config::cluster::Cluster;

/// Which watch an event came from; also the resource a ceiling counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Which {
    Nodes,
    /// node-exporter's service's EndpointSlices.
    Slices,
    /// The pods of scope `.0`.
    Pods(usize),
    /// The EndpointSlices of exporter namespace `.0`.
    Exporters(usize),
    /// `[monitors]` scope `.0`'s resource `.1`.
    Monitors(usize, monitors::Resource),
}

/// The watches the cluster's definition asks for, in the order discovery
/// opens them.
pub fn all(cluster: &Cluster) -> Vec<Which> {
    let mut all = Vec::new();
    if cluster.kubelet.enabled || cluster.cadvisor.component.enabled {
        all.push(Which::Nodes);
    }
    if cluster.node_exporter.component.enabled {
        all.push(Which::Slices);
    }
    if let Some(wanted) = &cluster.pods {
        all.extend((0..pods::scopes(wanted).len()).map(Which::Pods));
    }
    all.extend((0..exporters::scopes(&cluster.exporters).len()).map(Which::Exporters));
    // Every resource a monitor scope may watch: those the server does not
    // serve are never opened, and what is never opened is never aged.
    if let Some(m) = &cluster.monitors {
        for scope in 0..monitors::scopes(m).len() {
            all.extend(monitors::Resource::ALL.map(|r| Which::Monitors(scope, r)));
        }
    }
    all
}

impl Which {
    /// The `resource` of status and metrics: `nodes`, `endpointslices`
    /// (node-exporter's), `pods` or `pods/NAMESPACE`, and
    /// `exporters/NAMESPACE` (the exporters' EndpointSlices there), and
    /// `monitors/RESOURCE[/NAMESPACE]` (what `[monitors]` watches).
    pub fn label(self, cluster: &Cluster) -> String {
        match self {
            Which::Nodes => "nodes".into(),
            Which::Slices => "endpointslices".into(),
            Which::Pods(scope) => {
                let scopes = cluster.pods.as_ref().map(pods::scopes).unwrap_or_default();
                match scopes.get(scope).cloned().flatten() {
                    Some(namespace) => format!("pods/{namespace}"),
                    None => "pods".into(),
                }
            }
            Which::Exporters(scope) => {
                let scopes = exporters::scopes(&cluster.exporters);
                let namespace = scopes.get(scope).map_or("", |s| s.namespace.as_str());
                format!("exporters/{namespace}")
            }
            Which::Monitors(scope, resource) => {
                let scopes = cluster.monitors.as_ref().map(monitors::scopes);
                match scopes.and_then(|s| s.get(scope).cloned().flatten()) {
                    Some(namespace) => format!("monitors/{}/{namespace}", resource.name()),
                    None => format!("monitors/{}", resource.name()),
                }
            }
        }
    }
}
