//! `promfed status`'s view of Prometheus's own targets: per promfed job,
//! how many are up, and what a down one's error means. status.json holds
//! what the daemon did; this is asked of Prometheus (`/api/v1/targets`)
//! when `status` runs, and it says so when Prometheus does not answer.

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
}

/// The TARGETS section, or why there is none.
pub fn section(runtime: &tokio::runtime::Runtime, prometheus: &url::Url) -> String {
    let api = HttpApi::new(prometheus, TIMEOUT);
    let answer = runtime.block_on(api.get_text("/api/v1/targets?state=active"));
    let targets = answer.and_then(|text| {
        serde_json::from_str::<Answer>(&text)
            .map(|a| a.data.active)
            .map_err(|_| "not the answer of a Prometheus".to_string())
    });
    match targets {
        Ok(targets) => summary(prometheus.as_str(), &targets),
        Err(e) => format!("\ntargets: Prometheus does not tell them ({e})\n"),
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
            let proxied = !matches!(slug, "kubelet" | "cadvisor" | "apiserver");
            if let Some(why) = crate::proxy_auth::explain_last_error(e).filter(|_| proxied) {
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
        Target {
            pool: pool.into(),
            health: health.into(),
            last_error: error.into(),
        }
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
