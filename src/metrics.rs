//! promfed's own metrics, in Prometheus text format, written atomically to a
//! file for node-exporter's textfile collector (Debian's folder by default).
//! The label `scrape_job` stands for a job, because the collector's own
//! target label `job` would shadow it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use crate::discovery::health::Health;

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Transactions by the result of the Prometheus config.
    pub applies: BTreeMap<String, u64>,
    /// Reloads by (program, result).
    pub reloads: BTreeMap<(String, String), u64>,
    pub last_apply_success: Option<i64>,
    /// The folders are polled because they cannot be watched.
    pub watch_degraded: bool,
    /// Prometheus's inotify budget, once known: (needed, limit, exhausted).
    pub prometheus_watches: Option<(usize, Option<u64>, bool)>,
    pub clusters: BTreeMap<String, ClusterMetrics>,
    /// `[shard]`: (members, clusters, clusters scraped here).
    pub shard: Option<(usize, usize, usize)>,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    pub config_valid: bool,
    pub discovery_healthy: bool,
    pub errors: BTreeMap<String, u64>,
    /// Targets per job slug.
    pub targets: BTreeMap<String, usize>,
    pub token_expiry: Option<i64>,
    pub certificate_expiry: Option<i64>,
    /// The discovery task's lists and watches, read as the file is written.
    pub health: Option<Arc<Health>>,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "promfed_applies_total",
            "counter",
            "Transactions run, by the result for the Prometheus configuration.",
        );
        for (result, n) in &self.applies {
            let _ = writeln!(out, "promfed_applies_total{{result=\"{result}\"}} {n}");
        }
        family(
            &mut out,
            "promfed_reloads_total",
            "counter",
            "Reloads of Prometheus and Alertmanager, by result.",
        );
        for ((program, result), n) in &self.reloads {
            let _ = writeln!(
                out,
                "promfed_reloads_total{{program=\"{program}\",result=\"{result}\"}} {n}"
            );
        }
        family(
            &mut out,
            "promfed_watch_degraded",
            "gauge",
            "1 when the folders are polled because they cannot be watched (inotify).",
        );
        let _ = writeln!(
            out,
            "promfed_watch_degraded {}",
            u8::from(self.watch_degraded)
        );
        if let Some((needed, limit, exhausted)) = self.prometheus_watches {
            family(
                &mut out,
                "promfed_prometheus_file_sd_watches",
                "gauge",
                "inotify instances Prometheus needs for promfed's jobs (one per cluster).",
            );
            let _ = writeln!(out, "promfed_prometheus_file_sd_watches {needed}");
            if let Some(limit) = limit {
                family(
                    &mut out,
                    "promfed_inotify_max_user_instances",
                    "gauge",
                    "fs.inotify.max_user_instances: the instances one user may have.",
                );
                let _ = writeln!(out, "promfed_inotify_max_user_instances {limit}");
            }
            family(
                &mut out,
                "promfed_prometheus_watch_budget_exhausted",
                "gauge",
                "1 when Prometheus could not watch some targets files of the configuration in force.",
            );
            let _ = writeln!(
                out,
                "promfed_prometheus_watch_budget_exhausted {}",
                u8::from(exhausted)
            );
        }
        if let Some((members, clusters, here)) = self.shard {
            family(
                &mut out,
                "promfed_shard_members",
                "gauge",
                "Hosts sharing the clusters ([shard] members).",
            );
            let _ = writeln!(out, "promfed_shard_members {members}");
            family(
                &mut out,
                "promfed_shard_clusters",
                "gauge",
                "Clusters with a valid file (scope=\"all\"), and those this host scrapes (scope=\"here\").",
            );
            let _ = writeln!(out, "promfed_shard_clusters{{scope=\"all\"}} {clusters}");
            let _ = writeln!(out, "promfed_shard_clusters{{scope=\"here\"}} {here}");
        }
        family(
            &mut out,
            "promfed_last_apply_success_timestamp_seconds",
            "gauge",
            "When the rendered configuration was last verified in force.",
        );
        if let Some(t) = self.last_apply_success {
            let _ = writeln!(out, "promfed_last_apply_success_timestamp_seconds {t}");
        }
        family(
            &mut out,
            "promfed_cluster_config_valid",
            "gauge",
            "Whether the cluster's file is valid (0: its last good definition is kept, or none).",
        );
        for (c, m) in &self.clusters {
            let _ = writeln!(
                out,
                "promfed_cluster_config_valid{{cluster=\"{c}\"}} {}",
                u8::from(m.config_valid)
            );
        }
        family(
            &mut out,
            "promfed_cluster_discovery_healthy",
            "gauge",
            "Whether the cluster's last discovery succeeded.",
        );
        for (c, m) in &self.clusters {
            let _ = writeln!(
                out,
                "promfed_cluster_discovery_healthy{{cluster=\"{c}\"}} {}",
                u8::from(m.discovery_healthy)
            );
        }
        family(
            &mut out,
            "promfed_cluster_discovery_errors_total",
            "counter",
            "Failed discoveries, by reason.",
        );
        for (c, m) in &self.clusters {
            for (reason, n) in &m.errors {
                let _ = writeln!(
                    out,
                    "promfed_cluster_discovery_errors_total{{cluster=\"{c}\",reason=\"{reason}\"}} {n}"
                );
            }
        }
        family(
            &mut out,
            "promfed_cluster_targets",
            "gauge",
            "Targets promfed discovered, per cluster and job.",
        );
        for (c, m) in &self.clusters {
            for (job, n) in &m.targets {
                let _ = writeln!(
                    out,
                    "promfed_cluster_targets{{cluster=\"{c}\",scrape_job=\"{job}\"}} {n}"
                );
            }
        }
        family(
            &mut out,
            "promfed_cluster_token_expiry_timestamp_seconds",
            "gauge",
            "When the cluster's token expires (JWT exp claim).",
        );
        for (c, m) in &self.clusters {
            if let Some(t) = m.token_expiry {
                let _ = writeln!(
                    out,
                    "promfed_cluster_token_expiry_timestamp_seconds{{cluster=\"{c}\"}} {t}"
                );
            }
        }
        family(
            &mut out,
            "promfed_cluster_last_list_success_timestamp_seconds",
            "gauge",
            "When the cluster was last listed whole (start-up, resync, relist).",
        );
        let healths = || {
            self.clusters
                .iter()
                .filter_map(|(c, m)| Some((c, m.health.as_deref()?)))
        };
        for (c, health) in healths() {
            if let Some(t) = health.last_list() {
                let _ = writeln!(
                    out,
                    "promfed_cluster_last_list_success_timestamp_seconds{{cluster=\"{c}\"}} {t}"
                );
            }
        }
        family(
            &mut out,
            "promfed_cluster_watch_last_event_timestamp_seconds",
            "gauge",
            "When each watch last heard an event or a bookmark (its first opening, before any).",
        );
        for (c, health) in healths() {
            for (resource, t) in health.last_events() {
                let _ = writeln!(
                    out,
                    "promfed_cluster_watch_last_event_timestamp_seconds{{cluster=\"{c}\",resource=\"{resource}\"}} {t}"
                );
            }
        }
        family(
            &mut out,
            "promfed_cluster_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the cluster's client certificate expires (its notAfter).",
        );
        for (c, m) in &self.clusters {
            if let Some(t) = m.certificate_expiry {
                let _ = writeln!(
                    out,
                    "promfed_cluster_certificate_expiry_timestamp_seconds{{cluster=\"{c}\"}} {t}"
                );
            }
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_exposition_text() {
        let mut m = Metrics::default();
        m.applies.insert("applied".into(), 2);
        m.reloads.insert(("prometheus".into(), "success".into()), 2);
        let mut c = ClusterMetrics {
            config_valid: true,
            discovery_healthy: false,
            ..Default::default()
        };
        c.errors.insert("unreachable".into(), 3);
        c.targets.insert("kubelet".into(), 5);
        c.token_expiry = Some(1893456000);
        c.certificate_expiry = Some(4948911680);
        m.clusters.insert("stage".into(), c);
        let text = m.render();
        for line in [
            "promfed_applies_total{result=\"applied\"} 2",
            "promfed_reloads_total{program=\"prometheus\",result=\"success\"} 2",
            "promfed_cluster_discovery_healthy{cluster=\"stage\"} 0",
            "promfed_cluster_discovery_errors_total{cluster=\"stage\",reason=\"unreachable\"} 3",
            "promfed_cluster_targets{cluster=\"stage\",scrape_job=\"kubelet\"} 5",
            "promfed_cluster_token_expiry_timestamp_seconds{cluster=\"stage\"} 1893456000",
            "promfed_cluster_certificate_expiry_timestamp_seconds{cluster=\"stage\"} 4948911680",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
