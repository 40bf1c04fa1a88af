//! `[exporter.<job>]` of a cluster file: any exporter in the cluster, a
//! job of its own whose `job` label is the table's name, reached through
//! the API server's pod proxy (per endpoint) or service proxy (per
//! service). A table named after a preset (`presets`) needs no keys.
//!
//! `Exporter` is the whole job, validated; discovery and render read
//! nothing else, so jobs that come from elsewhere later (ServiceMonitors)
//! can be `Exporter`s too.

use std::collections::BTreeMap;
use std::ops::Range;

use regex::Regex;

use super::duration::PromDuration;
use super::limits::{self, Limits, RawLimits};
use super::names;
use super::presets::{self, Preset};
use super::toml_fields::{Fields, Problems, Spanned, StringOrInteger};
use super::values::{self, Key, PortRef};

/// One exporter job, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exporter {
    /// The `job` label, and the last part of the Prometheus job name and
    /// of the targets file.
    pub job: String,
    /// Where its Service is; every namespace listed is searched.
    pub namespaces: Vec<String>,
    pub selection: Selection,
    /// Any of these ports (a preset offers a name and a number).
    pub ports: Vec<PortRef>,
    pub per: Per,
    /// Per service, unless discovery finds its pods are shards (a preset's
    /// `detect_shards`, `per` unwritten): then per endpoint.
    pub detect_shards: bool,
    /// Starts with `/`.
    pub path: String,
    /// The proxy's `https:` segment: the exporter serves TLS.
    pub https: bool,
    pub params: BTreeMap<String, Vec<String>>,
    pub scrape_interval: Option<PromDuration>,
    /// As written; `limit_defaults` fill in the rest.
    pub limits: Limits,
    /// Its preset's, else those of any exporter.
    pub limit_defaults: limits::Defaults,
    pub honor_labels: bool,
    /// Metric names kept, or dropped (anchored RE2, as Prometheus reads them).
    pub keep_metrics: Option<String>,
    pub drop_metrics: Option<String>,
}

/// Which Service(s): by name, or by their labels, which the EndpointSlice
/// controller copies onto every slice of the Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selection {
    Service(String),
    /// Equality terms, all of which must hold.
    Selector(Vec<(String, String)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Per {
    /// Every ready endpoint, through the pod proxy.
    Endpoint,
    /// One target per Service, through the service proxy.
    Service,
}

/// `job` labels promfed's own jobs use, and the slugs of their job names:
/// an exporter may take neither.
pub const BUILT_IN: [&str; 7] = [
    "kubelet",
    "cadvisor",
    "apiserver",
    "node-exporter",
    "federate",
    "kubernetes-pods",
    "pods",
];

mod defaults {
    pub const ENABLED: bool = true;
    pub const PATH: &str = "/metrics";
    pub const HONOR_LABELS: bool = false;
}

/// One `[exporter.<job>]` as written.
pub struct RawExporter {
    job: Spanned<String>,
    header: Range<usize>,
    empty: bool,
    preset: Key,
    enabled: Option<Spanned<bool>>,
    namespace: Key,
    service: Key,
    selector: Option<Spanned<Vec<(String, String)>>>,
    /// Written, even with a bad value: then not also "missing".
    selector_written: bool,
    port: Option<Spanned<StringOrInteger>>,
    per: Key,
    path: Key,
    scheme: Key,
    params: Vec<(Spanned<String>, Vec<String>)>,
    scrape_interval: Key,
    limits: RawLimits,
    honor_labels: Option<Spanned<bool>>,
    keep_metrics: Key,
    drop_metrics: Key,
}

/// Every `[exporter.<job>]` of the file, as written.
pub fn read_all(root: &mut Fields, p: &mut Problems) -> Vec<RawExporter> {
    root.tables(p, "exporter")
        .into_iter()
        .map(|(job, mut t)| {
            let raw = RawExporter::read(job, &mut t, p);
            t.finish(p);
            raw
        })
        .collect()
}

/// The enabled exporters, sorted by job; `None` when any is invalid (each
/// problem reported).
pub fn validate_all(raws: Vec<RawExporter>, p: &mut Problems) -> Option<Vec<Exporter>> {
    let mut all = Vec::new();
    let mut ok = true;
    for raw in raws {
        match raw.validate(p) {
            Some(Some(e)) => all.push(e),
            Some(None) => {}
            None => ok = false,
        }
    }
    all.sort_by(|a, b| a.job.cmp(&b.job));
    ok.then_some(all)
}

impl RawExporter {
    fn read(job: Spanned<String>, t: &mut Fields, p: &mut Problems) -> RawExporter {
        let selector = if t.is_table_like("selector") {
            t.string_map(p, "selector").map(|pairs| Spanned {
                span: pairs.first().map_or(0..0, |(k, _)| k.span.clone()),
                value: pairs.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
            })
        } else {
            t.get::<String>(p, "selector")
                .and_then(|s| match parse_selector(&s.value) {
                    Ok(pairs) => Some(Spanned {
                        value: pairs,
                        span: s.span,
                    }),
                    Err(e) => {
                        p.at(s.span, &t.path("selector"), e);
                        None
                    }
                })
        };
        RawExporter {
            selector_written: t.is_written("selector"),
            header: t.span(),
            empty: t.is_empty(),
            preset: t.get(p, "preset"),
            enabled: t.get(p, "enabled"),
            namespace: t.get(p, "namespace"),
            service: t.get(p, "service"),
            selector,
            port: t.get(p, "port"),
            per: t.get(p, "per"),
            path: t.get(p, "path"),
            scheme: t.get(p, "scheme"),
            params: t.string_lists_map(p, "params").unwrap_or_default(),
            scrape_interval: t.get(p, "scrape_interval"),
            limits: RawLimits::read(t, p),
            honor_labels: t.get(p, "honor_labels"),
            keep_metrics: t.get(p, "keep_metrics"),
            drop_metrics: t.get(p, "drop_metrics"),
            job,
        }
    }

    fn key(&self, name: &str) -> String {
        format!("exporter.{}.{name}", self.job.value)
    }

    /// `Some(None)`: valid, and disabled.
    fn validate(mut self, p: &mut Problems) -> Option<Option<Exporter>> {
        let before = p.len();
        self.check_job(p);
        let preset = self.preset(p);
        let namespaces = self.namespaces(p, preset);
        let selection = self.selection(p, preset);
        let ports = self.ports(p, preset);
        let per = self.per(p, preset);
        let path = self.path(p);
        let https = self.https(p);
        let scrape_interval = self.interval(p);
        let limits = std::mem::take(&mut self.limits).validate(p, scrape_interval.as_ref());
        let keep_metrics = self.regex(p, "keep_metrics", &self.keep_metrics);
        let drop_metrics = self.regex(p, "drop_metrics", &self.drop_metrics);
        let params = self.params(p);
        if p.len() > before {
            return None;
        }
        if !self.enabled.as_ref().map_or(defaults::ENABLED, |b| b.value) {
            return Some(None);
        }
        Some(Some(Exporter {
            job: self.job.value.clone(),
            namespaces: namespaces?,
            selection: selection?,
            ports: ports?,
            per: per?,
            detect_shards: self.per.is_none() && preset.is_some_and(|p| p.detect_shards),
            path: path?,
            https: https?,
            params,
            scrape_interval,
            limits: limits?,
            limit_defaults: preset.map_or(limits::EXPORTER, |p| p.limits),
            honor_labels: self
                .honor_labels
                .as_ref()
                .map(|b| b.value)
                .or(preset.map(|p| p.honor_labels))
                .unwrap_or(defaults::HONOR_LABELS),
            keep_metrics,
            drop_metrics,
        }))
    }

    /// The job name is a label value, part of a file name and of the
    /// Prometheus job name; promfed's own are taken.
    fn check_job(&self, p: &mut Problems) {
        let job = &self.job.value;
        let key = format!("exporter.{job}");
        if !is_job_name(job) {
            p.at(
                self.job.span.clone(),
                &key,
                format!("`{job}` is not a job name promfed takes: 1 to 63 lowercase letters, digits, `-` or `_`, starting with a letter or digit"),
            );
        } else if BUILT_IN.contains(&job.as_str()) {
            p.at(
                self.job.span.clone(),
                &key,
                format!("`{job}` is the name of one of promfed's own jobs ({}): give this exporter another name", BUILT_IN.join(", ")),
            );
        }
    }

    /// The preset this table uses: the one `preset` names, else the one
    /// the table's own name is. A table with no keys whose name is no
    /// preset is a preset misspelt (an exporter of one's own needs at
    /// least its namespace), and is said so.
    fn preset(&self, p: &mut Problems) -> Option<Preset> {
        if let Some(named) = &self.preset {
            let found = presets::named(&named.value);
            if found.is_none() {
                p.at(
                    named.span.clone(),
                    &self.key("preset"),
                    format!(
                        "`{}` is no preset (presets: {})",
                        named.value,
                        presets::names()
                    ),
                );
            }
            return found;
        }
        let found = presets::named(&self.job.value);
        if found.is_none() && self.empty {
            p.at(
                self.job.span.clone(),
                &format!("exporter.{}", self.job.value),
                format!(
                    "`{}` is no preset (presets: {}): an exporter of your own needs `namespace`, `service` or `selector`, and `port`",
                    self.job.value,
                    presets::names()
                ),
            );
        }
        found
    }

    fn missing(&self, p: &mut Problems, key: &str, what: &str) {
        p.missing_in(
            self.header.clone(),
            &self.key(key),
            format!("missing: {what}"),
        );
    }

    fn namespaces(&self, p: &mut Problems, preset: Option<Preset>) -> Option<Vec<String>> {
        match (&self.namespace, preset) {
            (Some(_), _) => values::kubernetes_name(p, &self.key("namespace"), &self.namespace, "")
                .map(|n| vec![n]),
            (None, Some(preset)) => Some(preset.namespaces.iter().map(|n| n.to_string()).collect()),
            (None, None) => {
                if !self.empty {
                    self.missing(p, "namespace", "the namespace of the exporter's Service");
                }
                None
            }
        }
    }

    fn selection(&self, p: &mut Problems, preset: Option<Preset>) -> Option<Selection> {
        match (&self.service, &self.selector, preset) {
            (Some(_), Some(selector), _) => {
                p.at(
                    selector.span.clone(),
                    &self.key("selector"),
                    "give either `service` (the Service's name) or `selector` (its labels), not both",
                );
                None
            }
            (Some(_), None, _) => {
                values::kubernetes_name(p, &self.key("service"), &self.service, "")
                    .map(Selection::Service)
            }
            (None, Some(selector), _) => {
                if selector.value.is_empty() {
                    p.at(
                        selector.span.clone(),
                        &self.key("selector"),
                        "must hold at least one label (an empty selector would take every Service)",
                    );
                    return None;
                }
                for (k, v) in &selector.value {
                    if let Err(e) = label_pair(k, v) {
                        p.at(selector.span.clone(), &self.key("selector"), e);
                        return None;
                    }
                }
                Some(Selection::Selector(selector.value.clone()))
            }
            (None, None, Some(preset)) => Some(Selection::Selector(
                preset
                    .selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )),
            (None, None, None) => {
                if !self.empty && !self.selector_written {
                    self.missing(p, "service", "the exporter's Service: `service = \"NAME\"` or `selector = { LABEL = \"VALUE\" }`");
                }
                None
            }
        }
    }

    fn ports(&self, p: &mut Problems, preset: Option<Preset>) -> Option<Vec<PortRef>> {
        match (&self.port, preset) {
            (Some(_), _) => values::port(p, &self.key("port"), &self.port, 0).map(|p| vec![p]),
            (None, Some(preset)) => Some(preset.ports.iter().map(|p| p.to_ref()).collect()),
            (None, None) => {
                if !self.empty {
                    self.missing(p, "port", "the Service's port, by number or name");
                }
                None
            }
        }
    }

    fn per(&self, p: &mut Problems, preset: Option<Preset>) -> Option<Per> {
        match &self.per {
            None => Some(match preset {
                Some(preset) if !preset.per_endpoint => Per::Service,
                _ => Per::Endpoint,
            }),
            Some(s) => match s.value.as_str() {
                "endpoint" => Some(Per::Endpoint),
                "service" => Some(Per::Service),
                other => {
                    p.at(
                        s.span.clone(),
                        &self.key("per"),
                        format!("`{other}` is neither \"endpoint\" (each ready pod through the pod proxy) nor \"service\" (one target through the service proxy)"),
                    );
                    None
                }
            },
        }
    }

    fn path(&self, p: &mut Problems) -> Option<String> {
        let Some(s) = &self.path else {
            return Some(defaults::PATH.to_string());
        };
        if s.value.starts_with('/') && values::is_plain_path(&s.value) {
            Some(s.value.clone())
        } else {
            p.at(
                s.span.clone(),
                &self.key("path"),
                format!("`{}` is not a plain path: it starts with `/`, holds letters, digits and `/-._~`, and no `.` or `..` segment (it goes into a proxy path)", s.value),
            );
            None
        }
    }

    fn https(&self, p: &mut Problems) -> Option<bool> {
        match self.scheme.as_ref().map(|s| (s, s.value.as_str())) {
            None | Some((_, "http")) => Some(false),
            Some((_, "https")) => Some(true),
            Some((s, other)) => {
                p.at(
                    s.span.clone(),
                    &self.key("scheme"),
                    format!("`{other}` is neither \"http\" nor \"https\" (the scheme the exporter serves; the API server is always reached over https)"),
                );
                None
            }
        }
    }

    fn interval(&self, p: &mut Problems) -> Option<PromDuration> {
        let s = self.scrape_interval.as_ref()?;
        PromDuration::parse(&s.value)
            .map_err(|e| p.at(s.span.clone(), &self.key("scrape_interval"), e))
            .ok()
    }

    fn regex(&self, p: &mut Problems, name: &str, key: &Key) -> Option<String> {
        let s = key.as_ref()?;
        match Regex::new(&format!("^(?:{})$", s.value)) {
            Ok(_) => Some(s.value.clone()),
            Err(e) => {
                let first = e.to_string();
                let first = first.lines().last().unwrap_or_default().trim().to_string();
                p.at(
                    s.span.clone(),
                    &self.key(name),
                    format!("not a valid regular expression of metric names: {first}"),
                );
                None
            }
        }
    }

    fn params(&self, p: &mut Problems) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for (name, values) in &self.params {
            if name.value.is_empty() {
                p.at(
                    name.span.clone(),
                    &self.key("params"),
                    "a parameter needs a name",
                );
                continue;
            }
            out.insert(name.value.clone(), values.clone());
        }
        out
    }
}

/// 1 to 63 of lowercase letters, digits, `-` and `_`, starting with a
/// letter or digit: a `job` label, a file name, part of a job name.
fn is_job_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
}

/// `a=b,c=d` (or `==`), as `kubectl -l` writes equality terms; promfed
/// matches the labels itself, so only equality is taken.
pub fn parse_selector(text: &str) -> Result<Vec<(String, String)>, String> {
    if text.contains("!=") || text.contains('(') || text.contains('!') {
        return Err(format!(
            "`{text}`: only `label=value` terms are taken (all must hold); write the labels of the Service"
        ));
    }
    let mut pairs = Vec::new();
    for term in text.split(',') {
        let term = term.trim();
        let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) else {
            return Err(format!("`{term}` is not `label=value`"));
        };
        let (k, v) = (k.trim(), v.trim());
        label_pair(k, v)?;
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok(pairs)
}

/// A Kubernetes label key (`prefix/name` or `name`) and value.
pub fn label_pair(key: &str, value: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if prefix.is_some_and(|p| !names::is_subdomain(p)) || !is_label_part(name) || name.is_empty() {
        return Err(format!(
            "`{key}` is not a Kubernetes label key (an optional DNS prefix and `/`, then up to 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric)"
        ));
    }
    if !value.is_empty() && !is_label_part(value) {
        return Err(format!(
            "`{value}` (for `{key}`) is not a Kubernetes label value (up to 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric)"
        ));
    }
    Ok(())
}

fn is_label_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_take_equality_terms_only() {
        assert_eq!(
            parse_selector("k8s-app=kube-dns, app.kubernetes.io/part-of==dns").unwrap(),
            [
                ("k8s-app".to_string(), "kube-dns".to_string()),
                ("app.kubernetes.io/part-of".to_string(), "dns".to_string())
            ]
        );
        for bad in [
            "app!=x",
            "app in (a,b)",
            "!app",
            "app notin (x)",
            "app",
            "=x",
            "a=b=c",
            "Bad Key=x",
            "-a=b",
            "a=-b",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_names() {
        assert!(is_job_name("kube-state-metrics") && is_job_name("traefik_2"));
        assert!(
            !is_job_name("Traefik")
                && !is_job_name("-x")
                && !is_job_name("a/b")
                && !is_job_name("")
        );
    }
}
