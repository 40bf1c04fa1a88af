//! The health of each remote_write queue, from Prometheus's own metrics:
//! samples that failed, samples waiting, and how far the newest sample sent
//! lags the newest sample taken.

use std::collections::BTreeMap;

use super::Checks;
use crate::config::settings::Settings;
use crate::programs::http_api::HttpApi;

/// Lag past which a queue is failing: the receiver is down or too slow.
const LAG_FAIL_SECONDS: f64 = 120.0;
/// Lag past which it is warned about.
const LAG_WARN_SECONDS: f64 = 30.0;

#[derive(Default, Debug)]
struct Queue {
    failed: f64,
    pending: f64,
    sent: Option<f64>,
}

pub async fn check(settings: &Settings, checks: &mut Checks) {
    let api = HttpApi::new(&settings.prometheus.url, super::STEP_TIMEOUT);
    let text = match api.get_text("/metrics").await {
        Ok(text) => text,
        Err(e) => {
            checks.warn(
                "remote_write",
                format!("cannot read Prometheus's metrics: {e}"),
                "nothing to do if Prometheus answers otherwise",
            );
            return;
        }
    };
    let (newest, queues) = parse(&text);
    if queues.is_empty() {
        if settings.shard.is_some() {
            checks.warn(
                "remote_write",
                "no remote_write queue: with [shard], each host holds only its share of the samples",
                "send them to the shared store: a remote_write in the base file (README, Beyond one host)",
            );
        }
        return;
    }
    for (url, q) in queues {
        let lag = match (newest, q.sent) {
            (Some(n), Some(s)) if s > 0.0 => Some((n - s).max(0.0)),
            _ => None,
        };
        let detail = format!(
            "{url}: {} samples failed, {} pending, {}",
            q.failed,
            q.pending,
            lag.map_or("nothing sent yet".to_string(), |l| format!(
                "the newest sample sent is {l:.0} s behind the newest taken"
            ))
        );
        let fix = format!(
            "is the receiver at {url} up and accepting? Prometheus's log says why (\"remote_write\"); the queue's metrics: prometheus_remote_storage_*"
        );
        match lag {
            Some(l) if l > LAG_FAIL_SECONDS => checks.fail("remote_write", detail, fix),
            None if newest.is_some() => checks.fail("remote_write", detail, fix),
            Some(l) if l > LAG_WARN_SECONDS || q.failed > 0.0 => {
                checks.warn("remote_write", detail, fix)
            }
            _ => checks.pass("remote_write", detail),
        }
    }
}

/// The newest sample taken, and each queue by its URL.
fn parse(text: &str) -> (Option<f64>, BTreeMap<String, Queue>) {
    let mut newest = None;
    let mut queues: BTreeMap<String, Queue> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        if name == "prometheus_remote_storage_highest_timestamp_in_seconds" {
            // 0 until the first sample is taken.
            newest = (value > 0.0).then_some(value);
            continue;
        }
        let Some(url) = label(labels, "url") else {
            continue;
        };
        let known = [
            "prometheus_remote_storage_samples_failed_total",
            "prometheus_remote_storage_samples_pending",
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
        ];
        if !known.contains(&name) {
            continue;
        }
        let q = queues.entry(url.to_string()).or_default();
        match name {
            "prometheus_remote_storage_samples_failed_total" => q.failed += value,
            "prometheus_remote_storage_samples_pending" => q.pending += value,
            _ => q.sent = Some(value),
        }
    }
    (newest, queues)
}

/// One label's value in `a="x",b="y"}` (values hold no quotes here: URLs
/// and queue names).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_queue_and_the_newest_sample() {
        let text = "# HELP x\nprometheus_remote_storage_highest_timestamp_in_seconds 1.7e+09\nprometheus_remote_storage_samples_failed_total{remote_name=\"a1\",url=\"http://vm:8428/api/v1/write\"} 3\nprometheus_remote_storage_samples_pending{remote_name=\"a1\",url=\"http://vm:8428/api/v1/write\"} 10\nprometheus_remote_storage_queue_highest_sent_timestamp_seconds{remote_name=\"a1\",url=\"http://vm:8428/api/v1/write\"} 1.69999994e+09\n";
        let (newest, queues) = parse(text);
        assert_eq!(newest, Some(1.7e9));
        let q = &queues["http://vm:8428/api/v1/write"];
        assert_eq!((q.failed, q.pending), (3.0, 10.0));
        assert!((newest.unwrap() - q.sent.unwrap() - 60.0).abs() < 1.0);
    }
}
