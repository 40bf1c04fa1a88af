//! On this host: promfed and the user Prometheus runs as can read every
//! file the cluster names, and Prometheus would take what they hold
//! (promtool checks neither; Prometheus would drop the cluster's jobs).

use crate::access::Identity;
use crate::config::cluster::Cluster;

use super::Checks;

/// Whether promfed itself can read them all (the later checks need them).
pub fn check(cluster: &Cluster, prometheus: &Identity, checks: &mut Checks) -> bool {
    let mut all_readable = true;
    for (key, path) in cluster.credential_files() {
        let shown = path.display();
        if let Err(e) = crate::fsutil::open_regular(path) {
            all_readable = false;
            checks.fail(
                "files",
                format!("{key} {shown} cannot be read by promfed: {e}"),
                advice(cluster, key),
            );
            continue;
        }
        match prometheus.can_read(path) {
            Ok(()) => checks.pass(
                "files",
                format!("{key} {shown} is readable by `{}`", prometheus.name),
            ),
            Err(why) => checks.fail(
                "files",
                format!("{key} {shown} {why}"),
                format!(
                    "chgrp {0} {shown} && chmod 0640 {shown}, and let group {0} search its folder (chgrp {0} DIR && chmod 0750 DIR)",
                    prometheus.name
                ),
            ),
        }
    }
    for (key, why) in crate::config::tls_files::refused(&cluster.credential_files()) {
        checks.fail(
            "files",
            format!("{key} {why}"),
            format!(
                "put the PEM file the cluster's kubeconfig or Secret holds there (`promfed add-cluster` writes it), or correct {key} in {}",
                cluster.source.display()
            ),
        );
    }
    all_readable
}

/// What to do about a credential file promfed cannot read. With `[exec]`
/// or `[token_request]`, the token (or certificate) files are promfed's
/// own, under the state folder: nobody is to put them there by hand.
fn advice(cluster: &Cluster, key: &str) -> String {
    use crate::config::credential_source::Source;
    let from = match &cluster.auth.source {
        Some(Source::Exec(_)) => Some("runs the [exec] plugin"),
        Some(Source::TokenRequest(_)) => Some("makes the TokenRequest"),
        None => None,
    };
    match from {
        Some(from) if matches!(key, "token_file" | "cert_file" | "key_file") => format!(
            "start the daemon or run `promfed apply`: it {from} and writes this file; `promfed check` accepts the cluster before then"
        ),
        _ => format!(
            "put the file there (`promfed add-cluster` writes it from a kubeconfig), or correct {key} in {}",
            cluster.source.display()
        ),
    }
}
