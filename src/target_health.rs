//! `promfed status`'s view of Prometheus's own targets: per promfed job and
//! per cluster (their `cluster` label), how many are up, and what a down
//! one's error means. status.json holds what the daemon did; this is asked
//! of Prometheus (`/api/v1/targets`) once per `status` run, and it says so
//! when Prometheus does not answer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::exporter::BUILT_IN;
use crate::programs::http_api::HttpApi;

/// How long `status` waits for Prometheus.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Deserialize)]
struct Answer {
    data: Data,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "activeTargets", default)]
    active: Vec<Target>,
}

#[derive(Debug, Deserialize)]
pub struct Target {
    #[serde(rename = "scrapePool")]
    pool: String,
    health: String,
    #[serde(rename = "lastError", default)]
    last_error: String,
    #[serde(default)]
    labels: Labels,
}

#[derive(Debug, Default, Deserialize)]
struct Labels {
    /// Set on every target of promfed's jobs.
    cluster: Option<String>,
}

/// Prometheus's active targets, asked once.
pub fn ask(
    runtime: &tokio::runtime::Runtime,
    prometheus: &url::Url,
) -> Result<Vec<Target>, String> {
    let api = HttpApi::new(prometheus, TIMEOUT);
    let answer = runtime.block_on(api.get_text("/api/v1/targets?state=active"));
    answer.and_then(|text| {
        serde_json::from_str::<Answer>(&text)
            .map(|a| a.data.active)
            .map_err(|_| "not the answer of a Prometheus".to_string())
    })
}

/// The TARGETS section, or why there is none.
pub fn section(prometheus: &str, targets: &Result<Vec<Target>, String>) -> String {
    match targets {
        Ok(targets) => summary(prometheus, targets),
        Err(e) => format!("\ntargets: Prometheus does not tell them ({e})\n"),
    }
}

/// One cluster's targets in Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterUp {
    pub up: usize,
    pub total: usize,
    /// The commonest error of the down ones, in short.
    pub top_error: Option<String>,
}

/// Each cluster's targets of promfed's jobs, by their `cluster` label.
pub fn by_cluster(targets: &[Target]) -> BTreeMap<String, ClusterUp> {
    let mut errors: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut clusters: BTreeMap<String, ClusterUp> = BTreeMap::new();
    for t in targets.iter().filter(|t| t.pool.starts_with("promfed/")) {
        let Some(cluster) = t.labels.cluster.as_deref() else {
            continue;
        };
        let entry = clusters.entry(cluster.to_string()).or_default();
        entry.total += 1;
        if t.health == "up" {
            entry.up += 1;
        } else {
            let error = short_error(&t.last_error, is_proxied(&t.pool));
            *errors.entry(cluster).or_default().entry(error).or_default() += 1;
        }
    }
    for (cluster, counts) in errors {
        // The commonest; of equals, the first by name, so that it is stable.
        let top = counts
            .into_iter()
            .max_by(|(a, m), (b, n)| m.cmp(n).then(b.cmp(a)))
            .map(|(e, _)| e);
        if let Some(entry) = clusters.get_mut(cluster) {
            entry.top_error = top;
        }
    }
    clusters
}

/// Whether a job's targets are reached through a pod's or a service's
/// proxy, which strips the Authorization header (`proxy_auth`).
fn is_proxied(pool: &str) -> bool {
    let slug = pool.rsplit('/').next().unwrap_or_default();
    !matches!(slug, "kubelet" | "cadvisor" | "apiserver")
}

/// An error as a status line says it: "401 Unauthorized through the
/// proxy" for Prometheus's "server returned HTTP status 401 Unauthorized";
/// other errors cut to 120 characters.
fn short_error(error: &str, proxied: bool) -> String {
    const HTTP: &str = "server returned HTTP status ";
    match error.find(HTTP).map(|at| error[at + HTTP.len()..].trim()) {
        Some(status) if proxied => format!("{status} through the proxy"),
        Some(status) => format!("HTTP {status}"),
        None if error.is_empty() => "no error given".into(),
        None => error.chars().take(120).collect(),
    }
}

/// One line per promfed job: up of all, and a down target's error with
/// what it means.
pub fn summary(prometheus: &str, targets: &[Target]) -> String {
    let mut pools: BTreeMap<&str, (usize, usize, Option<&str>)> = BTreeMap::new();
    for t in targets.iter().filter(|t| t.pool.starts_with("promfed/")) {
        let entry = pools.entry(&t.pool).or_default();
        entry.1 += 1;
        if t.health == "up" {
            entry.0 += 1;
        } else if entry.2.is_none() && !t.last_error.is_empty() {
            entry.2 = Some(&t.last_error);
        }
    }
    let mut out = format!("\nTARGETS (from {prometheus}, now)\n");
    if pools.is_empty() {
        out.push_str("  none of promfed's jobs has targets in Prometheus\n");
    }
    let width = pools.keys().map(|p| p.len()).max().unwrap_or(0);
    for (pool, (up, all, error)) in pools {
        out.push_str(&format!("  {pool:width$}  {up}/{all} up"));
        if let Some(e) = error {
            out.push_str(&format!(": {}", e.chars().take(200).collect::<String>()));
            let slug = pool.rsplit('/').next().unwrap_or_default();
            if let Some(why) = crate::proxy_auth::explain_last_error(e).filter(|_| is_proxied(pool))
            {
                let whose = if BUILT_IN.contains(&slug) {
                    "job"
                } else {
                    "exporter"
                };
                out.push_str(&format!("\n    {whose} {slug}: {why}"));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pool: &str, health: &str, error: &str) -> Target {
        let cluster = pool.split('/').nth(1).map(str::to_string);
        Target {
            pool: pool.into(),
            health: health.into(),
            last_error: error.into(),
            labels: Labels { cluster },
        }
    }

    #[test]
    fn each_cluster_counts_its_targets_and_names_its_commonest_error() {
        const UNAUTHORIZED: &str = "server returned HTTP status 401 Unauthorized";
        let mut targets = vec![
            target("promfed/prod/node-exporter", "down", UNAUTHORIZED),
            target("promfed/prod/node-exporter", "down", UNAUTHORIZED),
            target("promfed/prod/kubelet", "down", "context deadline exceeded"),
            target("promfed/prod/kubelet", "up", ""),
            target("promfed/stage/kubelet", "up", ""),
            target("promfed/stage/kubelet", "down", UNAUTHORIZED),
            target("own-job/prod/x", "down", "x"),
        ];
        targets.push(Target {
            labels: Labels::default(),
            ..target("promfed/prod/kubelet", "down", "no cluster label")
        });
        let clusters = by_cluster(&targets);
        assert_eq!(
            clusters["prod"],
            ClusterUp {
                up: 1,
                total: 4,
                top_error: Some("401 Unauthorized through the proxy".into())
            }
        );
        assert_eq!(
            clusters["stage"].top_error.as_deref(),
            Some("HTTP 401 Unauthorized"),
            "the kubelet is reached through the node proxy, which keeps the token"
        );
        assert_eq!(clusters.len(), 2);
    }

    #[test]
    fn each_job_says_how_many_are_up_and_what_a_refusal_means() {
        let text = summary(
            "http://p:9090/",
            &[
                target("promfed/prod/kubelet", "up", ""),
                target(
                    "promfed/prod/kubelet",
                    "down",
                    "server returned HTTP status 401 Unauthorized",
                ),
                target(
                    "promfed/prod/kube-state-metrics",
                    "down",
                    "server returned HTTP status 401 Unauthorized",
                ),
                target("own-job", "down", "x"),
            ],
        );
        assert!(text.contains("promfed/prod/kubelet             1/2 up: server returned HTTP status 401 Unauthorized\n"), "{text}");
        assert!(text.contains("promfed/prod/kube-state-metrics  0/1 up: server returned HTTP status 401 Unauthorized\n    exporter kube-state-metrics: 401 through the proxy: the API server strips the Authorization header"), "{text}");
        assert!(
            !text.contains("kubelet: 401 through"),
            "the kubelet is reached by the node proxy: {text}"
        );
        assert!(!text.contains("own-job"), "{text}");
    }
}
