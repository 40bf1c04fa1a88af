//! Finding each cluster's nodes and ready node-exporter pods through its API
//! server.

mod client;
pub(crate) mod decode;
pub(crate) mod exporters;
mod follow;
mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
mod lean;
mod monitors;
mod objects;
mod pace;
mod pods;
mod redact;
pub use redact::redact;
mod tls;
mod transport;
mod which;

use std::time::Duration;

pub use crate::discovery_error::DiscoveryError;
pub use client::{
    KubeClient, MAX_RESPONSE_BYTES, Permission, WATCH_SILENCE, token_in, token_problem,
};
pub use follow::follow;
pub use monitors::jobs_of_state as monitor_jobs_of_state;
pub use tls::observing_config;

use crate::config::cluster::{Cluster, PortRef};
use crate::config::names;
use crate::targets::{ClusterTargets, ExporterPod};
use objects::{EndpointSlice, Endpoints, List};
use serde::de::DeserializeOwned;

/// Page size for lists: the API server's default chunking.
const PAGE: usize = 500;
/// At most this many pages per list (100,000 nodes): a server that always
/// answers with a `continue` token must not keep promfed listing for ever.
const MAX_PAGES: usize = 200;

/// How far one cluster's discovery may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Each request.
    pub request_timeout: Duration,
    /// The whole discovery of the cluster, every page included.
    pub deadline: Duration,
    /// Targets per job of one cluster (`max_targets` in promfed.toml).
    pub max_targets: usize,
}

/// Discovers one cluster: the nodes (for kubelet and cAdvisor), the ready
/// node-exporter pods behind the configured service, and the annotated
/// pods. Fails alone, within its limits; the caller keeps the last
/// targets. The lists are the ones `follow` makes, and are handed to it
/// (`Resume`) so that a new cluster is listed once, not twice.
pub async fn discover(cluster: &Cluster, limits: Limits) -> Result<Discovered, DiscoveryError> {
    let client = KubeClient::new(cluster, limits.request_timeout)?;
    let known = follow::list_within(&client, cluster, limits, &Default::default()).await?;
    let targets = known.targets(cluster, limits)?;
    Ok(Discovered {
        targets,
        resume: Resume(known),
    })
}

/// What one discovery found, and the lists to watch on from.
pub struct Discovered {
    pub targets: ClusterTargets,
    pub resume: Resume,
}

/// A cluster's lists with their resource versions, for `follow`.
pub struct Resume(follow::Known);

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resume")
    }
}

/// The targets for these nodes and pods: names Kubernetes itself would not
/// allow are left out (they go into proxy paths), and no job may have more
/// than `max_targets`.
fn targets_of(
    cluster: &Cluster,
    nodes: impl IntoIterator<Item = String>,
    pods: Vec<ExporterPod>,
    limits: Limits,
) -> Result<ClusterTargets, DiscoveryError> {
    let mut targets = ClusterTargets::default();
    for node in nodes {
        if names::is_subdomain(&node) {
            targets.nodes.push(node);
        } else {
            targets.skipped.push(format!("node {node:?}"));
        }
    }
    for pod in pods {
        if names::is_label(&pod.namespace) && names::is_subdomain(&pod.pod) {
            targets.node_exporters.push(pod);
        } else {
            targets
                .skipped
                .push(format!("pod {:?}/{:?}", pod.namespace, pod.pod));
        }
    }
    targets.nodes.sort();
    targets.nodes.dedup();
    let most = targets.nodes.len().max(targets.node_exporters.len());
    if most > limits.max_targets {
        return Err(DiscoveryError::TooMuch {
            what: "more targets than allowed",
            url: cluster.api_server.url.to_string(),
            limit: format!(
                "{most} for one job, more than max_targets = {} (raise it in promfed.toml if this cluster is really that large)",
                limits.max_targets
            ),
        });
    }
    Ok(targets)
}

/// No exporter job may have more than `max_targets` either.
fn check_exporter_counts(
    cluster: &Cluster,
    targets: &ClusterTargets,
    limits: Limits,
) -> Result<(), DiscoveryError> {
    match targets
        .exporters
        .iter()
        .find(|(_, t)| t.len() > limits.max_targets)
    {
        None => Ok(()),
        Some((job, t)) => Err(DiscoveryError::TooMuch {
            what: "more targets than allowed",
            url: cluster.api_server.url.to_string(),
            limit: format!(
                "{} for exporter {job}, more than max_targets = {} (raise it in promfed.toml if this cluster is really that large)",
                t.len(),
                limits.max_targets
            ),
        }),
    }
}

/// A whole list, and the resource version a watch of it starts from.
pub(crate) struct Listed<T> {
    pub items: Vec<T>,
    pub version: String,
}

/// Nodes as metadata only: names are all promfed needs, and large clusters
/// would otherwise ship whole Node objects.
const NODES_AS_METADATA: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
const JSON: &str = "application/json";

/// Every item of a list, page by page (at most `MAX_PAGES`); `None` when
/// the API answers 404 (a group the server does not serve).
async fn list_all<T: DeserializeOwned>(
    client: &KubeClient,
    path: &str,
    accept: &str,
    needs: Permission,
    endless: &'static str,
) -> Result<Option<Listed<T>>, DiscoveryError> {
    let mut items = Vec::new();
    let mut continue_token: Option<String> = None;
    let separator = if path.contains('?') { '&' } else { '?' };
    for _ in 0..MAX_PAGES {
        let mut page_path = format!("{path}{separator}limit={PAGE}");
        if let Some(token) = &continue_token {
            page_path.push_str("&continue=");
            page_path.push_str(&encode(token));
        }
        let Some(page) = client.get::<List<T>>(&page_path, accept, needs).await? else {
            return Ok(None);
        };
        items.extend(page.items);
        match page.metadata.continue_token.filter(|t| !t.is_empty()) {
            Some(token) => continue_token = Some(token),
            None => {
                return Ok(Some(Listed {
                    items,
                    version: page.metadata.resource_version.unwrap_or_default(),
                }));
            }
        }
    }
    Err(DiscoveryError::TooMuch {
        what: endless,
        url: path.into(),
        limit: format!("still a `continue` token after {MAX_PAGES} pages of {PAGE}"),
    })
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn pods_of_slices<'a>(
    cluster: &Cluster,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Result<Vec<ExporterPod>, DiscoveryError> {
    let ne = &cluster.node_exporter;
    let mut pods = Vec::new();
    let mut available = Vec::new();
    for slice in slices {
        let port = slice.ports.iter().find(|p| match &ne.port {
            PortRef::Number(n) => p.port == Some(*n),
            PortRef::Name(name) => p.name.as_deref() == Some(name),
        });
        let Some(port) = port.and_then(|p| p.port) else {
            available.extend(slice.ports.iter().map(|p| {
                format!(
                    "{}={}",
                    p.name.as_deref().unwrap_or("-"),
                    p.port.map_or("-".into(), |n| n.to_string())
                )
            }));
            continue;
        };
        for endpoint in &slice.endpoints {
            if endpoint.conditions.ready == Some(false) {
                continue;
            }
            pods.extend(exporter_pod(
                ne,
                &endpoint.node_name,
                &endpoint.target_ref,
                port,
            ));
        }
    }
    finish_pods(ne, pods, available)
}

pub(crate) async fn endpoints_pods(
    client: &KubeClient,
    cluster: &Cluster,
) -> Result<Vec<ExporterPod>, DiscoveryError> {
    let ne = &cluster.node_exporter;
    let path = format!(
        "/api/v1/namespaces/{}/endpoints/{}",
        ne.namespace, ne.service
    );
    let endpoints: Endpoints = client
        .get(
            &path,
            JSON,
            Permission {
                verb: "get",
                resource: "endpoints",
            },
        )
        .await?
        .ok_or_else(|| DiscoveryError::NotFound {
            what: format!("service {}/{} (its endpoints)", ne.namespace, ne.service),
            url: path.clone(),
        })?;
    let mut pods = Vec::new();
    let mut available = Vec::new();
    for subset in &endpoints.subsets {
        let port = subset.ports.iter().find(|p| match &ne.port {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(name) => p.name.as_deref() == Some(name),
        });
        let Some(port) = port else {
            available.extend(
                subset
                    .ports
                    .iter()
                    .map(|p| format!("{}={}", p.name.as_deref().unwrap_or("-"), p.port)),
            );
            continue;
        };
        for address in &subset.addresses {
            pods.extend(exporter_pod(
                ne,
                &address.node_name,
                &address.target_ref,
                port.port,
            ));
        }
    }
    finish_pods(ne, pods, available)
}

/// A node-exporter pod behind one endpoint address, when the address is a
/// pod's and names its node.
fn exporter_pod(
    ne: &crate::config::cluster::NodeExporter,
    node: &Option<Box<str>>,
    target: &Option<objects::ObjectRef>,
    port: u16,
) -> Option<ExporterPod> {
    let (Some(node), Some(target)) = (node, target) else {
        return None;
    };
    if target.kind.is_some_and(|k| k != objects::Kind::Pod) {
        return None;
    }
    Some(ExporterPod {
        node: node.to_string(),
        namespace: target
            .namespace
            .as_deref()
            .map_or_else(|| ne.namespace.clone(), str::to_string),
        pod: target.name.to_string(),
        port,
    })
}

/// The pods found, sorted; none at all while the service has other ports
/// is a wrong port in the cluster file, said with the ports there are.
fn finish_pods(
    ne: &crate::config::cluster::NodeExporter,
    mut pods: Vec<ExporterPod>,
    available: Vec<String>,
) -> Result<Vec<ExporterPod>, DiscoveryError> {
    if pods.is_empty() && !available.is_empty() {
        return Err(DiscoveryError::NoSuchPort {
            namespace: ne.namespace.clone(),
            service: ne.service.clone(),
            port: ne.port.to_string(),
            available: available.join(", "),
        });
    }
    pods.sort();
    pods.dedup();
    Ok(pods)
}

/// The view alone: decoded objects to targets, no socket.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::SourceText;

    fn cluster() -> Cluster {
        let text = "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"/t\"\nca_file = \"/ca\"\n[node_exporter]\nport = \"metrics\"\n";
        Cluster::parse(&SourceText::new("/etc/promfed.d/c.toml", text), "c")
            .map(|p| p.cluster)
            .map_err(|_| "invalid")
            .unwrap()
    }

    fn slice(json: &str) -> EndpointSlice {
        decode::from_slice(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_placeholder_slice_is_zero_pods_not_an_error() {
        let c = cluster();
        for placeholder in [
            r#"{"metadata":{"name":"ne-abc"},"endpoints":null,"ports":null}"#,
            r#"{"metadata":{"name":"ne-abc"}}"#,
        ] {
            assert_eq!(pods_of_slices(&c, [&slice(placeholder)]).unwrap(), vec![]);
        }
    }

    #[test]
    fn ready_pod_endpoints_on_the_named_port_are_targets() {
        let c = cluster();
        let s = slice(
            r#"{"metadata":{"name":"ne-1","labels":null},
                "ports":[{"name":"metrics","port":9100}],
                "endpoints":[
                  {"conditions":{"ready":true},"nodeName":"n1","targetRef":{"kind":"Pod","name":"ne-a","namespace":"monitoring"}},
                  {"conditions":null,"addresses":null,"nodeName":"n2","targetRef":{"kind":"Pod","name":"ne-b"}},
                  {"conditions":{"ready":false},"nodeName":"n3","targetRef":{"kind":"Pod","name":"ne-c"}},
                  {"nodeName":"n4","targetRef":{"kind":"Node","name":"n4"}}]}"#,
        );
        let pods = pods_of_slices(&c, [&s]).unwrap();
        let names: Vec<(&str, &str)> = pods
            .iter()
            .map(|p| (p.node.as_str(), p.pod.as_str()))
            .collect();
        assert_eq!(names, [("n1", "ne-a"), ("n2", "ne-b")]);
        assert!(pods.iter().all(|p| p.port == 9100));
    }

    #[test]
    fn a_wrong_port_name_says_which_ports_there_are() {
        let c = cluster();
        let s = slice(
            r#"{"metadata":{"name":"ne-1"},"ports":[{"name":"http","port":8080}],
                "endpoints":[{"nodeName":"n1","targetRef":{"kind":"Pod","name":"ne-a"}}]}"#,
        );
        let e = pods_of_slices(&c, [&s]).unwrap_err();
        assert!(e.to_string().contains("http=8080"), "{e}");
    }
}
