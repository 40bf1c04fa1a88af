//! The Alertmanager configuration: the operator's base file with one route
//! per cluster that names a receiver, matching its `cluster` label.

use serde_norway::{Mapping, Value};

use super::{Base, Candidate};
use crate::config::cluster::Cluster;
use crate::config::diagnostic::Diagnostic;

/// A route promfed adds: alerts of `cluster` go to `receiver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRoute {
    pub cluster: String,
    pub receiver: String,
}

impl ClusterRoute {
    pub fn matcher(&self) -> String {
        format!("cluster=\"{}\"", self.cluster)
    }
}

/// The routes these clusters ask for, in cluster order.
fn expected_routes(clusters: &[&Cluster]) -> Vec<ClusterRoute> {
    clusters
        .iter()
        .filter_map(|c| {
            Some(ClusterRoute {
                cluster: c.name.to_string(),
                receiver: c.receiver.clone()?,
            })
        })
        .collect()
}

/// Base plus the cluster routes, placed first under `route.routes` so that
/// each cluster's alerts reach its receiver before the operator's own routes.
/// Whether each receiver exists is amtool's to judge, in the gate.
pub fn alertmanager_config(
    base: &Base,
    clusters: &[&Cluster],
    clusters_dir: &std::path::Path,
) -> Result<Candidate, Vec<Diagnostic>> {
    let mut doc = base.value().map_err(|d| vec![d])?;
    let Some(Value::Mapping(route)) = doc.get_mut("route") else {
        return Err(vec![base.key_problem(
            "route",
            "the Alertmanager base file needs a top-level `route` with a default receiver",
        )]);
    };
    let own = match route.remove("routes") {
        Some(Value::Sequence(routes)) => routes,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(vec![base.key_problem("routes", "must be a list of routes")]),
    };
    let mut routes: Vec<Value> = expected_routes(clusters)
        .iter()
        .map(|r| {
            let mut m = Mapping::new();
            m.insert("receiver".into(), r.receiver.clone().into());
            m.insert("matchers".into(), Value::Sequence(vec![r.matcher().into()]));
            Value::Mapping(m)
        })
        .collect();
    routes.extend(own);
    if !routes.is_empty() {
        route.insert("routes".into(), Value::Sequence(routes));
    }
    let yaml = serde_norway::to_string(&doc).expect("a mapping serialises");
    Ok(base.candidate(&yaml, clusters_dir, Vec::new()))
}
