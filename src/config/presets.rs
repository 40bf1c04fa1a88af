//! The exporters `[exporter.<job>]` knows by name: a table with no keys
//! is a whole job, and any key written overrides the preset's.

use super::limits::{self, Defaults};
use super::values::PortRef;

/// What a preset fills in; each key written in the table replaces it.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    /// Searched in this order; every match is a target.
    pub namespaces: &'static [&'static str],
    /// The Service's labels (its EndpointSlices carry them too).
    pub selector: &'static [(&'static str, &'static str)],
    /// Any of these ports: a name first, then a number.
    pub ports: &'static [Port],
    pub per_endpoint: bool,
    /// Per service unless its pods say they are shards (`per` unwritten):
    /// then per endpoint (`discovery::exporters::is_sharded`).
    pub detect_shards: bool,
    pub honor_labels: bool,
    /// Limits when the table writes none.
    pub limits: Defaults,
}

/// A port a preset names (a `PortRef` that can be a constant).
#[derive(Debug, Clone, Copy)]
pub enum Port {
    Name(&'static str),
    Number(u16),
}

impl Port {
    pub fn to_ref(self) -> PortRef {
        match self {
            Port::Name(n) => PortRef::Name(n.to_string()),
            Port::Number(n) => PortRef::Number(n),
        }
    }
}

/// kube-state-metrics describes other objects: its `namespace`, `pod` and
/// `container` labels must win over the target's (kube-prometheus scrapes
/// it with `honorLabels: true`). One Deployment answers for the whole
/// cluster, so one target through the service proxy; a sharded one
/// (`--total-shards`, or `--pod`/`--pod-namespace` in a StatefulSet) is
/// scraped per endpoint, each shard knowing its part. kube-prometheus
/// names the port `http-metrics`, the Helm chart `http` on 8080; the
/// Service is in `monitoring` (kube-prometheus) or `kube-system`.
const KUBE_STATE_METRICS: Preset = Preset {
    name: "kube-state-metrics",
    namespaces: &["kube-system", "monitoring"],
    selector: &[("app.kubernetes.io/name", "kube-state-metrics")],
    ports: &[Port::Name("http-metrics"), Port::Number(8080)],
    per_endpoint: false,
    detect_shards: true,
    honor_labels: true,
    limits: limits::KUBE_STATE_METRICS,
};

/// CoreDNS behind the `kube-dns` Service; kube-prometheus's job name.
/// Each replica counts its own queries: per endpoint.
const KUBE_DNS: Preset = Preset {
    name: "kube-dns",
    namespaces: &["kube-system"],
    selector: &[("k8s-app", "kube-dns")],
    ports: &[Port::Name("metrics"), Port::Number(9153)],
    per_endpoint: true,
    detect_shards: false,
    honor_labels: false,
    limits: limits::KUBE_DNS,
};

pub const ALL: [Preset; 2] = [KUBE_DNS, KUBE_STATE_METRICS];

pub fn named(name: &str) -> Option<Preset> {
    ALL.into_iter().find(|p| p.name == name)
}

/// The presets' names, for messages.
pub fn names() -> String {
    ALL.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}
