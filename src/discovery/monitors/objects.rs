//! ServiceMonitors and PodMonitors as an API server sends them: only the
//! fields promfed reads, every list and map `null_as_empty`, and the
//! fields it cannot honour from outside kept only as "present", never
//! their values (they name in-cluster Secrets). Also written to the state
//! folder, so that a transaction renders the monitors discovery last saw.

use std::collections::BTreeMap;

use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::monitors::MonitorKind;
use crate::discovery::decode::null_as_empty;

/// One monitor; `kind` is the list it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Monitor {
    /// Set from the list it came in (the API's own `kind` is a word).
    #[serde(rename = "promfedKind", default = "service_kind")]
    pub kind: MonitorKind,
    pub metadata: Meta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub spec: Spec,
}

fn service_kind() -> MonitorKind {
    MonitorKind::Service
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub namespace: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub job_label: Option<String>,
    /// A ServiceMonitor's `endpoints`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoints: Vec<Endpoint>,
    /// A PodMonitor's `podMetricsEndpoints`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub pod_metrics_endpoints: Vec<Endpoint>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub selector: Selector,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub namespace_selector: NamespaceSelector,
    pub sample_limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub any: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub match_names: Vec<String>,
}

/// `intstr.IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

/// An endpoint of either kind (`endpoints[]`, `podMetricsEndpoints[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub port: Option<String>,
    /// PodMonitor only (operator 0.71 and later).
    pub port_number: Option<i64>,
    pub target_port: Option<IntOrString>,
    pub path: Option<String>,
    pub scheme: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    pub interval: Option<String>,
    pub scrape_timeout: Option<String>,
    pub honor_labels: Option<bool>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub relabelings: Vec<RelabelConfig>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub metric_relabelings: Vec<RelabelConfig>,
    pub tls_config: Option<TlsConfig>,
    // What needs an in-cluster Secret or another network path: only
    // whether it is there.
    pub bearer_token_file: Option<Present>,
    pub bearer_token_secret: Option<Present>,
    pub basic_auth: Option<Present>,
    pub authorization: Option<Present>,
    pub oauth2: Option<Present>,
    pub proxy_url: Option<Present>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    pub ca: Option<Present>,
    pub cert: Option<Present>,
    pub key_secret: Option<Present>,
    pub ca_file: Option<Present>,
    pub cert_file: Option<Present>,
    pub key_file: Option<Present>,
}

impl TlsConfig {
    /// Certificates or keys from Secrets, ConfigMaps or the operator's
    /// own files: none of which the API server's proxy can use.
    pub fn refers_to_files(&self) -> bool {
        [
            &self.ca,
            &self.cert,
            &self.key_secret,
            &self.ca_file,
            &self.cert_file,
            &self.key_file,
        ]
        .iter()
        .any(|f| f.is_some())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelabelConfig {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub target_label: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub replacement: Option<String>,
    pub action: Option<String>,
}

/// A field that is there, whatever its value (never kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Present;

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present)
    }
}

impl Serialize for Present {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(true)
    }
}

impl Monitor {
    /// Its endpoints, of whichever kind it is.
    pub fn endpoints(&self) -> &[Endpoint] {
        match self.kind {
            MonitorKind::Service => &self.spec.endpoints,
            MonitorKind::Pod => &self.spec.pod_metrics_endpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::decode;

    #[test]
    fn null_and_absent_fields_are_empty_and_secrets_are_never_kept() {
        for shape in [
            r#"{"metadata":{"name":"a","namespace":"n","labels":null},"spec":{"endpoints":null,"selector":null,"namespaceSelector":null}}"#,
            r#"{"metadata":{"name":"a","namespace":"n"},"spec":{}}"#,
            r#"{"metadata":{"name":"a","namespace":"n"}}"#,
        ] {
            let m: Monitor = decode::from_slice(shape.as_bytes()).unwrap();
            assert!(m.endpoints().is_empty() && m.spec.selector.match_labels.is_empty());
        }
        let m: Monitor = decode::from_slice(
            br#"{"metadata":{"name":"a","namespace":"n"},"spec":{"endpoints":[{"port":"web","bearerTokenSecret":{"name":"s3cr3t","key":"token"},"relabelings":[{"sourceLabels":null,"action":"drop"}]}]}}"#,
        )
        .unwrap();
        assert_eq!(m.endpoints()[0].bearer_token_secret, Some(Present));
        let saved = serde_json::to_string(&m).unwrap();
        assert!(!saved.contains("s3cr3t"), "{saved}");
        let again: Monitor = serde_json::from_str(&saved).unwrap();
        assert_eq!(again, m);
    }
}
