//! Relabelling rules that come from outside promfed (a ServiceMonitor's
//! `relabelings`), checked as Prometheus checks them, so that a rule
//! promtool would refuse is dropped with a reason instead of breaking the
//! whole configuration; and never allowed to move a scrape off the API
//! server's proxy.

/// The longest regex taken: compiling is linear in it, and no real rule
/// comes near.
pub const MAX_REGEX: usize = 4096;
/// The longest other string field (a label name, a replacement).
pub const MAX_FIELD: usize = 1024;
/// Go's RE2 refuses a repetition count above this; Rust's regex does not.
const MAX_REPEAT: u32 = 1000;

/// One rule as written, every field optional (Prometheus's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RawRelabel {
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub target_label: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub replacement: Option<String>,
    pub action: Option<String>,
}

/// A rule Prometheus accepts, with its action in lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relabel {
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub target_label: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub replacement: Option<String>,
    pub action: &'static str,
}

/// The actions Prometheus 2.42 knows (keepequal and dropequal since 2.41).
const ACTIONS: [&str; 11] = [
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
];

/// Where a rule runs: before the scrape (target labels) or on each sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Target,
    Metric,
}

impl RawRelabel {
    /// The rule, or why Prometheus (or promfed) would not take it.
    pub fn validate(&self, stage: Stage) -> Result<Relabel, String> {
        let action = self.action()?;
        self.check_sizes()?;
        for label in &self.source_labels {
            if !is_label_name(label) {
                return Err(format!("source label {label:?} is not a label name"));
            }
        }
        if let Some(regex) = &self.regex {
            check_regex(regex)?;
        }
        self.check_action(action)?;
        if stage == Stage::Target {
            self.check_stays_on_the_proxy(action)?;
        }
        Ok(Relabel {
            source_labels: self.source_labels.clone(),
            separator: self.separator.clone(),
            target_label: self.target_label.clone().filter(|t| !t.is_empty()),
            regex: self.regex.clone(),
            modulus: self.modulus,
            replacement: self.replacement.clone(),
            action,
        })
    }

    fn action(&self) -> Result<&'static str, String> {
        let written = self
            .action
            .as_deref()
            .unwrap_or("replace")
            .to_ascii_lowercase();
        ACTIONS
            .into_iter()
            .find(|a| *a == written)
            .ok_or_else(|| format!("action {:?} is not one Prometheus knows", written))
    }

    fn check_sizes(&self) -> Result<(), String> {
        let long = [&self.separator, &self.target_label, &self.replacement]
            .into_iter()
            .flatten()
            .chain(&self.source_labels)
            .any(|s| s.len() > MAX_FIELD);
        if long || self.source_labels.len() > 64 {
            return Err(format!("a field is longer than {MAX_FIELD} bytes"));
        }
        Ok(())
    }

    /// Prometheus's own checks (`relabel.Config.Validate`).
    fn check_action(&self, action: &str) -> Result<(), String> {
        let target = self.target_label.as_deref().unwrap_or("");
        match action {
            "replace" if target.is_empty() => Err("replace needs a target label".into()),
            "replace" if !is_label_template(target) => {
                Err(format!("target label {target:?} is not a label name"))
            }
            "hashmod" | "lowercase" | "uppercase" | "keepequal" | "dropequal"
                if !is_label_name(target) =>
            {
                Err(format!(
                    "{action} needs a target label that is a label name, not {target:?}"
                ))
            }
            "hashmod" if self.modulus.unwrap_or(0) == 0 => {
                Err("hashmod needs a modulus above 0".into())
            }
            "keepequal" | "dropequal"
                if self.regex.is_some()
                    || self.modulus.is_some()
                    || self.separator.is_some()
                    || self.replacement.is_some() =>
            {
                Err(format!(
                    "{action} takes only source labels and a target label"
                ))
            }
            "labeldrop" | "labelkeep"
                if !self.source_labels.is_empty()
                    || !target.is_empty()
                    || self.modulus.is_some()
                    || self.separator.is_some()
                    || self.replacement.is_some() =>
            {
                Err(format!("{action} takes only a regex"))
            }
            "labelmap" if !is_label_template(self.replacement.as_deref().unwrap_or("$1")) => {
                Err("labelmap's replacement is not a label name".into())
            }
            _ => Ok(()),
        }
    }

    /// The proxy path, the API server's address, the scheme and the URL's
    /// parameters are promfed's: a rule that set them could send promfed's
    /// credentials elsewhere, or read another API path with them.
    fn check_stays_on_the_proxy(&self, action: &str) -> Result<(), String> {
        let written = match action {
            "labelmap" => self.replacement.as_deref().unwrap_or("$1"),
            "replace" | "hashmod" | "lowercase" | "uppercase" => {
                self.target_label.as_deref().unwrap_or("")
            }
            _ => return Ok(()),
        };
        let reserved = ["__address__", "__metrics_path__", "__scheme__", "__param_"];
        if written.contains('$') && written.starts_with("__")
            || reserved.iter().any(|r| written.starts_with(r))
        {
            return Err(format!(
                "it sets {written}, which must stay promfed's (every target is scraped through the API server's proxy)"
            ));
        }
        Ok(())
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a label name every Prometheus takes.
pub fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A label name that may hold `$1` or `${name}` (Prometheus's
/// `relabelTarget`).
fn is_label_template(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return false;
            };
            let name = &after[..end];
            if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return false;
            }
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('$') {
            let n = after
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            if n == 0 {
                return false;
            }
            rest = &after[n..];
        } else {
            let c = rest.as_bytes()[0];
            let ok = c.is_ascii_alphabetic() || c == b'_' || (!first && c.is_ascii_digit());
            if !ok {
                return false;
            }
            rest = &rest[1..];
        }
        first = false;
    }
    true
}

/// A regex both RE2 (Prometheus) and Rust's regex take, anchored as
/// Prometheus anchors it.
pub fn check_regex(regex: &str) -> Result<(), String> {
    if regex.len() > MAX_REGEX {
        return Err(format!("a regex longer than {MAX_REGEX} bytes"));
    }
    // Rust's regex takes these, RE2 (Go 1.19-1.21) does not.
    for form in ["(?<", "\\<", "\\>", "\\b{", "&&", "--", "~~"] {
        let in_class = form.len() == 2 && !form.starts_with('\\');
        if regex.contains(form) && (!in_class || regex.contains('[')) {
            return Err(format!(
                "a regex with {form:?}, which Prometheus's RE2 reads otherwise"
            ));
        }
    }
    if repeats_beyond(regex, MAX_REPEAT) {
        return Err(format!(
            "a regex repeats more than {MAX_REPEAT} times, which RE2 refuses"
        ));
    }
    regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| {
            let e = e.to_string();
            format!(
                "a regex that does not compile: {}",
                e.lines().last().unwrap_or_default().trim()
            )
        })
}

/// Whether some `{n}` or `{n,m}` counts past `limit`.
fn repeats_beyond(regex: &str, limit: u32) -> bool {
    regex.split('{').skip(1).any(|after| {
        let inner: String = after.chars().take_while(|c| *c != '}').collect();
        inner
            .split(',')
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > u64::from(limit)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, target: Option<&str>, regex: Option<&str>) -> RawRelabel {
        RawRelabel {
            action: Some(action.into()),
            target_label: target.map(str::to_string),
            regex: regex.map(str::to_string),
            ..RawRelabel::default()
        }
    }

    #[test]
    fn rules_prometheus_takes() {
        let ok = [
            RawRelabel {
                source_labels: vec!["__meta_kubernetes_pod_node_name".into()],
                target_label: Some("node".into()),
                ..RawRelabel::default()
            },
            rule("Replace", Some("${1}_x"), Some("(.+)")),
            rule("labeldrop", None, Some("pod_template_hash")),
            rule("labelmap", None, Some("__meta_kubernetes_pod_label_(.+)")),
            RawRelabel {
                modulus: Some(4),
                ..rule("hashmod", Some("__tmp_hash"), None)
            },
            rule("keepequal", Some("x"), None),
            rule("drop", None, Some("go_.*")),
        ];
        for r in ok {
            assert!(
                r.validate(Stage::Target).is_ok(),
                "{r:?}: {:?}",
                r.validate(Stage::Target)
            );
        }
        assert_eq!(
            rule("Keep", None, None)
                .validate(Stage::Metric)
                .unwrap()
                .action,
            "keep"
        );
    }

    #[test]
    fn rules_promtool_refuses_are_refused_with_a_reason() {
        let bad = [
            rule("explode", Some("x"), None),
            rule("replace", None, None),
            rule("replace", Some("1x"), None),
            rule("hashmod", Some("x"), None),
            rule("keepequal", Some("x"), Some("a")),
            rule("labeldrop", Some("x"), Some("a")),
            rule("drop", None, Some("(unclosed")),
            rule("drop", None, Some("a{1001}")),
            rule("drop", None, Some("(?<name>x)")),
            rule("drop", None, Some(&"a".repeat(MAX_REGEX + 1))),
            RawRelabel {
                source_labels: vec!["bad-label".into()],
                ..rule("keep", None, None)
            },
            RawRelabel {
                replacement: Some("a\nb".into()),
                ..rule("labelmap", None, None)
            },
        ];
        for r in bad {
            assert!(r.validate(Stage::Metric).is_err(), "{r:?}");
        }
    }

    #[test]
    fn target_rules_may_not_leave_the_proxy() {
        for target in [
            "__address__",
            "__metrics_path__",
            "__scheme__",
            "__param_target",
            "__$1",
        ] {
            let r = rule("replace", Some(target), None);
            let e = r.validate(Stage::Target).unwrap_err();
            assert!(e.contains("promfed's"), "{target}: {e}");
            // On samples these labels mean nothing: allowed.
            assert!(r.validate(Stage::Metric).is_ok() || target == "__$1");
        }
        let map = RawRelabel {
            replacement: Some("__address__".into()),
            ..rule("labelmap", None, Some("x"))
        };
        assert!(map.validate(Stage::Target).is_err());
    }
}
