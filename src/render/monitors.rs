//! The job of one monitor endpoint (`[monitors]`): its targets are pods
//! found by promfed (file_sd, `targets::monitor_file_sd_json`), scraped
//! through the pod proxy; the monitor's own relabelings run between
//! promfed's rules, which keep every scrape on the API server's proxy.

use crate::config::cluster::Cluster;
use crate::config::monitors::MonitorJob;
use crate::config::relabel;
use crate::config::settings::Settings;

use super::jobs::{cluster_labels, file_sd, proxied};
use super::scrape_config::{Relabel, ScrapeConfig, regex_escape};

pub fn job(cluster: &Cluster, m: &MonitorJob, settings: &Settings) -> ScrapeConfig {
    let limits = super::limits::monitor(m, settings);
    let mut job = proxied(
        format!("promfed/{}/{}", cluster.name, m.operator_name()),
        cluster,
        &limits,
        settings,
    );
    job.honor_labels = m.honor_labels.then_some(true);
    job.params = m.params.clone();
    file_sd(&mut job, cluster, settings, &m.file_name());
    job.relabel_configs.extend(m.relabelings.iter().map(rule));
    cluster_labels(&mut job, cluster);
    // Whatever the monitor's rules did: the API server, and a pod proxy
    // path of this cluster.
    job.relabel_configs
        .push(Relabel::set("__address__", &cluster.api_server.address));
    job.relabel_configs.push(Relabel::keep(
        &["__metrics_path__"],
        &format!(
            "{}/api/v1/namespaces/[^/]+/pods/[^/]+/proxy/.*",
            regex_escape(&cluster.api_server.path_prefix)
        ),
    ));
    job.metric_relabel_configs
        .extend(m.metric_relabelings.iter().map(rule));
    // `honor_labels` or a metric rule may touch it; `cluster` stays ours.
    job.metric_relabel_configs
        .push(Relabel::set("cluster", cluster.name.as_str()));
    job
}

/// A checked rule, as Prometheus reads it.
fn rule(r: &relabel::Relabel) -> Relabel {
    Relabel {
        source_labels: r.source_labels.clone(),
        separator: r.separator.clone(),
        regex: r.regex.clone(),
        modulus: r.modulus,
        target_label: r.target_label.clone(),
        replacement: r.replacement.clone(),
        action: Some(r.action),
    }
}
