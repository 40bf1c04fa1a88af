//! Durations written the way Prometheus writes them (`30s`, `1m30s`, `2h`),
//! so that what the operator typed can go into the generated config verbatim.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A validated Prometheus duration. Only `parse` makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PromDuration {
    text: String,
    millis: u64,
}

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Ordered by length, not by how it is written (`5s` < `30s`).
impl Ord for PromDuration {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.millis
            .cmp(&other.millis)
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for PromDuration {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The longest duration Prometheus parses: i64::MAX nanoseconds.
const MAX_MILLIS: u64 = i64::MAX as u64 / 1_000_000;

impl PromDuration {
    /// Accepts Prometheus's grammar: units from largest to smallest, each at
    /// most once, for example `1h30m` or `500ms`. Zero is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a duration (examples: 30s, 1m30s, 500ms, 2h)");
        let mut rest = text;
        let mut millis: u64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            // "ms" must be tried before "m".
            let (index, (unit, factor)) = UNITS
                .iter()
                .enumerate()
                .skip(next_unit)
                .filter(|(_, (u, _))| rest.starts_with(u))
                .max_by_key(|(_, (u, _))| u.len())
                .ok_or_else(bad)?;
            rest = &rest[unit.len()..];
            next_unit = index + 1;
            millis = number
                .checked_mul(*factor)
                .and_then(|v| millis.checked_add(v))
                .ok_or_else(bad)?;
        }
        if text.is_empty() || millis == 0 {
            return Err(bad());
        }
        // Prometheus keeps durations as int64 nanoseconds: 292 years at most.
        if millis > MAX_MILLIS {
            return Err(format!(
                "`{text}` is longer than Prometheus accepts (about 292 years, 106751d)"
            ));
        }
        Ok(Self {
            text: text.to_string(),
            millis,
        })
    }

    /// The duration of `millis` (at least 1), written with the largest
    /// units first, as Prometheus writes them (`2s500ms`).
    pub fn from_millis(millis: u64) -> Self {
        let millis = millis.clamp(1, MAX_MILLIS);
        let mut rest = millis;
        let mut text = String::new();
        // Weeks and years are left out: days read better.
        for (unit, factor) in UNITS.iter().skip(2) {
            if rest >= *factor {
                text.push_str(&format!("{}{unit}", rest / factor));
                rest %= factor;
            }
        }
        Self { text, millis }
    }

    pub fn as_duration(&self) -> Duration {
        Duration::from_millis(self.millis)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for PromDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<PromDuration> for String {
    fn from(d: PromDuration) -> String {
        d.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_prometheus_durations() {
        for (text, ms) in [
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1h1ms", 3_600_001),
        ] {
            assert_eq!(
                PromDuration::parse(text).unwrap().as_duration().as_millis(),
                ms,
                "{text}"
            );
        }
    }

    #[test]
    fn from_millis_writes_what_parse_reads() {
        for (ms, text) in [
            (10_000, "10s"),
            (2_500, "2s500ms"),
            (90_000, "1m30s"),
            (1, "1ms"),
        ] {
            let d = PromDuration::from_millis(ms);
            assert_eq!(d.as_str(), text);
            assert_eq!(PromDuration::parse(text).unwrap(), d);
        }
    }

    #[test]
    fn compares_by_length_not_by_text() {
        let d = |t| PromDuration::parse(t).unwrap();
        assert!(d("5s") < d("30s"));
        assert!(d("1m") > d("59s"));
        assert_eq!(d("10s").min(d("5s")).as_str(), "5s");
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        // promtool: 292y and 106751d pass, 293y and 106752d are out of range.
        assert!(PromDuration::parse("292y").is_ok() && PromDuration::parse("106751d").is_ok());
        for text in [
            "", "30", "s", "1s1m", "1.5s", "0s", "30 s", "-1s", "1m1m", "293y", "106752d",
        ] {
            assert!(PromDuration::parse(text).is_err(), "{text:?} was accepted");
        }
    }
}
