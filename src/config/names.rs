//! Names that end up in Prometheus labels and in file names.

use std::fmt;

use serde::{Deserialize, Serialize};

// Kubernetes names go into API-server proxy paths (`/api/v1/nodes/<name>/
// proxy/metrics`): a name such as `../../secrets` would reach something else.
// Only names Kubernetes itself allows (DNS-1123) are used, whether an API
// server sent them or a cluster file.

/// A DNS-1123 subdomain: node and pod names.
pub fn is_subdomain(name: &str) -> bool {
    name.len() <= 253 && !name.is_empty() && name.split('.').all(is_label)
}

/// A DNS-1123 label: namespaces, and each part of a subdomain.
pub fn is_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Labels promfed sets itself; a cluster's extra labels may not use them.
pub const RESERVED_LABELS: [&str; 4] = ["cluster", "job", "instance", "metrics_path"];

/// A cluster's name: the value of its `cluster` label and part of file and
/// job names, so it is limited to what is safe in all three.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterName(String);

impl ClusterName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let valid_start = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let valid_rest = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_start || !valid_rest || name.len() > 63 {
            return Err(format!(
                "`{name}` is not a valid cluster name: use 1 to 63 letters, digits, `-`, `_` or `.`, starting with a letter or digit"
            ));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ClusterName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<ClusterName> for String {
    fn from(n: ClusterName) -> String {
        n.0
    }
}

/// A Prometheus label name an operator may add: `[a-zA-Z_][a-zA-Z0-9_]*`,
/// not starting with `__` (reserved for Prometheus) and not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LabelName(String);

impl LabelName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`{name}` is not a valid label name: use letters, digits and `_`, not starting with a digit"
            ));
        }
        if name.starts_with("__") {
            return Err(format!(
                "`{name}`: label names starting with `__` are reserved for Prometheus"
            ));
        }
        if RESERVED_LABELS.contains(&name) {
            return Err(format!(
                "`{name}` is set by promfed itself and cannot be overridden"
            ));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LabelName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<LabelName> for String {
    fn from(n: LabelName) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_kubernetes_names_pass() {
        for good in ["node-a", "ip-10-0-0-1.ec2.internal", "a", "0"] {
            assert!(is_subdomain(good), "{good}");
        }
        for bad in [
            "",
            "../../../api/v1/namespaces/kube-system/secrets",
            "Node",
            "a..b",
            "-a",
            "a-",
            "a/b",
            "a%2Fb",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(!is_subdomain(bad), "{bad}");
        }
        assert!(is_label("monitoring") && !is_label("kube.system"));
    }

    use super::*;

    #[test]
    fn cluster_names_are_safe_in_files_and_labels() {
        for good in ["stage", "prod-eu-1", "a.b_c", "7"] {
            assert!(ClusterName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".hidden", "a/b", "a b", "ü", &"x".repeat(64)] {
            assert!(ClusterName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_names_follow_prometheus_and_keep_ours() {
        assert!(LabelName::parse("env").is_ok());
        assert!(LabelName::parse("_team2").is_ok());
        for bad in ["2x", "a-b", "__x", "cluster", "job", ""] {
            assert!(LabelName::parse(bad).is_err(), "{bad}");
        }
    }
}
