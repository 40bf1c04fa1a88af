//! `sample_limit`, `body_size_limit` and `scrape_timeout` of one job, as a
//! section of a cluster file writes them, and the defaults of each kind of
//! job. Every scrape goes through the cluster's API server, which nothing
//! throttles (proxied requests are long-running: exempt from API Priority
//! and Fairness), so every generated job carries all three.

use std::fmt;
use std::time::Duration;

use super::duration::PromDuration;
use super::toml_fields::{Fields, Problems, Spanned};
use super::values::Key;

/// The limits a section writes; `None`: the default of its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    /// 0: no limit (Prometheus's own meaning), taken when written.
    pub sample_limit: Option<u64>,
    pub body_size_limit: Option<ByteSize>,
    pub scrape_timeout: Option<PromDuration>,
}

/// What a kind of job gets when its section writes nothing. See the
/// README's table for where each number comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Defaults {
    pub sample_limit: u64,
    pub body_size_limit: &'static str,
    /// The timeout is min(this, half the interval).
    pub timeout_cap: Duration,
}

const fn defaults(sample_limit: u64, body_size_limit: &'static str, cap_secs: u64) -> Defaults {
    Defaults {
        sample_limit,
        body_size_limit,
        timeout_cap: Duration::from_secs(cap_secs),
    }
}

/// kubelet `/metrics`: a few hundred KB.
pub const KUBELET: Defaults = defaults(50_000, "10MB", 10);
/// cAdvisor: about 3 MB per busy node is normal.
pub const CADVISOR: Defaults = defaults(200_000, "32MB", 10);
/// kube-apiserver `/metrics`: often more than 30 MB on large clusters.
pub const APISERVER: Defaults = defaults(500_000, "128MB", 20);
/// node-exporter: 100-300 KB.
pub const NODE_EXPORTER: Defaults = defaults(50_000, "10MB", 10);
/// `/federate`: as large as its `match[]` makes it (prometheus#1672).
pub const FEDERATE: Defaults = defaults(1_000_000, "128MB", 20);
/// An annotated pod (an Istio sidecar's Envoy stats are the large ones).
pub const PODS: Defaults = defaults(50_000, "16MB", 10);
/// An exporter of one's own: vmagent's 16 MiB `maxScrapeSize`.
pub const EXPORTER: Defaults = defaults(50_000, "16MB", 10);
/// kube-state-metrics describes every object of the cluster.
pub const KUBE_STATE_METRICS: Defaults = defaults(500_000, "64MB", 20);
/// CoreDNS: a few hundred series.
pub const KUBE_DNS: Defaults = defaults(20_000, "10MB", 10);

/// A size as Prometheus's `body_size_limit` reads it (alecthomas/units,
/// powers of 1024), kept as written. Only `parse` makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ByteSize {
    text: String,
    bytes: u64,
}

const UNITS: [(&str, u32); 9] = [
    ("B", 0),
    ("KB", 10),
    ("MB", 20),
    ("GB", 30),
    ("TB", 40),
    ("KiB", 10),
    ("MiB", 20),
    ("GiB", 30),
    ("TiB", 40),
];

impl ByteSize {
    /// A whole number and a unit (`64MB`), or `0`: no limit.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let bad = || {
            format!(
                "`{text}` is not a size Prometheus reads: a whole number and B, KB, MB, GB or TB (KiB, MiB … alike; both mean powers of 1024), or 0 for no limit"
            )
        };
        if text == "0" {
            return Ok(ByteSize {
                text: text.into(),
                bytes: 0,
            });
        }
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let shift = UNITS
            .iter()
            .find(|(u, _)| *u == &text[digits..])
            .map(|(_, s)| *s)
            .ok_or_else(bad)?;
        let number: u64 = text[..digits].parse().map_err(|_| bad())?;
        // Prometheus keeps it as an int64 of bytes.
        let bytes = number
            .checked_mul(1 << shift)
            .filter(|b| *b <= i64::MAX as u64)
            .ok_or_else(bad)?;
        Ok(ByteSize {
            text: text.into(),
            bytes,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The three keys as written in one section (default: not written).
#[derive(Default)]
pub struct RawLimits {
    sample_limit: Option<Spanned<i64>>,
    body_size_limit: Key,
    scrape_timeout: Key,
    /// `section.`, for messages.
    prefix: String,
}

impl RawLimits {
    pub fn read(t: &mut Fields, p: &mut Problems) -> RawLimits {
        RawLimits {
            sample_limit: t.get(p, "sample_limit"),
            body_size_limit: t.get(p, "body_size_limit"),
            scrape_timeout: t.get(p, "scrape_timeout"),
            prefix: t.path(""),
        }
    }

    /// `interval`: the section's own `scrape_interval`, when it writes one
    /// (an inherited interval is only known when rendering, which keeps the
    /// timeout within it).
    pub fn validate(self, p: &mut Problems, interval: Option<&PromDuration>) -> Option<Limits> {
        let key = |name: &str| format!("{}{name}", self.prefix);
        let before = p.len();
        let sample_limit = self.sample_limit.and_then(|s| {
            u64::try_from(s.value)
                .map_err(|_| {
                    p.at(
                        s.span,
                        &key("sample_limit"),
                        format!(
                            "{} is not a number of samples (0 or more; 0 is no limit)",
                            s.value
                        ),
                    )
                })
                .ok()
        });
        let body_size_limit = self.body_size_limit.and_then(|s| {
            ByteSize::parse(&s.value)
                .map_err(|e| p.at(s.span, &key("body_size_limit"), e))
                .ok()
        });
        let scrape_timeout = self.scrape_timeout.and_then(|s| {
            let t = PromDuration::parse(&s.value)
                .map_err(|e| p.at(s.span.clone(), &key("scrape_timeout"), e))
                .ok()?;
            match interval {
                Some(i) if t > *i => {
                    p.at(
                        s.span,
                        &key("scrape_timeout"),
                        format!("{t} is longer than scrape_interval {i}: Prometheus refuses a timeout past the interval"),
                    );
                    None
                }
                _ => Some(t),
            }
        });
        (p.len() == before).then_some(Limits {
            sample_limit,
            body_size_limit,
            scrape_timeout,
        })
    }
}

/// The limits a job is rendered with: what its section writes, else
/// promfed.toml's `scrape_timeout`, else its kind's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub sample_limit: u64,
    pub body_size_limit: ByteSize,
    pub scrape_timeout: PromDuration,
}

impl Limits {
    pub fn effective(
        &self,
        kind: &Defaults,
        interval: &PromDuration,
        global_timeout: Option<&PromDuration>,
    ) -> Effective {
        let timeout = match self.scrape_timeout.as_ref().or(global_timeout) {
            Some(t) => t.clone(),
            None => default_timeout(kind.timeout_cap, interval),
        };
        Effective {
            sample_limit: self.sample_limit.unwrap_or(kind.sample_limit),
            body_size_limit: self.body_size_limit.clone().unwrap_or_else(|| {
                ByteSize::parse(kind.body_size_limit).expect("the defaults are sizes")
            }),
            // promtool refuses a timeout past the interval.
            scrape_timeout: timeout.min(interval.clone()),
        }
    }
}

/// min(cap, interval / 2): a stalled target holds an API-server request
/// for the whole timeout, so at most half of each interval, and never long
/// enough for scrapes of one target to overlap.
pub fn default_timeout(cap: Duration, interval: &PromDuration) -> PromDuration {
    let half = interval.as_duration() / 2;
    PromDuration::from_millis(cap.min(half).as_millis().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_prometheus_reads_them() {
        let size = |s| ByteSize::parse(s).map(|b| b.bytes());
        assert_eq!(size("10MB"), Ok(10 << 20));
        assert_eq!(size("512KiB"), Ok(512 << 10));
        assert_eq!(size("1B"), Ok(1));
        assert_eq!(size("0"), Ok(0));
        for bad in [
            "MB",
            "10 MB",
            "1.5MB",
            "10mb",
            "",
            "-1MB",
            "9999999TB",
            "10M",
        ] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_timeout_is_half_the_interval_at_most_the_cap() {
        let d = |s| PromDuration::parse(s).unwrap();
        let cap = Duration::from_secs(10);
        assert_eq!(default_timeout(cap, &d("30s")).as_str(), "10s");
        assert_eq!(default_timeout(cap, &d("10s")).as_str(), "5s");
        assert_eq!(default_timeout(cap, &d("5s")).as_str(), "2s500ms");
        assert_eq!(default_timeout(cap, &d("1h")).as_str(), "10s");
    }

    #[test]
    fn what_is_written_wins_and_the_timeout_stays_within_the_interval() {
        let d = |s| PromDuration::parse(s).unwrap();
        let written = Limits {
            sample_limit: Some(0),
            body_size_limit: Some(ByteSize::parse("1MB").unwrap()),
            scrape_timeout: Some(d("50s")),
        };
        let e = written.effective(&CADVISOR, &d("30s"), Some(&d("5s")));
        assert_eq!(
            (
                e.sample_limit,
                e.body_size_limit.to_string().as_str(),
                e.scrape_timeout.as_str()
            ),
            (0, "1MB", "30s")
        );
        let e = Limits::default().effective(&APISERVER, &d("1m"), Some(&d("15s")));
        assert_eq!(
            (
                e.sample_limit,
                e.body_size_limit.to_string().as_str(),
                e.scrape_timeout.as_str()
            ),
            (500_000, "128MB", "15s")
        );
        let e = Limits::default().effective(&APISERVER, &d("1m"), None);
        assert_eq!(e.scrape_timeout.as_str(), "20s");
    }
}
