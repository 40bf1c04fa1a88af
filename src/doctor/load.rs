//! What the sample scrapes say about the load promfed's jobs put on a
//! cluster's API server: each sample against its job's `body_size_limit`
//! and `scrape_timeout`, and the bytes per second all targets together
//! make the API server proxy. Pure: the numbers in, the verdicts out.

use std::time::Duration;

use crate::config::limits::Effective;

/// Projected proxy traffic per cluster above which doctor warns: 10 MiB/s
/// is a 100-node cluster's cAdvisor (3 MB a node) every 30 s. Proxied
/// requests are exempt from API Priority and Fairness, so nothing on the
/// server side slows them down (EKS API-server 5xx were traced to proxied
/// `/metrics/cadvisor`).
pub const WARN_BYTES_PER_SECOND: f64 = 10.0 * 1024.0 * 1024.0;

/// A sample within this share of its limit is warned about.
pub const NEAR_LIMIT: f64 = 0.75;

/// One sampled job.
#[derive(Debug, Clone)]
pub struct Sample {
    pub job: String,
    pub bytes: u64,
    pub targets: usize,
    pub interval: Duration,
}

impl Sample {
    /// Bytes per second over all the job's targets, each the size sampled.
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 * self.targets as f64 / self.interval.as_secs_f64().max(0.001)
    }
}

/// Why a sample of `bytes` in `took` is close to its job's limits, if it
/// is: over or within 25 % of `body_size_limit` (Prometheus fails the
/// scrape past it), or of `scrape_timeout`.
pub fn near_limits(bytes: u64, took: Duration, limits: &Effective) -> Option<String> {
    let limit = limits.body_size_limit.bytes();
    let mut why = Vec::new();
    if limit > 0 && bytes > limit {
        why.push(format!(
            "over its body_size_limit {}: Prometheus fails this scrape (\"body size limit exceeded\")",
            limits.body_size_limit
        ));
    } else if limit > 0 && bytes as f64 >= NEAR_LIMIT * limit as f64 {
        why.push(format!(
            "{:.0} % of its body_size_limit {}",
            100.0 * bytes as f64 / limit as f64,
            limits.body_size_limit
        ));
    }
    let timeout = limits.scrape_timeout.as_duration();
    if took.as_secs_f64() >= NEAR_LIMIT * timeout.as_secs_f64() {
        why.push(format!(
            "took {} ms of its scrape_timeout {}",
            took.as_millis(),
            limits.scrape_timeout
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The projected load of a cluster: the total, and a line naming the
/// largest jobs.
pub fn projected(samples: &[Sample]) -> (f64, String) {
    let total: f64 = samples.iter().map(Sample::bytes_per_second).sum();
    let mut by_job: Vec<&Sample> = samples.iter().collect();
    by_job.sort_by(|a, b| b.bytes_per_second().total_cmp(&a.bytes_per_second()));
    let parts: Vec<String> = by_job
        .iter()
        .map(|s| {
            format!(
                "{} {} × {} / {}s",
                s.job,
                human(s.bytes as f64),
                s.targets,
                s.interval.as_secs_f64()
            )
        })
        .collect();
    (
        total,
        format!(
            "about {}/s through the API server's proxy ({})",
            human(total),
            parts.join(", ")
        ),
    )
}

/// Bytes in KiB or MiB, for people.
pub fn human(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::duration::PromDuration;
    use crate::config::limits::ByteSize;

    fn limits(size: &str, timeout: &str) -> Effective {
        Effective {
            sample_limit: 1,
            body_size_limit: ByteSize::parse(size).unwrap(),
            scrape_timeout: PromDuration::parse(timeout).unwrap(),
        }
    }

    #[test]
    fn a_sample_near_or_over_its_limits_is_named() {
        let l = limits("4MB", "10s");
        let fast = Duration::from_millis(100);
        assert_eq!(near_limits(2 << 20, fast, &l), None);
        assert!(
            near_limits(3 << 20, fast, &l)
                .unwrap()
                .contains("75 % of its body_size_limit 4MB")
        );
        assert!(
            near_limits(5 << 20, fast, &l)
                .unwrap()
                .contains("over its body_size_limit 4MB")
        );
        assert!(
            near_limits(1, Duration::from_secs(8), &l)
                .unwrap()
                .contains("took 8000 ms of its scrape_timeout 10s")
        );
        // 0: no limit, nothing to be near.
        assert_eq!(near_limits(u64::MAX / 2, fast, &limits("0", "10s")), None);
    }

    #[test]
    fn the_load_is_size_times_targets_over_the_interval() {
        let samples = [
            Sample {
                job: "cadvisor".into(),
                bytes: 3 << 20,
                targets: 100,
                interval: Duration::from_secs(30),
            },
            Sample {
                job: "kubelet".into(),
                bytes: 300 << 10,
                targets: 100,
                interval: Duration::from_secs(30),
            },
        ];
        let (total, line) = projected(&samples);
        // 10 MiB/s of cAdvisor and 1000 KiB/s of kubelet: past the threshold.
        assert!(total > WARN_BYTES_PER_SECOND, "{total}");
        assert!(line.starts_with("about 11.0 MiB/s"), "{line}");
        assert!(
            line.contains("cadvisor 3.0 MiB × 100 / 30s, kubelet"),
            "{line}"
        );
    }
}
