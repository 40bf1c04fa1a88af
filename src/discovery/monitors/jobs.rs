//! The pure view: monitor objects → the jobs promfed can scrape through
//! the API server's proxy, and a note for everything it cannot (a field
//! that needs an in-cluster Secret, a rule promtool would refuse, a name
//! that could leave a path or a YAML string). Nothing here fails: one bad
//! monitor is a note, and the others go on.

use std::collections::BTreeMap;

use super::objects::{Endpoint, IntOrString, Monitor, RelabelConfig, Selector};
use crate::config::duration::PromDuration;
use crate::config::label_selector::{Expression, LabelSelector, Operator};
use crate::config::monitors::{
    MAX_ENDPOINTS, MAX_MONITORS, MAX_RULES, MonitorJob, MonitorKind, MonitorPort, Monitors,
    TargetNamespaces,
};
use crate::config::names;
use crate::config::relabel::{RawRelabel, Relabel, Stage};
use crate::config::values::is_plain_path;

/// The jobs of `monitors` that `[monitors]` selects, sorted by name, and
/// the notes on what was skipped.
pub fn jobs(wanted: &Monitors, monitors: &[Monitor]) -> (Vec<MonitorJob>, Vec<String>) {
    let mut notes = Vec::new();
    let mut selected: Vec<&Monitor> = Vec::new();
    for m in monitors {
        if !(names::is_label(&m.metadata.namespace) && names::is_subdomain(&m.metadata.name)) {
            notes.push(format!(
                "a {} named {} in namespace {} is skipped: not a Kubernetes name",
                m.kind.word(),
                shown(&m.metadata.name),
                shown(&m.metadata.namespace)
            ));
            continue;
        }
        let in_scope =
            wanted.namespaces.is_empty() || wanted.namespaces.contains(&m.metadata.namespace);
        let labelled = wanted
            .selector
            .iter()
            .all(|(k, v)| m.metadata.labels.get(k) == Some(v));
        if in_scope && labelled {
            selected.push(m);
        }
    }
    selected.sort_by(|a, b| key(a).cmp(&key(b)));
    selected.dedup_by(|a, b| key(a) == key(b));
    if selected.len() > MAX_MONITORS {
        notes.push(format!(
            "{} monitors, more than the {MAX_MONITORS} promfed takes per cluster: {} skipped, from {}",
            selected.len(),
            selected.len() - MAX_MONITORS,
            name_of(selected[MAX_MONITORS])
        ));
        selected.truncate(MAX_MONITORS);
    }
    let mut all = Vec::new();
    for m in selected {
        monitor_jobs(m, wanted, &mut all, &mut notes);
    }
    (all, notes)
}

fn key(m: &Monitor) -> (MonitorKind, &str, &str) {
    (m.kind, &m.metadata.namespace, &m.metadata.name)
}

/// `serviceMonitor/<ns>/<name>`: only for names already checked.
fn name_of(m: &Monitor) -> String {
    format!(
        "{}/{}/{}",
        m.kind.word(),
        m.metadata.namespace,
        m.metadata.name
    )
}

/// A value from the server, safe in a note: escaped, and short.
fn shown(s: &str) -> String {
    let mut out = format!("{s:?}");
    if out.len() > 80 {
        let cut = (0..=77)
            .rev()
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// What every endpoint of one monitor shares.
struct Shared {
    selector: LabelSelector,
    target_namespaces: TargetNamespaces,
    job_label: Option<String>,
}

fn monitor_jobs(
    m: &Monitor,
    wanted: &Monitors,
    out: &mut Vec<MonitorJob>,
    notes: &mut Vec<String>,
) {
    let name = name_of(m);
    let shared = match shared(m, wanted) {
        Ok(s) => s,
        Err(why) => {
            notes.push(format!("{name} is skipped: {why}"));
            return;
        }
    };
    let endpoints = m.endpoints();
    if endpoints.len() > MAX_ENDPOINTS {
        notes.push(format!(
            "{name}: {} endpoints, more than the {MAX_ENDPOINTS} taken; the rest are skipped",
            endpoints.len()
        ));
    }
    for (index, e) in endpoints.iter().enumerate().take(MAX_ENDPOINTS) {
        match endpoint_job(m, &shared, index, e) {
            Ok(job) => out.push(job),
            Err(why) => notes.push(format!("{name}/{index} is skipped: {why}")),
        }
    }
}

fn shared(m: &Monitor, wanted: &Monitors) -> Result<Shared, String> {
    let selector = selector(&m.spec.selector)?;
    let ns = &m.spec.namespace_selector;
    let target_namespaces = if ns.any {
        TargetNamespaces::Any
    } else if ns.match_names.is_empty() {
        TargetNamespaces::Names(vec![m.metadata.namespace.clone()])
    } else {
        if let Some(bad) = ns.match_names.iter().find(|n| !names::is_label(n)) {
            return Err(format!(
                "namespaceSelector names {}, not a namespace",
                shown(bad)
            ));
        }
        let mut names = ns.match_names.clone();
        names.sort();
        names.dedup();
        TargetNamespaces::Names(names)
    };
    // Targets are found only where [monitors] looks.
    if let TargetNamespaces::Names(names) = &target_namespaces {
        if !wanted.namespaces.is_empty() && !names.iter().any(|n| wanted.namespaces.contains(n)) {
            return Err(format!(
                "its targets are in {}, where [monitors] namespaces does not look",
                names.join(", ")
            ));
        }
    }
    let job_label = match &m.spec.job_label {
        None => None,
        Some(l) if l.is_empty() => None,
        Some(l) => {
            crate::config::exporter::label_pair(l, "")
                .map_err(|_| format!("jobLabel {} is not a label key", shown(l)))?;
            Some(l.clone())
        }
    };
    Ok(Shared {
        selector,
        target_namespaces,
        job_label,
    })
}

fn selector(s: &Selector) -> Result<LabelSelector, String> {
    let mut expressions = Vec::new();
    for r in &s.match_expressions {
        let operator = Operator::parse(&r.operator).ok_or_else(|| {
            format!(
                "selector operator {} is not In, NotIn, Exists or DoesNotExist",
                shown(&r.operator)
            )
        })?;
        expressions.push(Expression {
            key: r.key.clone(),
            operator,
            values: r.values.clone(),
        });
    }
    LabelSelector::new(s.match_labels.clone(), expressions)
        .map_err(|e| format!("its selector: {}", e.escape_debug()))
}

fn endpoint_job(
    m: &Monitor,
    shared: &Shared,
    index: usize,
    e: &Endpoint,
) -> Result<MonitorJob, String> {
    unsupported(e)?;
    let interval = duration(e.interval.as_deref(), "interval")?;
    let timeout = duration(e.scrape_timeout.as_deref(), "scrapeTimeout")?;
    if let (Some(i), Some(t)) = (&interval, &timeout) {
        if t.as_duration() > i.as_duration() {
            return Err(format!("scrapeTimeout {t} is longer than interval {i}"));
        }
    }
    Ok(MonitorJob {
        kind: m.kind,
        namespace: m.metadata.namespace.clone(),
        name: m.metadata.name.clone(),
        index,
        selector: shared.selector.clone(),
        target_namespaces: shared.target_namespaces.clone(),
        port: port(m.kind, e)?,
        path: path(e.path.as_deref())?,
        https: https(e.scheme.as_deref())?,
        params: params(&e.params)?,
        interval,
        timeout,
        honor_labels: e.honor_labels.unwrap_or(false),
        relabelings: rules(&e.relabelings, Stage::Target, "relabelings")?,
        metric_relabelings: rules(&e.metric_relabelings, Stage::Metric, "metricRelabelings")?,
        job_label: shared.job_label.clone(),
        sample_limit: m.spec.sample_limit.filter(|n| *n > 0),
    })
}

/// What cannot work through the API server's proxy: the proxy strips the
/// client's credentials (kubernetes/kubernetes#38775), promfed reads no
/// in-cluster Secret, and the proxy is the only way in.
fn unsupported(e: &Endpoint) -> Result<(), String> {
    let mut found = Vec::new();
    for (present, field) in [
        (e.bearer_token_secret.is_some(), "bearerTokenSecret"),
        (e.bearer_token_file.is_some(), "bearerTokenFile"),
        (e.basic_auth.is_some(), "basicAuth"),
        (e.authorization.is_some(), "authorization"),
        (e.oauth2.is_some(), "oauth2"),
        (e.proxy_url.is_some(), "proxyUrl"),
        (
            e.tls_config.as_ref().is_some_and(|t| t.refers_to_files()),
            "tlsConfig with certificates or keys",
        ),
    ] {
        if present {
            found.push(field);
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} cannot work through the API server's proxy (it strips credentials, and promfed reads no in-cluster Secret)",
        found.join(", ")
    ))
}

fn duration(text: Option<&str>, field: &str) -> Result<Option<PromDuration>, String> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            PromDuration::parse(t).map_err(|_| format!("{field} {} is not a duration", shown(t)))
        })
        .transpose()
}

fn port(kind: MonitorKind, e: &Endpoint) -> Result<MonitorPort, String> {
    let number = |n: i64| {
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(MonitorPort::Number)
            .ok_or_else(|| format!("port {n} is not a port number"))
    };
    let name = |n: &str| {
        if n.len() <= 63 && names::is_label(n) {
            Ok(MonitorPort::Name(n.to_string()))
        } else {
            Err(format!("port {} is not a port name", shown(n)))
        }
    };
    match (kind, e.port.as_deref().filter(|p| !p.is_empty()), &e.port_number, &e.target_port) {
        (_, Some(p), _, _) => name(p),
        (MonitorKind::Pod, None, Some(n), _) => number(*n),
        (_, None, _, Some(IntOrString::Int(n))) => number(*n),
        (_, None, _, Some(IntOrString::String(p))) if p.parse::<i64>().is_ok() => {
            number(p.parse().unwrap_or(0))
        }
        (MonitorKind::Pod, None, _, Some(IntOrString::String(p))) => name(p),
        (MonitorKind::Service, None, _, Some(IntOrString::String(_))) => Err(
            "targetPort by name is a container port's name, which EndpointSlices do not carry: name the Service port in `port`".into(),
        ),
        _ => Err("it names no port".into()),
    }
}

fn path(p: Option<&str>) -> Result<String, String> {
    match p.filter(|p| !p.is_empty()) {
        None => Ok("/metrics".into()),
        Some(p) if p.starts_with('/') && p.len() <= 256 && is_plain_path(p) => Ok(p.to_string()),
        Some(p) => Err(format!(
            "path {} is not a plain path (it goes into a proxy path)",
            shown(p)
        )),
    }
}

fn https(scheme: Option<&str>) -> Result<bool, String> {
    match scheme.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("http") => Ok(false),
        Some("https") => Ok(true),
        Some(_) => Err(format!(
            "scheme {} is neither http nor https",
            shown(scheme.unwrap_or_default())
        )),
    }
}

fn params(p: &BTreeMap<String, Vec<String>>) -> Result<BTreeMap<String, Vec<String>>, String> {
    let size: usize = p
        .iter()
        .map(|(k, v)| k.len() + v.iter().map(String::len).sum::<usize>())
        .sum();
    if size > 4096 || p.keys().any(String::is_empty) {
        return Err("params larger than 4 KiB, or one without a name".into());
    }
    Ok(p.clone())
}

fn rules(rules: &[RelabelConfig], stage: Stage, field: &str) -> Result<Vec<Relabel>, String> {
    if rules.len() > MAX_RULES {
        return Err(format!(
            "{} {field}, more than the {MAX_RULES} taken",
            rules.len()
        ));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            RawRelabel {
                source_labels: r.source_labels.clone(),
                separator: r.separator.clone(),
                target_label: r.target_label.clone(),
                regex: r.regex.clone(),
                modulus: r.modulus,
                replacement: r.replacement.clone(),
                action: r.action.clone(),
            }
            .validate(stage)
            .map_err(|why| format!("{field}[{i}]: {}", why.escape_debug()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::decode;

    fn monitors(json: serde_json::Value) -> Vec<Monitor> {
        decode::from_value(&json).unwrap()
    }

    fn all() -> Monitors {
        Monitors {
            namespaces: vec![],
            selector: vec![],
        }
    }

    #[test]
    fn each_endpoint_is_a_job_named_as_the_operator_names_it() {
        let m = monitors(serde_json::json!([
            {"metadata": {"name": "web", "namespace": "shop", "labels": {"release": "prom"}},
             "spec": {"jobLabel": "app.kubernetes.io/name", "selector": {"matchLabels": {"app": "web"}},
                      "endpoints": [{"port": "http", "interval": "15s", "scrapeTimeout": "10s", "honorLabels": true},
                                    {"targetPort": 9102, "path": "/stats", "scheme": "HTTPS", "params": {"format": ["prometheus"]},
                                     "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
                                     "metricRelabelings": [{"action": "drop", "regex": "go_.*", "sourceLabels": ["__name__"]}]}],
                      "sampleLimit": 1000}},
            {"promfedKind": "Pod", "metadata": {"name": "agent", "namespace": "ops"},
             "spec": {"namespaceSelector": {"any": true},
                      "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["agent"]}]},
                      "podMetricsEndpoints": [{"port": "metrics"}, {"portNumber": 8080}]}},
        ]));
        let (jobs, notes) = jobs(&all(), &m);
        assert!(notes.is_empty(), "{notes:?}");
        let names: Vec<String> = jobs.iter().map(MonitorJob::operator_name).collect();
        assert_eq!(
            names,
            [
                "serviceMonitor/shop/web/0",
                "serviceMonitor/shop/web/1",
                "podMonitor/ops/agent/0",
                "podMonitor/ops/agent/1"
            ]
        );
        let (web0, web1, agent1) = (&jobs[0], &jobs[1], &jobs[3]);
        assert_eq!(web0.port, MonitorPort::Name("http".into()));
        assert!(web0.honor_labels && !web0.https);
        assert_eq!(web0.job_label.as_deref(), Some("app.kubernetes.io/name"));
        assert_eq!(
            web0.target_namespaces,
            TargetNamespaces::Names(vec!["shop".into()])
        );
        assert_eq!(web1.port, MonitorPort::Number(9102));
        assert!(web1.https && web1.path == "/stats");
        assert_eq!(web1.relabelings[0].action, "replace");
        assert_eq!(web1.metric_relabelings[0].action, "drop");
        assert_eq!(web1.sample_limit, Some(1000));
        assert_eq!(agent1.port, MonitorPort::Number(8080));
        assert_eq!(agent1.target_namespaces, TargetNamespaces::Any);
    }

    #[test]
    fn what_cannot_work_through_the_proxy_is_skipped_and_named() {
        let m = monitors(serde_json::json!([
            {"metadata": {"name": "secure", "namespace": "a"},
             "spec": {"endpoints": [{"port": "web", "bearerTokenSecret": {"name": "tok", "key": "t"}},
                                    {"port": "web", "tlsConfig": {"ca": {"secret": {"name": "ca"}}}},
                                    {"port": "web", "tlsConfig": {"insecureSkipVerify": true}},
                                    {"port": "web", "relabelings": [{"targetLabel": "__address__", "replacement": "evil:80"}]},
                                    {"port": "web", "metricRelabelings": [{"action": "drop", "regex": "(bad"}]},
                                    {"port": "web", "path": "/../../secrets"}]}},
        ]));
        let (jobs, notes) = jobs(&all(), &m);
        let kept: Vec<usize> = jobs.iter().map(|j| j.index).collect();
        assert_eq!(
            kept,
            [2],
            "only the one without secrets or bad rules: {notes:?}"
        );
        assert!(
            notes[0].starts_with("serviceMonitor/a/secure/0 is skipped: bearerTokenSecret"),
            "{notes:?}"
        );
        assert!(notes[1].contains("/1 is skipped: tlsConfig"), "{notes:?}");
        assert!(
            notes[2].contains("/3 is skipped: relabelings[0]: it sets __address__"),
            "{notes:?}"
        );
        assert!(
            notes[3].contains("/4 is skipped: metricRelabelings[0]: a regex that does not compile"),
            "{notes:?}"
        );
        assert!(notes[4].contains("/5 is skipped: path"), "{notes:?}");
        assert!(
            !notes.join("").contains("tok"),
            "no Secret's name is needed to say so"
        );
    }

    #[test]
    fn hostile_names_and_too_many_monitors_are_notes_and_the_rest_go_on() {
        let mut list = vec![
            serde_json::json!({"metadata": {"name": "a/b", "namespace": "x"}, "spec": {"endpoints": [{"port": "w"}]}}),
            serde_json::json!({"metadata": {"name": "nl\nx", "namespace": "x"}, "spec": {"endpoints": [{"port": "w"}]}}),
            serde_json::json!({"metadata": {"name": "lbl", "namespace": "x"}, "spec": {"selector": {"matchLabels": {"a\nb": "c"}}, "endpoints": [{"port": "w"}]}}),
            serde_json::json!({"metadata": {"name": "expr", "namespace": "x"}, "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}, "endpoints": [{"port": "w"}]}}),
        ];
        for i in 0..MAX_MONITORS + 3 {
            list.push(serde_json::json!({"metadata": {"name": format!("m{i:04}"), "namespace": "y"}, "spec": {"endpoints": [{"port": "w"}]}}));
        }
        let (jobs, notes) = jobs(&all(), &monitors(serde_json::Value::Array(list)));
        assert_eq!(
            jobs.len(),
            MAX_MONITORS - 2,
            "two good ones' places went to lbl and expr"
        );
        assert!(notes.iter().all(|n| !n.contains('\n')), "{notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("\"a/b\"") && n.contains("not a Kubernetes name"))
        );
        assert!(notes.iter().any(|n| n.contains("\"nl\\nx\"")));
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("serviceMonitor/x/lbl is skipped: its selector"))
        );
        assert!(notes.iter().any(|n| n.contains("Like")));
        assert!(
            notes
                .iter()
                .any(|n| n.contains(&format!("{} monitors, more than", MAX_MONITORS + 5)))
        );
    }

    #[test]
    fn the_section_narrows_by_namespace_and_label() {
        let m = monitors(serde_json::json!([
            {"metadata": {"name": "a", "namespace": "in", "labels": {"release": "prom"}}, "spec": {"endpoints": [{"port": "w"}]}},
            {"metadata": {"name": "b", "namespace": "in"}, "spec": {"endpoints": [{"port": "w"}]}},
            {"metadata": {"name": "c", "namespace": "out", "labels": {"release": "prom"}}, "spec": {"endpoints": [{"port": "w"}]}},
            {"metadata": {"name": "d", "namespace": "in", "labels": {"release": "prom"}}, "spec": {"namespaceSelector": {"matchNames": ["out"]}, "endpoints": [{"port": "w"}]}},
        ]));
        let wanted = Monitors {
            namespaces: vec!["in".into()],
            selector: vec![("release".into(), "prom".into())],
        };
        let (jobs, notes) = jobs(&wanted, &m);
        assert_eq!(
            jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("where [monitors] namespaces does not look"));
    }
}
