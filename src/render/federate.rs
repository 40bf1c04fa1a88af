//! The federation job of a cluster with `[federate]`: one static target,
//! the in-cluster Prometheus's `/federate`, reached through the API
//! server's service proxy or directly.

use crate::config::cluster::Cluster;
use crate::config::federate::{Federate, Source};

use super::scrape_config::{
    Authorization, Relabel, ScrapeConfig, StaticConfig, TlsConfig, path_string, regex_escape,
};

/// Completes the job `jobs` began (name, interval, the cluster's
/// credentials, `honor_labels`).
pub fn fill(job: &mut ScrapeConfig, cluster: &Cluster, f: &Federate) {
    match &f.source {
        Source::Service { .. } => {
            job.metrics_path = f
                .service_path()
                .map(|path| format!("{}{path}", cluster.api_server.path_prefix));
            job.static_configs.push(StaticConfig {
                targets: vec![cluster.api_server.address.clone()],
            });
        }
        Source::Url {
            url,
            ca_file,
            client_cert,
            server_name,
            token_file,
        } => {
            job.scheme = if url.scheme() == "http" {
                "http"
            } else {
                "https"
            };
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(443);
            job.static_configs.push(StaticConfig {
                targets: vec![format!("{host}:{port}")],
            });
            job.metrics_path = Some(format!("{}/federate", url.path().trim_end_matches('/')));
            job.authorization = token_file.as_deref().map(|t| Authorization {
                credentials_file: path_string(t),
            });
            job.tls_config = TlsConfig {
                ca_file: ca_file.as_deref().map(path_string),
                cert_file: client_cert.as_ref().map(|c| path_string(&c.cert_file)),
                key_file: client_cert.as_ref().map(|c| path_string(&c.key_file)),
                server_name: server_name.clone(),
                insecure_skip_verify: false,
            };
        }
    }
    job.params.insert("match[]".into(), f.matchers.clone());
    // An HA pair behind one Service answers in turns: without the label
    // that tells the replicas apart, both give the same series, and a
    // sample older than the last one kept is refused, not a gap.
    if !f.replica_labels.is_empty() {
        let names: Vec<String> = f.replica_labels.iter().map(|l| regex_escape(l)).collect();
        job.metric_relabel_configs
            .push(Relabel::drop_labels(&names.join("|")));
    }
    // `honor_labels` keeps the source's labels, its `cluster` too; this
    // cluster's name wins unless the file says otherwise.
    if !f.keep_source_cluster {
        job.metric_relabel_configs
            .push(Relabel::set("cluster", cluster.name.as_str()));
    }
}
