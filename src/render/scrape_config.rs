//! The parts of Prometheus's `scrape_config` that promfed writes, as typed
//! structs so the YAML is produced by serde in a fixed field order.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub honor_labels: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub honor_timestamps: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_path: Option<String>,
    /// Prometheus 3 only (`Dialect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_scrape_protocol: Option<&'static str>,
    /// URL parameters: a federation's `match[]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_size_limit: Option<String>,
    pub scheme: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    pub tls_config: TlsConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    pub relabel_configs: Vec<Relabel>,
    /// Last, and empty where the shared drops follow as text, made once
    /// (see `jobs::cluster_yaml`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<Relabel>,
}

/// Credentials are always referenced by path, never inlined.
#[derive(Debug, Clone, Serialize)]
pub struct Authorization {
    pub credentials_file: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Serialize)]
pub struct StaticConfig {
    pub targets: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct FileSdConfig {
    pub files: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct KubernetesSdConfig {
    pub api_server: String,
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Namespaces>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    pub tls_config: TlsConfig,
}

#[derive(Debug, Serialize)]
pub struct Namespaces {
    pub names: Vec<String>,
}

/// One relabelling rule; unset fields take Prometheus's defaults.
#[derive(Debug, Default, Serialize)]
pub struct Relabel {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
}

impl Relabel {
    /// Sets a target label to a fixed value, exactly as given: a
    /// replacement expands `$1` and `${name}`, so every `$` is doubled.
    pub fn set(label: &str, value: &str) -> Relabel {
        Relabel {
            target_label: Some(label.to_string()),
            replacement: Some(value.replace('$', "$$")),
            ..Relabel::default()
        }
    }

    /// Sets `label` to `value` only where the target has no such label, so
    /// a per-target label (a pod's `namespace`, `app`) is never overwritten.
    pub fn fill(label: &str, value: &str) -> Relabel {
        Relabel {
            source_labels: vec![label.to_string()],
            regex: Some(String::new()),
            ..Relabel::set(label, value)
        }
    }

    /// Copies `source` into `label` when it matches `regex` (with `$1`…).
    pub fn copy(sources: &[&str], regex: &str, label: &str, replacement: &str) -> Relabel {
        Relabel {
            source_labels: sources.iter().map(|s| s.to_string()).collect(),
            regex: Some(regex.to_string()),
            target_label: Some(label.to_string()),
            replacement: Some(replacement.to_string()),
            ..Relabel::default()
        }
    }

    /// Keeps only targets whose `sources` match `regex`.
    pub fn keep(sources: &[&str], regex: &str) -> Relabel {
        Relabel {
            source_labels: sources.iter().map(|s| s.to_string()).collect(),
            regex: Some(regex.to_string()),
            action: Some("keep"),
            ..Relabel::default()
        }
    }

    /// Drops series (or targets) whose `sources` match `regex`.
    pub fn drop(sources: &[&str], regex: &str) -> Relabel {
        Relabel {
            source_labels: sources.iter().map(|s| s.to_string()).collect(),
            regex: Some(regex.to_string()),
            action: Some("drop"),
            ..Relabel::default()
        }
    }

    /// Removes the labels matching `regex` from every series.
    pub fn drop_labels(regex: &str) -> Relabel {
        Relabel {
            regex: Some(regex.to_string()),
            action: Some("labeldrop"),
            ..Relabel::default()
        }
    }

    /// Drops metrics by name.
    pub fn drop_names(regex: &str) -> Relabel {
        Relabel::drop(&["__name__"], regex)
    }
}

/// `s` matched literally in a relabel `regex`.
pub(super) fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// A path as a file field of the configuration holds it.
pub(super) fn path_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
