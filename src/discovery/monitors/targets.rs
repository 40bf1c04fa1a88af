//! The pure view, second half: monitor jobs + the EndpointSlices and pods
//! listed where `[monitors]` looks → each job's targets, every one a pod
//! through the pod proxy.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::monitors::{MonitorJob, MonitorKind, MonitorPort};
use crate::config::names;
use crate::discovery::decode::null_as_empty;
use crate::discovery::exporters::Slice;
use crate::discovery::objects::Kind;
use crate::targets::MonitorTarget;

/// The label the EndpointSlice controller puts on every slice of a Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// A pod, as much as a PodMonitor needs.
#[derive(Debug, Deserialize)]
pub struct Pod {
    pub metadata: PodMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub status: PodStatus,
}

#[derive(Debug, Deserialize)]
pub struct PodMeta {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub namespace: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
pub struct Container {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodStatus {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub phase: String,
}

/// Every job's targets, by file name, at most `max` each (the rest cut,
/// said in a note).
pub fn targets<'a>(
    jobs: &[MonitorJob],
    slices: impl Iterator<Item = &'a Slice> + Clone,
    pods: impl Iterator<Item = &'a Pod> + Clone,
    max: usize,
    notes: &mut Vec<String>,
) -> BTreeMap<String, Vec<MonitorTarget>> {
    let mut all = BTreeMap::new();
    for job in jobs {
        let mut found = match job.kind {
            MonitorKind::Service => slices
                .clone()
                .flat_map(|s| slice_targets(job, s))
                .collect::<Vec<_>>(),
            MonitorKind::Pod => pods.clone().filter_map(|p| pod_target(job, p)).collect(),
        };
        found.sort();
        found.dedup();
        if found.len() > max {
            notes.push(format!(
                "{}: {} targets, more than max_targets = {max}; the first {max} are kept",
                job.operator_name(),
                found.len()
            ));
            found.truncate(max);
        }
        all.insert(job.file_name(), found);
    }
    all
}

/// A ServiceMonitor's targets in one slice: its Service selected, the
/// port named, every ready pod endpoint.
fn slice_targets(job: &MonitorJob, slice: &Slice) -> Vec<MonitorTarget> {
    let labels = &slice.metadata.labels;
    let Some(service) = labels.get(SERVICE_NAME).filter(|s| names::is_label(s)) else {
        return Vec::new();
    };
    let Some(namespace) = slice
        .metadata
        .namespace
        .as_deref()
        .filter(|n| names::is_label(n))
    else {
        return Vec::new();
    };
    if !job.target_namespaces.contains(namespace) || !job.selector.matches(labels) {
        return Vec::new();
    }
    let port = slice.ports.iter().find(|p| match &job.port {
        MonitorPort::Name(n) => p.name.as_deref() == Some(n),
        MonitorPort::Number(n) => p.port == Some(*n),
    });
    let Some((number, port_name)) = port.and_then(|p| Some((p.port?, p.name.clone()))) else {
        return Vec::new();
    };
    let endpoint = port_name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| number.to_string());
    let job_value = job
        .job_label
        .as_ref()
        .and_then(|l| labels.get(l))
        .cloned()
        .unwrap_or_else(|| job.default_job(service));
    slice
        .endpoints
        .iter()
        .filter(|ep| ep.conditions.ready != Some(false))
        .filter_map(|ep| {
            let target = ep.target_ref.as_ref()?;
            if target.kind.is_some_and(|k| k != Kind::Pod) || !names::is_subdomain(&target.name) {
                return None;
            }
            let node = ep.node_name.as_deref().filter(|n| names::is_subdomain(n));
            let mut meta = meta_labels("service", labels);
            meta.insert("__meta_kubernetes_service_name".into(), service.to_string());
            meta.insert(
                "__meta_kubernetes_endpoint_port_name".into(),
                endpoint.clone(),
            );
            common_meta(&mut meta, namespace, &target.name, node);
            Some(MonitorTarget {
                namespace: namespace.to_string(),
                pod: target.name.to_string(),
                port: number,
                job: job_value.clone(),
                service: Some(service.to_string()),
                endpoint: endpoint.clone(),
                meta,
            })
        })
        .collect()
}

/// A PodMonitor's target: a Running pod it selects, on the port named.
fn pod_target(job: &MonitorJob, pod: &Pod) -> Option<MonitorTarget> {
    let m = &pod.metadata;
    if pod.status.phase != "Running"
        || !names::is_label(&m.namespace)
        || !names::is_subdomain(&m.name)
        || !job.target_namespaces.contains(&m.namespace)
        || !job.selector.matches(&m.labels)
    {
        return None;
    }
    let ports = pod.spec.containers.iter().flat_map(|c| &c.ports);
    let (port, endpoint) = match &job.port {
        MonitorPort::Name(name) => {
            let p = ports.clone().find(|p| p.name.as_deref() == Some(name))?;
            (p.container_port, name.clone())
        }
        MonitorPort::Number(n) => (*n, n.to_string()),
    };
    if port == 0 {
        return None;
    }
    let job_value = job
        .job_label
        .as_ref()
        .and_then(|l| m.labels.get(l))
        .cloned()
        .unwrap_or_else(|| job.default_job(""));
    let node = pod
        .spec
        .node_name
        .as_deref()
        .filter(|n| names::is_subdomain(n));
    let mut meta = meta_labels("pod", &m.labels);
    meta.insert(
        "__meta_kubernetes_pod_container_port_name".into(),
        endpoint.clone(),
    );
    common_meta(&mut meta, &m.namespace, &m.name, node);
    Some(MonitorTarget {
        namespace: m.namespace.clone(),
        pod: m.name.clone(),
        port,
        job: job_value,
        service: None,
        endpoint,
        meta,
    })
}

fn common_meta(meta: &mut BTreeMap<String, String>, ns: &str, pod: &str, node: Option<&str>) {
    meta.insert("__meta_kubernetes_namespace".into(), ns.to_string());
    meta.insert("__meta_kubernetes_pod_name".into(), pod.to_string());
    if let Some(node) = node {
        meta.insert("__meta_kubernetes_pod_node_name".into(), node.to_string());
    }
}

/// `__meta_kubernetes_<role>_label_<name>` for each label, its name
/// sanitised as Prometheus does; at most 64, so a label-heavy object does
/// not make every targets file huge.
fn meta_labels(role: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, v)| k.len() <= 317 && v.len() <= 1024)
        .take(64)
        .map(|(k, v)| {
            let name: String = k
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (format!("__meta_kubernetes_{role}_label_{name}"), v.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::monitors::Monitors;
    use crate::discovery::decode;
    use crate::discovery::monitors::jobs::jobs;
    use crate::discovery::monitors::objects::Monitor;

    fn monitor_jobs(json: serde_json::Value) -> Vec<MonitorJob> {
        let m: Vec<Monitor> = decode::from_value(&json).unwrap();
        let all = Monitors {
            namespaces: vec![],
            selector: vec![],
        };
        jobs(&all, &m).0
    }

    #[test]
    fn service_monitors_take_ready_pods_of_the_selected_services() {
        let jobs = monitor_jobs(serde_json::json!([
            {"metadata": {"name": "web", "namespace": "shop"},
             "spec": {"jobLabel": "team", "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]},
                      "endpoints": [{"port": "http"}, {"targetPort": 9102}]}},
        ]));
        let slices: Vec<Slice> = decode::from_value(&serde_json::json!([
            {"metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web", "team": "red", "kubernetes.io/service-name": "web"}},
             "ports": [{"name": "http", "port": 8080}, {"name": null, "port": 9102}],
             "endpoints": [{"conditions": {"ready": true}, "nodeName": "n1", "targetRef": {"promfedKind": "Pod", "name": "web-a"}},
                           {"conditions": {"ready": false}, "targetRef": {"promfedKind": "Pod", "name": "web-b"}},
                           {"targetRef": {"promfedKind": "Pod", "name": "../x"}}]},
            {"metadata": {"name": "db-1", "namespace": "shop", "labels": {"app": "db", "kubernetes.io/service-name": "db"}},
             "ports": [{"name": "http", "port": 8080}], "endpoints": [{"targetRef": {"promfedKind": "Pod", "name": "db-a"}}]},
            {"metadata": {"name": "web-2", "namespace": "elsewhere", "labels": {"app": "web", "kubernetes.io/service-name": "web"}},
             "ports": [{"name": "http", "port": 8080}], "endpoints": [{"targetRef": {"promfedKind": "Pod", "name": "web-c"}}]},
            {"metadata": {"name": "placeholder", "namespace": "shop", "labels": null}, "endpoints": null, "ports": null},
        ]))
        .unwrap();
        let mut notes = Vec::new();
        let found = targets(&jobs, slices.iter(), std::iter::empty(), 100, &mut notes);
        let http = &found["serviceMonitor_shop_web_0.json"];
        assert_eq!(http.len(), 1, "{http:?}");
        let t = &http[0];
        assert_eq!(
            (t.pod.as_str(), t.port, t.job.as_str(), t.endpoint.as_str()),
            ("web-a", 8080, "red", "http")
        );
        assert_eq!(t.meta["__meta_kubernetes_pod_node_name"], "n1");
        assert_eq!(t.meta["__meta_kubernetes_service_label_app"], "web");
        let numbered = &found["serviceMonitor_shop_web_1.json"];
        assert_eq!(
            (numbered[0].port, numbered[0].endpoint.as_str()),
            (9102, "9102")
        );
        assert!(notes.is_empty());
    }

    #[test]
    fn pod_monitors_take_running_pods_by_container_port() {
        let jobs = monitor_jobs(serde_json::json!([
            {"promfedKind": "Pod", "metadata": {"name": "agent", "namespace": "ops"},
             "spec": {"namespaceSelector": {"any": true}, "selector": {"matchLabels": {"app": "agent"}},
                      "podMetricsEndpoints": [{"port": "metrics"}]}},
        ]));
        let pods: Vec<Pod> = decode::from_value(&serde_json::json!([
            {"metadata": {"name": "agent-1", "namespace": "a", "labels": {"app": "agent"}},
             "spec": {"nodeName": "n1", "containers": [{"ports": [{"name": "metrics", "containerPort": 9400}]}]},
             "status": {"phase": "Running"}},
            {"metadata": {"name": "agent-2", "namespace": "b", "labels": {"app": "agent"}},
             "spec": {"containers": [{"ports": null}]}, "status": {"phase": "Running"}},
            {"metadata": {"name": "agent-3", "namespace": "b", "labels": {"app": "agent"}},
             "spec": {"containers": [{"ports": [{"name": "metrics", "containerPort": 9400}]}]}, "status": {"phase": "Pending"}},
        ]))
        .unwrap();
        let mut notes = Vec::new();
        let found = targets(&jobs, std::iter::empty(), pods.iter(), 100, &mut notes);
        let t = &found["podMonitor_ops_agent_0.json"];
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            (t[0].namespace.as_str(), t[0].port, t[0].job.as_str()),
            ("a", 9400, "ops/agent")
        );
    }
}
