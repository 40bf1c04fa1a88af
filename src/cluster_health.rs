//! Whether a cluster is healthy, and the cause of whatever is not: from
//! what the daemon wrote (status.json) and what Prometheus says of the
//! targets, at a given time. Pure: `promfed status` calls it with the
//! clock, the tests with the time they choose.
//!
//! Thresholds (README, "status.json and `promfed status`"):
//! - a watch silent for more than `WATCH_SILENCE` (330 s: promfed gave up
//!   on it at least once) is yellow; for more than twice that (11 min), red.
//!   API servers send a bookmark about once a minute.
//! - a token or certificate ending within 7 days is yellow; within 24 h, or
//!   ended, red.
//! - targets down in Prometheus are yellow; half or more, red.
//! - discovery failing, or a broken file with no good definition, is red;
//!   not discovered yet, or the last good definition kept, yellow.

use serde::Serialize;

use crate::apply::Definition;
use crate::credential_expiry::Credential;
use crate::discovery::WATCH_SILENCE;
use crate::status::{ClusterStatus, DiscoveryState};
use crate::target_health::ClusterUp;

const HOUR: i64 = 3600;
pub const WATCH_YELLOW: i64 = WATCH_SILENCE.as_secs() as i64;
pub const WATCH_RED: i64 = 2 * WATCH_YELLOW;
pub const CREDENTIAL_YELLOW: i64 = 7 * 24 * HOUR;
pub const CREDENTIAL_RED: i64 = 24 * HOUR;
/// How much of an error a status line shows.
const ERROR_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Yellow,
    Red,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Yellow => "yellow",
            Level::Red => "red",
        }
    }
}

/// One cluster's health, as `status` shows it and `status --json` gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub level: Level,
    /// What is red, then what is yellow, each in a few words.
    pub causes: Vec<String>,
    /// From Prometheus; `None` when it did not answer.
    pub targets: Option<Targets>,
    /// The credential that ends first.
    pub credential: Option<CredentialLeft>,
    /// The watch whose last event is the oldest.
    pub oldest_watch: Option<WatchAge>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Targets {
    pub up: usize,
    pub total: usize,
    pub top_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CredentialLeft {
    /// `token` or `certificate`.
    pub credential: &'static str,
    pub expires: String,
    /// Negative once it has ended.
    pub seconds_left: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchAge {
    pub resource: String,
    pub last_event: String,
    pub age_seconds: i64,
}

/// What one finding adds: its level and its cause.
type Finding = (Level, String);

/// `targets`: `None` when Prometheus did not answer; the default (none)
/// when it has none of this cluster's.
pub fn assess(c: &ClusterStatus, targets: Option<&ClusterUp>, now: i64) -> Health {
    let mut found: Vec<Finding> = Vec::new();
    found.extend(definition_and_discovery(c));
    let oldest_watch = oldest_watch(c, now);
    if c.discovery.state != DiscoveryState::None {
        found.extend(watches(c, now));
    }
    let credentials = credentials(c, now);
    found.extend(credentials.iter().filter_map(credential_finding));
    if let (Some(t), DiscoveryState::Ok) = (targets, c.discovery.state) {
        found.extend(targets_finding(t));
    }
    // Red first, each group in the order found.
    found.sort_by_key(|(level, _)| std::cmp::Reverse(*level));
    Health {
        level: found.first().map_or(Level::Ok, |(l, _)| *l),
        causes: found.into_iter().map(|(_, cause)| cause).collect(),
        targets: targets.map(|t| Targets {
            up: t.up,
            total: t.total,
            top_error: t.top_error.clone(),
        }),
        credential: credentials.into_iter().min_by_key(|c| c.seconds_left),
        oldest_watch,
    }
}

fn definition_and_discovery(c: &ClusterStatus) -> Vec<Finding> {
    let mut found = Vec::new();
    match c.definition {
        Definition::Current => {}
        Definition::KeptLastGood => found.push((
            Level::Yellow,
            "its file is broken: the last good definition is in force".into(),
        )),
        Definition::Broken => found.push((
            Level::Red,
            "its file is broken and no good definition is known".into(),
        )),
    }
    match c.discovery.state {
        DiscoveryState::Failing => {
            let error = c.discovery.error.as_deref().unwrap_or("no error given");
            found.push((
                Level::Red,
                format!(
                    "discovery failing: {}",
                    error.chars().take(ERROR_CHARS).collect::<String>()
                ),
            ));
        }
        DiscoveryState::Pending => found.push((Level::Yellow, "not discovered yet".into())),
        DiscoveryState::Ok | DiscoveryState::None => {}
    }
    found
}

/// Each watch's age; one that does not parse is not shown (no panic on a
/// hand-edited file).
fn ages(c: &ClusterStatus, now: i64) -> impl Iterator<Item = (&str, &str, i64)> {
    c.discovery.watches.iter().filter_map(move |w| {
        let at = seconds(&w.last_event)?;
        Some((
            w.resource.as_str(),
            w.last_event.as_str(),
            (now - at).max(0),
        ))
    })
}

fn oldest_watch(c: &ClusterStatus, now: i64) -> Option<WatchAge> {
    ages(c, now)
        .max_by_key(|(_, _, age)| *age)
        .map(|(resource, last_event, age)| WatchAge {
            resource: resource.into(),
            last_event: last_event.into(),
            age_seconds: age,
        })
}

fn watches(c: &ClusterStatus, now: i64) -> Vec<Finding> {
    ages(c, now)
        .filter_map(|(resource, _, age)| {
            let level = match age {
                a if a > WATCH_RED => Level::Red,
                a if a > WATCH_YELLOW => Level::Yellow,
                _ => return None,
            };
            Some((
                level,
                format!("watch on {resource} silent for {}", span(age)),
            ))
        })
        .collect()
}

fn credentials(c: &ClusterStatus, now: i64) -> Vec<CredentialLeft> {
    [
        (Credential::Token, &c.token_expiry),
        (Credential::Certificate, &c.certificate_expiry),
    ]
    .into_iter()
    .filter_map(|(credential, expires)| {
        let expires = expires.as_deref()?;
        Some(CredentialLeft {
            credential: credential.word(),
            expires: expires.into(),
            seconds_left: seconds(expires)? - now,
        })
    })
    .collect()
}

fn credential_finding(c: &CredentialLeft) -> Option<Finding> {
    let left = c.seconds_left;
    let name = c.credential;
    match left {
        l if l <= 0 => Some((Level::Red, format!("{name} expired {} ago", span(-l)))),
        l if l < CREDENTIAL_RED => Some((Level::Red, format!("{name} expires in {}", span(l)))),
        l if l < CREDENTIAL_YELLOW => {
            Some((Level::Yellow, format!("{name} expires in {}", span(l))))
        }
        _ => None,
    }
}

fn targets_finding(t: &ClusterUp) -> Option<Finding> {
    if t.total == 0 {
        return Some((Level::Yellow, "Prometheus has none of its targets".into()));
    }
    let down = t.total - t.up.min(t.total);
    if down == 0 {
        return None;
    }
    let level = if 2 * down >= t.total {
        Level::Red
    } else {
        Level::Yellow
    };
    let error = t.top_error.as_deref().unwrap_or("no error given");
    Some((level, format!("{down}/{} targets down: {error}", t.total)))
}

fn seconds(rfc3339: &str) -> Option<i64> {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// A time span in its largest sensible unit: 40s, 12m, 3h, 9d.
pub fn span(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * HOUR => format!("{}m", s / 60),
        s if s < 48 * HOUR => format!("{}h", s / HOUR),
        s => format!("{}d", s / (24 * HOUR)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{DiscoveryStatus, WatchStatus};

    fn at(second: i64) -> String {
        jiff::Timestamp::from_second(second).unwrap().to_string()
    }

    fn discovered(now: i64) -> ClusterStatus {
        ClusterStatus {
            discovery: DiscoveryStatus {
                state: DiscoveryState::Ok,
                watches: vec![WatchStatus {
                    resource: "nodes".into(),
                    last_event: at(now - 30),
                }],
                ..Default::default()
            },
            token_expiry: Some(at(now + 30 * 24 * HOUR)),
            ..Default::default()
        }
    }

    const NOW: i64 = 1_900_000_000;

    #[test]
    fn a_cluster_with_nothing_wrong_is_ok_and_says_what_it_measured() {
        let all_up = ClusterUp {
            up: 8,
            total: 8,
            top_error: None,
        };
        let h = assess(&discovered(NOW), Some(&all_up), NOW);
        assert_eq!(h.level, Level::Ok, "{h:?}");
        assert!(h.causes.is_empty(), "{h:?}");
        assert_eq!(h.oldest_watch.unwrap().age_seconds, 30);
        let credential = h.credential.unwrap();
        assert_eq!(
            (credential.credential, credential.seconds_left),
            ("token", 30 * 24 * HOUR)
        );
    }

    #[test]
    fn credentials_turn_yellow_within_a_week_and_red_within_a_day() {
        let mut c = discovered(NOW);
        c.token_expiry = Some(at(NOW + 3 * HOUR));
        c.certificate_expiry = Some(at(NOW + 5 * 24 * HOUR));
        let h = assess(&c, None, NOW);
        assert_eq!(h.level, Level::Red);
        assert_eq!(
            h.causes,
            ["token expires in 3h", "certificate expires in 5d"]
        );
        assert_eq!(
            h.credential.unwrap().credential,
            "token",
            "the first to end"
        );
        c.token_expiry = Some(at(NOW - 2 * HOUR));
        assert_eq!(assess(&c, None, NOW).causes[0], "token expired 2h ago");
        c.token_expiry = None;
        assert_eq!(assess(&c, None, NOW).level, Level::Yellow);
        c.certificate_expiry = Some(at(NOW + CREDENTIAL_YELLOW + 1));
        assert_eq!(assess(&c, None, NOW).level, Level::Ok);
    }

    #[test]
    fn targets_down_are_yellow_and_half_of_them_red() {
        let c = discovered(NOW);
        let down = |up, top: &str| ClusterUp {
            up,
            total: 8,
            top_error: Some(top.into()),
        };
        let h = assess(
            &c,
            Some(&down(4, "401 Unauthorized through the proxy")),
            NOW,
        );
        assert_eq!(h.level, Level::Red);
        assert_eq!(
            h.causes,
            ["4/8 targets down: 401 Unauthorized through the proxy"]
        );
        assert_eq!(assess(&c, Some(&down(5, "x")), NOW).level, Level::Yellow);
        assert_eq!(
            assess(&c, Some(&ClusterUp::default()), NOW).causes,
            ["Prometheus has none of its targets"]
        );
        let mut failing = c.clone();
        failing.discovery.state = DiscoveryState::Failing;
        failing.discovery.error = Some("403 Forbidden".into());
        let h = assess(&failing, Some(&down(0, "x")), NOW);
        assert_eq!(
            h.causes,
            ["discovery failing: 403 Forbidden"],
            "targets of a failing discovery are not judged"
        );
    }

    #[test]
    fn a_broken_file_and_a_pending_discovery_are_named() {
        let mut c = discovered(NOW);
        c.definition = Definition::KeptLastGood;
        c.discovery.state = DiscoveryState::Pending;
        let h = assess(&c, None, NOW);
        assert_eq!(h.level, Level::Yellow);
        assert_eq!(
            h.causes,
            [
                "its file is broken: the last good definition is in force",
                "not discovered yet"
            ]
        );
    }

    #[test]
    fn a_time_that_does_not_parse_is_left_out() {
        let mut c = discovered(NOW);
        c.discovery.watches[0].last_event = "yesterday".into();
        c.token_expiry = Some("\u{0}".into());
        let h = assess(&c, None, NOW);
        assert_eq!(
            (h.level, h.oldest_watch, h.credential),
            (Level::Ok, None, None)
        );
    }

    #[test]
    fn spans_read_in_their_largest_unit() {
        assert_eq!(
            [40, 720, 3 * HOUR, 9 * 24 * HOUR].map(span),
            ["40s", "12m", "3h", "9d"]
        );
    }
}
