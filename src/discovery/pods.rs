//! `[pods]`: the pods annotated `prometheus.io/scrape: "true"` that are
//! Running and Ready, as Istio's sample Prometheus scrapes them (it sets
//! the annotation on sidecars, gateways, istiod, ztunnel and waypoints).
//!
//! Annotations are the pod owner's input, and they end up in a proxy path
//! that promfed's identity requests: a port is a number, a path is plain
//! URL path characters without dot segments (`..` would leave the pod's
//! proxy for another API path), a scheme is `http` or `https`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::client::{KubeClient, Permission};
use super::decode::null_as_empty;
use super::{DiscoveryError, JSON, Listed, list_all};
use crate::config::cluster::Cluster;
use crate::config::names;
use crate::config::pods::Pods;
use crate::targets::ScrapePod;

#[derive(Debug, Deserialize)]
pub struct Pod {
    metadata: PodMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    spec: PodSpec,
    #[serde(default, deserialize_with = "null_as_empty")]
    status: PodStatus,
}

#[derive(Debug, Deserialize)]
struct PodMeta {
    name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    namespace: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct PodSpec {
    #[serde(default, deserialize_with = "null_as_empty")]
    containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
struct Container {
    #[serde(default, deserialize_with = "null_as_empty")]
    ports: Vec<ContainerPort>,
}

#[derive(Debug, Deserialize)]
struct ContainerPort {
    #[serde(rename = "containerPort")]
    container_port: u16,
}

#[derive(Debug, Default, Deserialize)]
struct PodStatus {
    #[serde(default, deserialize_with = "null_as_empty")]
    phase: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    conditions: Vec<PodCondition>,
}

#[derive(Debug, Deserialize)]
struct PodCondition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

impl Pod {
    /// The key the daemon keeps it by.
    pub fn key(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }
}

/// Where to scrape `pod`, if it is to be scraped at all.
pub fn scrape_target(pod: &Pod) -> Option<ScrapePod> {
    let a = &pod.metadata.annotations;
    if a.get("prometheus.io/scrape").map(String::as_str) != Some("true") {
        return None;
    }
    let ready = pod
        .status
        .conditions
        .iter()
        .any(|c| c.kind == "Ready" && c.status == "True");
    if pod.status.phase != "Running" || !ready {
        return None;
    }
    if !names::is_label(&pod.metadata.namespace) || !names::is_subdomain(&pod.metadata.name) {
        return None;
    }
    // Without the annotation, the first port a container declares (as
    // Prometheus's pod discovery would offer it).
    let port = match a.get("prometheus.io/port") {
        Some(p) => p.trim().parse::<u16>().ok().filter(|p| *p > 0)?,
        None => pod
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .map(|p| p.container_port)
            .find(|p| *p > 0)?,
    };
    let path = match a.get("prometheus.io/path").map(|p| p.trim()) {
        None | Some("") => "/metrics".to_string(),
        Some(p) if safe_path(p) => {
            if p.starts_with('/') {
                p.to_string()
            } else {
                format!("/{p}")
            }
        }
        Some(_) => return None,
    };
    let https = match a.get("prometheus.io/scheme").map(|s| s.trim()) {
        None | Some("" | "http") => false,
        Some("https") => true,
        Some(_) => return None,
    };
    let label = |name: &str| pod.metadata.labels.get(name).cloned();
    Some(ScrapePod {
        namespace: pod.metadata.namespace.clone(),
        pod: pod.metadata.name.clone(),
        port,
        path,
        https,
        app: label("app"),
        version: label("version"),
    })
}

/// Plain path characters, and no `.` or `..` segment.
fn safe_path(p: &str) -> bool {
    p.len() <= 1024
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c))
        && !p
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// The namespaces listed and watched: each of `[pods] namespaces`, or all
/// (`None`) at once.
pub fn scopes(pods: &Pods) -> Vec<Option<String>> {
    if pods.namespaces.is_empty() {
        vec![None]
    } else {
        pods.namespaces.iter().cloned().map(Some).collect()
    }
}

pub fn path(scope: &Option<String>) -> String {
    match scope {
        None => "/api/v1/pods".into(),
        Some(ns) => format!("/api/v1/namespaces/{ns}/pods"),
    }
}

pub const LIST: Permission = Permission {
    verb: "list",
    resource: "pods",
};
pub const WATCH: Permission = Permission {
    verb: "watch",
    resource: "pods",
};

/// The pods to scrape, by key, and the version of each scope's list.
pub async fn list(
    client: &KubeClient,
    cluster: &Cluster,
) -> Result<(BTreeMap<String, ScrapePod>, Vec<String>), DiscoveryError> {
    let mut found = BTreeMap::new();
    let mut versions = Vec::new();
    let Some(pods) = &cluster.pods else {
        return Ok((found, versions));
    };
    for scope in scopes(pods) {
        let path = path(&scope);
        let listed: Listed<Pod> = list_all(client, &path, JSON, LIST, "endless pagination of pods")
            .await?
            .ok_or_else(|| DiscoveryError::NotFound {
                what: "the pods API".into(),
                url: path.clone(),
            })?;
        for pod in &listed.items {
            if let Some(target) = scrape_target(pod) {
                found.insert(pod.key(), target);
            }
        }
        versions.push(listed.version);
    }
    Ok((found, versions))
}

/// The targets, sorted, at most `max_targets`; and how many matched when
/// there were more.
pub fn capped(found: &BTreeMap<String, ScrapePod>, pods: &Pods) -> (Vec<ScrapePod>, Option<usize>) {
    let all: Vec<ScrapePod> = found.values().cloned().collect();
    if all.len() > pods.max_targets {
        let matched = all.len();
        (
            all.into_iter().take(pods.max_targets).collect(),
            Some(matched),
        )
    } else {
        (all, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: &[(&str, &str)], phase: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "reviews-v2-abc", "namespace": "bookinfo",
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
                "labels": {"app": "reviews", "version": "v2"},
            },
            "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9080}]}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn annotated_running_ready_pods_only_with_their_port_path_and_scheme() {
        let istio = [
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "15020"),
            ("prometheus.io/path", "/stats/prometheus"),
        ];
        let t = scrape_target(&pod(&istio, "Running", true)).unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.https),
            (15020, "/stats/prometheus", false)
        );
        assert_eq!(
            (t.app.as_deref(), t.version.as_deref()),
            (Some("reviews"), Some("v2"))
        );
        assert!(
            scrape_target(&pod(&istio, "Running", false)).is_none(),
            "not ready"
        );
        assert!(
            scrape_target(&pod(&istio, "Pending", true)).is_none(),
            "not running"
        );
        assert!(
            scrape_target(&pod(&[], "Running", true)).is_none(),
            "not annotated"
        );
        assert!(
            scrape_target(&pod(&[("prometheus.io/scrape", "false")], "Running", true)).is_none()
        );
        let plain =
            scrape_target(&pod(&[("prometheus.io/scrape", "true")], "Running", true)).unwrap();
        assert_eq!(
            (plain.port, plain.path.as_str()),
            (9080, "/metrics"),
            "the container's port"
        );
        let https = scrape_target(&pod(
            &[
                ("prometheus.io/scrape", "true"),
                ("prometheus.io/scheme", "https"),
            ],
            "Running",
            true,
        ))
        .unwrap();
        assert!(https.https);
    }

    /// An annotation that would leave the pod's proxy, or is not what it
    /// says, scrapes nothing.
    #[test]
    fn hostile_annotations_scrape_nothing() {
        for (key, value) in [
            ("prometheus.io/path", "/../../../api/v1/secrets"),
            ("prometheus.io/path", "/metrics?x=1"),
            ("prometheus.io/path", "/a b"),
            ("prometheus.io/path", "/%2e%2e/x"),
            ("prometheus.io/path", "./x"),
            ("prometheus.io/port", "70000"),
            ("prometheus.io/port", "0"),
            ("prometheus.io/port", "http"),
            ("prometheus.io/scheme", "ftp"),
        ] {
            let p = pod(
                &[("prometheus.io/scrape", "true"), (key, value)],
                "Running",
                true,
            );
            assert!(scrape_target(&p).is_none(), "{key}: {value}");
        }
    }
}
