//! `[monitors]` of a cluster file: the cluster's ServiceMonitors and
//! PodMonitors (`monitoring.coreos.com/v1`), listed and watched through
//! its API server, each endpoint a job of its own scraped through the pod
//! proxy. The section says where to read them; `MonitorJob` is one
//! endpoint of one monitor, once discovery has checked it.

use std::collections::BTreeMap;

use super::duration::PromDuration;
use super::exporter::parse_selector;
use super::label_selector::LabelSelector;
use super::names;
use super::relabel::Relabel;
use super::toml_fields::{Fields, Problems, Spanned};

/// At most this many monitors (both kinds) per cluster: each is a job, and
/// a job is a reload and a scrape pool. The rest are skipped, named.
pub const MAX_MONITORS: usize = 500;
/// At most this many endpoints per monitor.
pub const MAX_ENDPOINTS: usize = 32;
/// At most this many relabelling rules per endpoint and stage.
pub const MAX_RULES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Monitors {
    /// Where monitors are read and their targets found; empty: every
    /// namespace (one cluster-wide list and watch each).
    pub namespaces: Vec<String>,
    /// Only monitors with these labels (equality terms, all must hold).
    pub selector: Vec<(String, String)>,
}

mod defaults {
    pub const ENABLED: bool = true;
}

/// `[monitors]` as written.
pub struct RawMonitors {
    enabled: Option<Spanned<bool>>,
    namespaces: Option<Spanned<Vec<Spanned<String>>>>,
    selector: Option<Spanned<Vec<(String, String)>>>,
}

impl RawMonitors {
    /// `None` when the file has no `[monitors]`.
    pub fn read(root: &mut Fields, p: &mut Problems) -> Option<RawMonitors> {
        let mut t = root.table(p, "monitors")?;
        let selector = if t.is_table_like("selector") {
            t.string_map(p, "selector").map(|pairs| Spanned {
                span: pairs.first().map_or(0..0, |(k, _)| k.span.clone()),
                value: pairs.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
            })
        } else {
            t.get::<String>(p, "selector")
                .and_then(|s| match parse_selector(&s.value) {
                    Ok(value) => Some(Spanned {
                        value,
                        span: s.span,
                    }),
                    Err(e) => {
                        p.at(s.span, "monitors.selector", e);
                        None
                    }
                })
        };
        let raw = RawMonitors {
            enabled: t.get(p, "enabled"),
            namespaces: t.string_list(p, "namespaces"),
            selector,
        };
        t.finish(p);
        Some(raw)
    }

    /// `Some(None)`: valid, and off.
    pub fn validate(self, p: &mut Problems) -> Option<Option<Monitors>> {
        let before = p.len();
        let mut namespaces = Vec::new();
        let listed = self.namespaces.map(|n| n.value).unwrap_or_default();
        for (i, ns) in listed.into_iter().enumerate() {
            if !names::is_label(&ns.value) {
                p.at(
                    ns.span,
                    &format!("monitors.namespaces[{i}]"),
                    format!(
                        "`{}` is not a Kubernetes namespace name (lowercase letters, digits and `-`)",
                        ns.value
                    ),
                );
            } else if !namespaces.contains(&ns.value) {
                namespaces.push(ns.value);
            }
        }
        let selector = self.selector.map(|s| s.value).unwrap_or_default();
        if p.len() > before {
            return None;
        }
        let enabled = self.enabled.map_or(defaults::ENABLED, |b| b.value);
        namespaces.sort();
        Some(enabled.then_some(Monitors {
            namespaces,
            selector,
        }))
    }
}

/// ServiceMonitor or PodMonitor.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum MonitorKind {
    Service,
    Pod,
}

impl MonitorKind {
    /// As prometheus-operator begins its job names.
    pub fn word(self) -> &'static str {
        match self {
            MonitorKind::Service => "serviceMonitor",
            MonitorKind::Pod => "podMonitor",
        }
    }
}

/// Where a monitor's targets are (its `namespaceSelector`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetNamespaces {
    /// `any: true`.
    Any,
    /// `matchNames`, or the monitor's own namespace when it names none.
    Names(Vec<String>),
}

impl TargetNamespaces {
    pub fn contains(&self, ns: &str) -> bool {
        match self {
            TargetNamespaces::Any => true,
            TargetNamespaces::Names(names) => names.iter().any(|n| n == ns),
        }
    }
}

/// Which port: a Service port's name (ServiceMonitor `port`), a pod's
/// port number (`targetPort` as a number, PodMonitor `portNumber`), or a
/// container port's name (PodMonitor `port`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MonitorPort {
    Name(String),
    Number(u16),
}

/// One endpoint of one monitor: a job, checked field by field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MonitorJob {
    pub kind: MonitorKind,
    pub namespace: String,
    pub name: String,
    pub index: usize,
    /// Of the Services (ServiceMonitor) or pods (PodMonitor).
    pub selector: LabelSelector,
    pub target_namespaces: TargetNamespaces,
    pub port: MonitorPort,
    /// Starts with `/`.
    pub path: String,
    pub https: bool,
    pub params: BTreeMap<String, Vec<String>>,
    pub interval: Option<PromDuration>,
    pub timeout: Option<PromDuration>,
    pub honor_labels: bool,
    pub relabelings: Vec<Relabel>,
    pub metric_relabelings: Vec<Relabel>,
    /// The Service's (or pod's) label whose value is the `job` label.
    pub job_label: Option<String>,
    pub sample_limit: Option<u64>,
}

impl MonitorJob {
    /// prometheus-operator's name: `serviceMonitor/<ns>/<name>/<i>`.
    pub fn operator_name(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.kind.word(),
            self.namespace,
            self.name,
            self.index
        )
    }

    /// Its targets file: the name with `_` for `/`. Namespaces and names
    /// hold no `_` and the kind's capital letter no exporter job may
    /// have, so no two jobs share a file.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.operator_name().replace('/', "_"))
    }

    /// The `job` label without a `jobLabel`: the Service's name
    /// (ServiceMonitor), `<ns>/<name>` (PodMonitor), as the operator sets it.
    pub fn default_job(&self, service: &str) -> String {
        match self.kind {
            MonitorKind::Service => service.to_string(),
            MonitorKind::Pod => format!("{}/{}", self.namespace, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::Cluster;
    use crate::config::diagnostic::SourceText;

    fn parse(section: &str) -> Result<Option<Monitors>, Vec<String>> {
        let text = format!(
            "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"/t\"\nca_file = \"/ca\"\n{section}"
        );
        Cluster::parse(&SourceText::new("/etc/promfed.d/c.toml", text), "c")
            .map(|p| p.cluster.monitors)
            .map_err(|b| b.problems.iter().map(|d| d.headline()).collect())
    }

    #[test]
    fn the_section_with_its_defaults_and_every_key() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(
            parse("[monitors]\n").unwrap(),
            Some(Monitors {
                namespaces: vec![],
                selector: vec![]
            })
        );
        let m = parse(
            "[monitors]\nnamespaces = [\"b\", \"a\", \"b\"]\nselector = { release = \"prom\" }\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.namespaces, ["a", "b"]);
        assert_eq!(m.selector, [("release".to_string(), "prom".to_string())]);
        assert_eq!(parse("[monitors]\nenabled = false\n").unwrap(), None);
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let e = parse("[monitors]\nnamespaces = [\"Bad/ns\"]\n").unwrap_err();
        assert!(
            e[0].starts_with("/etc/promfed.d/c.toml:5:15: key `monitors.namespaces[0]`"),
            "{e:?}"
        );
        let e = parse("[monitors]\nselector = \"a in (b)\"\n").unwrap_err();
        assert!(e[0].contains("key `monitors.selector`"), "{e:?}");
        let e = parse("[monitors]\nnamespace = \"x\"\n").unwrap_err();
        assert!(e[0].contains("unknown key"), "{e:?}");
    }

    #[test]
    fn job_and_file_names_follow_the_operator() {
        let job = MonitorJob {
            kind: MonitorKind::Service,
            namespace: "web".into(),
            name: "front.end".into(),
            index: 1,
            selector: LabelSelector::default(),
            target_namespaces: TargetNamespaces::Any,
            port: MonitorPort::Name("http".into()),
            path: "/metrics".into(),
            https: false,
            params: BTreeMap::new(),
            interval: None,
            timeout: None,
            honor_labels: false,
            relabelings: vec![],
            metric_relabelings: vec![],
            job_label: None,
            sample_limit: None,
        };
        assert_eq!(job.operator_name(), "serviceMonitor/web/front.end/1");
        assert_eq!(job.file_name(), "serviceMonitor_web_front.end_1.json");
        assert_eq!(job.default_job("front"), "front");
    }
}
