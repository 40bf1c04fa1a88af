//! Finding each cluster's nodes and ready node-exporter pods through its API
//! server.

mod client;
mod error;
mod names;
mod objects;
mod redact;
mod tls;

use std::time::Duration;

pub use error::DiscoveryError;

use crate::config::cluster::{Cluster, PortRef};
use crate::targets::{ClusterTargets, ExporterPod};
use client::{KubeClient, Permission};
use objects::{Endpoints, List, Node};

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

/// Discovers one cluster: the nodes (for kubelet and cAdvisor) and the ready
/// node-exporter pods behind the configured service. Fails alone, within
/// its limits; the caller keeps the last targets.
pub async fn discover(cluster: &Cluster, limits: Limits) -> Result<ClusterTargets, DiscoveryError> {
    let url = cluster.api_server.url.to_string();
    tokio::time::timeout(limits.deadline, discover_within(cluster, limits))
        .await
        .unwrap_or_else(|_| {
            Err(DiscoveryError::TooMuch {
                what: "discovery took too long",
                url,
                limit: format!("more than {:?} in all", limits.deadline),
            })
        })
}

async fn discover_within(
    cluster: &Cluster,
    limits: Limits,
) -> Result<ClusterTargets, DiscoveryError> {
    let client = KubeClient::new(cluster, limits.request_timeout)?;
    let mut targets = ClusterTargets::default();
    if cluster.kubelet.enabled || cluster.cadvisor.component.enabled {
        let nodes = list_nodes(&client).await?;
        for node in nodes {
            if names::is_subdomain(&node) {
                targets.nodes.push(node);
            } else {
                targets.skipped.push(format!("node {node:?}"));
            }
        }
    }
    if cluster.node_exporter.component.enabled {
        for pod in node_exporter_pods(&client, cluster).await? {
            if names::is_label(&pod.namespace) && names::is_subdomain(&pod.pod) {
                targets.node_exporters.push(pod);
            } else {
                targets
                    .skipped
                    .push(format!("pod {:?}/{:?}", pod.namespace, pod.pod));
            }
        }
    }
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

async fn list_nodes(client: &KubeClient) -> Result<Vec<String>, DiscoveryError> {
    let mut names = Vec::new();
    let mut continue_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut path = format!("/api/v1/nodes?limit={PAGE}");
        if let Some(token) = &continue_token {
            path.push_str("&continue=");
            path.push_str(
                &url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>(),
            );
        }
        let page: List<Node> = client
            .get(
                &path,
                Permission {
                    verb: "list",
                    resource: "nodes",
                },
            )
            .await?
            .ok_or_else(|| DiscoveryError::NotFound {
                what: "the nodes API".into(),
                url: path.clone(),
            })?;
        names.extend(page.items.into_iter().map(|n| n.metadata.name));
        match page.metadata.continue_token.filter(|t| !t.is_empty()) {
            Some(token) => continue_token = Some(token),
            None => {
                names.sort();
                names.dedup();
                return Ok(names);
            }
        }
    }
    Err(DiscoveryError::TooMuch {
        what: "endless pagination of nodes",
        url: "/api/v1/nodes".into(),
        limit: format!("still a `continue` token after {MAX_PAGES} pages of {PAGE}"),
    })
}

async fn node_exporter_pods(
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
            let (Some(node), Some(target)) = (&address.node_name, &address.target_ref) else {
                continue;
            };
            if target.kind.as_deref().is_some_and(|k| k != "Pod") {
                continue;
            }
            pods.push(ExporterPod {
                node: node.clone(),
                namespace: target
                    .namespace
                    .clone()
                    .unwrap_or_else(|| ne.namespace.clone()),
                pod: target.name.clone(),
                port: port.port,
            });
        }
    }
    if pods.is_empty() && !available.is_empty() {
        return Err(DiscoveryError::NoSuchPort {
            namespace: ne.namespace.clone(),
            service: ne.service.clone(),
            port: match &ne.port {
                PortRef::Number(n) => n.to_string(),
                PortRef::Name(n) => n.clone(),
            },
            available: available.join(", "),
        });
    }
    pods.sort();
    pods.dedup();
    Ok(pods)
}
