//! The job of one `[exporter.<job>]`: its targets through the pod proxy
//! (per endpoint) or the service proxy (per service), found by promfed
//! (file_sd) or, in `kubernetes_sd` mode, by Prometheus and rewritten to
//! the same proxy paths.

use crate::config::cluster::{Cluster, PortRef};
use crate::config::exporter::{Exporter, Per, Selection};
use crate::config::settings::{DiscoveryMode, Settings};
use crate::targets;

use super::jobs::{cluster_labels, file_sd, proxied, sd_config};
use super::scrape_config::{KubernetesSdConfig, Namespaces, Relabel, ScrapeConfig, regex_escape};

pub fn job(cluster: &Cluster, e: &Exporter, settings: &Settings) -> ScrapeConfig {
    let limits = super::limits::exporter(e, settings);
    let mut job = proxied(
        format!("promfed/{}/{}", cluster.name, e.job),
        cluster,
        &limits,
        settings,
    );
    job.honor_labels = e.honor_labels.then_some(true);
    job.params = e.params.clone();
    match settings.discovery {
        DiscoveryMode::FileSd => {
            file_sd(&mut job, cluster, settings, &targets::exporter_file_name(e));
        }
        DiscoveryMode::KubernetesSd => {
            let (sd, relabels) = kubernetes_sd(cluster, e);
            job.kubernetes_sd_configs.push(sd);
            job.relabel_configs.extend(relabels);
        }
    }
    job.relabel_configs.push(Relabel::set("job", &e.job));
    cluster_labels(&mut job, cluster);
    if e.honor_labels {
        // `honor_labels` keeps the exporter's labels; `cluster` stays ours.
        job.metric_relabel_configs
            .push(Relabel::set("cluster", cluster.name.as_str()));
    }
    if let Some(keep) = &e.keep_metrics {
        job.metric_relabel_configs
            .push(Relabel::keep(&["__name__"], keep));
    }
    if let Some(drop) = &e.drop_metrics {
        job.metric_relabel_configs.push(Relabel::drop_names(drop));
    }
    job
}

/// Prometheus's `endpointslice` role (per endpoint) or `service` role (per
/// service) in the exporter's namespaces, kept to its Service and port.
fn kubernetes_sd(cluster: &Cluster, e: &Exporter) -> (KubernetesSdConfig, Vec<Relabel>) {
    let namespaces = Some(Namespaces {
        names: e.namespaces.clone(),
    });
    let prefix = &cluster.api_server.path_prefix;
    let scheme = if e.https { "https:" } else { "" };
    let path = &e.path;
    let mut rules = Vec::new();
    match e.per {
        Per::Endpoint => {
            let meta = "__meta_kubernetes_endpointslice_";
            rules.extend(selection(e, &format!("{meta}label_")));
            rules.push(Relabel::keep(
                &[&format!("{meta}endpoint_conditions_ready")],
                "true",
            ));
            rules.push(Relabel::keep(
                &[&format!("{meta}address_target_kind")],
                "Pod",
            ));
            rules.push(port_filter(
                &e.ports,
                &format!("{meta}port_name"),
                "__address__",
                ".+:",
            ));
            let target = format!("{meta}address_target_name");
            rules.extend([
                Relabel::copy(
                    &["__meta_kubernetes_namespace", &target, "__address__"],
                    "(.+);(.+);.+:([0-9]+)",
                    "__metrics_path__",
                    &format!("{prefix}/api/v1/namespaces/$1/pods/{scheme}$2:$3/proxy{path}"),
                ),
                // The node, else the pod.
                Relabel::copy(&[&target], "(.+)", "instance", "$1"),
                Relabel::copy(
                    &[&format!("{meta}endpoint_node_name")],
                    "(.+)",
                    "instance",
                    "$1",
                ),
                Relabel::copy(&["__meta_kubernetes_namespace"], "(.+)", "namespace", "$1"),
                Relabel::copy(&[&target], "(.+)", "pod", "$1"),
            ]);
            (
                sd_config(cluster, "endpointslice", namespaces),
                finish(rules, cluster),
            )
        }
        Per::Service => {
            let meta = "__meta_kubernetes_service_";
            rules.extend(selection(e, &format!("{meta}label_")));
            rules.push(port_filter(
                &e.ports,
                &format!("{meta}port_name"),
                &format!("{meta}port_number"),
                "",
            ));
            // The port as the proxy path names it: its name, else its number.
            rules.push(Relabel::copy(
                &[&format!("{meta}port_number")],
                "(.+)",
                "__tmp_port",
                "$1",
            ));
            rules.push(Relabel::copy(
                &[&format!("{meta}port_name")],
                "(.+)",
                "__tmp_port",
                "$1",
            ));
            let at = [
                "__meta_kubernetes_namespace",
                &format!("{meta}name"),
                "__tmp_port",
            ];
            rules.push(Relabel::copy(
                &at,
                "(.+);(.+);(.+)",
                "__metrics_path__",
                &format!("{prefix}/api/v1/namespaces/$1/services/{scheme}$2:$3/proxy{path}"),
            ));
            rules.push(Relabel::copy(&at, "(.+);(.+);(.+)", "instance", "$1/$2:$3"));
            (
                sd_config(cluster, "service", namespaces),
                finish(rules, cluster),
            )
        }
    }
}

fn finish(mut rules: Vec<Relabel>, cluster: &Cluster) -> Vec<Relabel> {
    rules.push(Relabel::set("__address__", &cluster.api_server.address));
    rules
}

/// Keeps the exporter's Service: by name, or by each label of the
/// selector (`label_` meta labels, names sanitised as Prometheus does).
fn selection(e: &Exporter, label: &str) -> Vec<Relabel> {
    let pairs: Vec<(String, &str)> = match &e.selection {
        Selection::Service(name) => {
            if label.contains("endpointslice") {
                vec![("kubernetes.io/service-name".into(), name.as_str())]
            } else {
                return vec![Relabel::keep(
                    &["__meta_kubernetes_service_name"],
                    &regex_escape(name),
                )];
            }
        }
        Selection::Selector(pairs) => pairs.iter().map(|(k, v)| (k.clone(), v.as_str())).collect(),
    };
    pairs
        .into_iter()
        .map(|(k, v)| Relabel::keep(&[&format!("{label}{}", sanitise(&k))], &regex_escape(v)))
        .collect()
}

/// Any of `ports`: by name (`name_label`) or by number (`number_label`,
/// after `number_prefix`).
fn port_filter(
    ports: &[PortRef],
    name_label: &str,
    number_label: &str,
    number_prefix: &str,
) -> Relabel {
    let names: Vec<String> = ports
        .iter()
        .filter_map(|p| match p {
            PortRef::Name(n) => Some(regex_escape(n)),
            PortRef::Number(_) => None,
        })
        .collect();
    let numbers: Vec<String> = ports
        .iter()
        .filter_map(|p| match p {
            PortRef::Number(n) => Some(n.to_string()),
            PortRef::Name(_) => None,
        })
        .collect();
    let mut alternatives = Vec::new();
    if !names.is_empty() {
        alternatives.push(format!("(?:{});.*", names.join("|")));
    }
    if !numbers.is_empty() {
        alternatives.push(format!(".*;{number_prefix}(?:{})", numbers.join("|")));
    }
    Relabel::keep(&[name_label, number_label], &alternatives.join("|"))
}

/// A Kubernetes label key as Prometheus names its meta label.
fn sanitise(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
