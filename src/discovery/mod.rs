//! Finding each cluster's nodes and ready node-exporter pods through its API
//! server.

mod client;
mod error;
mod objects;
mod tls;

use std::time::Duration;

pub use error::DiscoveryError;

use crate::config::cluster::{Cluster, PortRef};
use crate::targets::{ClusterTargets, ExporterPod};
use client::{KubeClient, Permission};
use objects::{Endpoints, List, Node};

/// Page size for lists: the API server's default chunking.
const PAGE: usize = 500;

/// Discovers one cluster: the nodes (for kubelet and cAdvisor) and the ready
/// node-exporter pods behind the configured service.
pub async fn discover(
    cluster: &Cluster,
    timeout: Duration,
) -> Result<ClusterTargets, DiscoveryError> {
    let client = KubeClient::new(cluster, timeout)?;
    let mut targets = ClusterTargets::default();
    if cluster.kubelet.enabled || cluster.cadvisor.component.enabled {
        targets.nodes = list_nodes(&client).await?;
    }
    if cluster.node_exporter.component.enabled {
        targets.node_exporters = node_exporter_pods(&client, cluster).await?;
    }
    Ok(targets)
}

async fn list_nodes(client: &KubeClient) -> Result<Vec<String>, DiscoveryError> {
    let mut names = Vec::new();
    let mut continue_token: Option<String> = None;
    loop {
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
            None => break,
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
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
