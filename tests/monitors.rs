//! `[monitors]`: ServiceMonitors and PodMonitors listed and watched
//! through the fake API server, each endpoint a job through the pod proxy,
//! UP in Debian 12's Prometheus 2.42 under the daemon; a monitor added at
//! runtime becomes a job without a restart, one deleted goes away; what
//! cannot work through the proxy, and hostile objects, are skipped and
//! named; a cluster without the CRDs costs one list each and no watch.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);
const CLUSTER: &str = "edge";
const WEB_SERIES: &str = "# TYPE web_requests_total counter\nweb_requests_total 5\n# TYPE go_goroutines gauge\ngo_goroutines 9\n";
const AGENT_SERIES: &str = "# TYPE agent_up gauge\nagent_up 1\n";

fn service_monitor(ns: &str, name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": ns, "labels": {"release": "prom"}}, "spec": spec})
}

/// Six monitors of the kinds the README lists, and a hostile one.
fn monitors() -> Value {
    json!({
        "servicemonitors": [
            service_monitor("shop", "web", json!({
                "selector": {"matchLabels": {"app": "web"}},
                "endpoints": [{"port": "http", "interval": "5s",
                    "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
                    "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}]}]})),
            service_monitor("shop", "web-numeric", json!({
                "jobLabel": "app",
                "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]},
                                                  {"key": "legacy", "operator": "DoesNotExist"}]},
                "endpoints": [{"targetPort": 8080, "interval": "5s"}]})),
            service_monitor("ops", "any-web", json!({
                "namespaceSelector": {"any": true},
                "selector": {"matchLabels": {"app": "web"}},
                "endpoints": [{"port": "http", "interval": "5s"}]})),
            service_monitor("shop", "secure", json!({
                "selector": {"matchLabels": {"app": "web"}},
                "endpoints": [{"port": "http", "bearerTokenSecret": {"name": "web-token", "key": "token"}}]})),
            service_monitor("shop", "bad-regex", json!({
                "selector": {"matchLabels": {"app": "web"}},
                "endpoints": [{"port": "http", "metricRelabelings": [{"action": "drop", "regex": "(unclosed"}]}]})),
            service_monitor("shop", "bad/name\nx", json!({"endpoints": [{"port": "http"}]})),
        ],
        "podmonitors": [
            service_monitor("ops", "agent", json!({
                "selector": {"matchLabels": {"app": "agent"}},
                "podMetricsEndpoints": [{"port": "metrics", "interval": "5s"}]})),
        ],
    })
}

struct Shop {
    fake: FakeCluster,
    _web: TextExporter,
    _agent: TextExporter,
    _node_exporter: NodeExporter,
}

fn exporter(
    ns: &str,
    service: &str,
    app: &str,
    port: Value,
    upstream: u16,
    pods: &[(&str, &str)],
) -> Value {
    json!({
        "namespace": ns, "service": service, "labels": {"app": app}, "ports": [port],
        "upstream": format!("127.0.0.1:{upstream}"),
        "pods": pods.iter().map(|(name, node)| json!({"name": name, "node": node})).collect::<Vec<_>>(),
    })
}

impl Shop {
    fn start(setup: &Setup, shape: &str, with_crds: bool) -> Shop {
        let root = setup.root.path();
        let node_exporter = NodeExporter::start(root);
        let web = TextExporter::start(root, "web", WEB_SERIES);
        let agent = TextExporter::start(root, "agent", AGENT_SERIES);
        let fake = FakeCluster::start(root, CLUSTER, &["n-1", "n-2"], &node_exporter);
        let mut state = fake.current_state();
        state["shape"] = json!(shape);
        state["exporters"] = json!([
            exporter(
                "shop",
                "web",
                "web",
                json!({"name": "http", "port": 8080}),
                web.port,
                &[("web-a", "n-1"), ("web-b", "n-2")]
            ),
            exporter(
                "ops",
                "agent",
                "agent",
                json!({"name": "metrics", "port": 9400}),
                agent.port,
                &[("agent-x", "n-2")]
            ),
        ]);
        if with_crds {
            state["monitors"] = monitors();
        }
        fake.set_state(state);
        setup.add_cluster(&fake);
        setup.append(&format!("etc/promfed.d/{CLUSTER}.toml"), "\n[monitors]\n");
        Shop {
            fake,
            _web: web,
            _agent: agent,
            _node_exporter: node_exporter,
        }
    }
}

fn pool(name: &str) -> String {
    format!("promfed/{CLUSTER}/{name}/")
}

#[test]
fn monitors_are_jobs_up_in_prometheus_and_follow_changes_without_a_restart() {
    let setup = Setup::new();
    let shop = Shop::start(&setup, "null", true);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.relist_rarely();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    let said = stdout(&out);
    assert!(said.contains("4 monitor jobs"), "{said}");
    assert!(said.contains("serviceMonitor/shop/secure/0 is skipped: bearerTokenSecret cannot work through the API server's proxy"), "{said}");
    assert!(said.contains("serviceMonitor/shop/bad-regex/0 is skipped: metricRelabelings[0]: a regex that does not compile"), "{said}");
    assert!(
        said.contains("\"bad/name\\nx\"") && said.contains("not a Kubernetes name"),
        "{said}"
    );
    assert!(!said.contains("web-token"), "no Secret's name: {said}");

    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    let web = prometheus.wait_targets_up(&pool("serviceMonitor/shop/web"), 2);
    let mut seen: Vec<(String, String, String)> = web
        .iter()
        .map(|t| {
            let l = &t["labels"];
            (
                l["pod"].as_str().unwrap().into(),
                l["node"].as_str().unwrap_or("").into(),
                l["job"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("web-a".into(), "n-1".into(), "web".into()),
            ("web-b".into(), "n-2".into(), "web".into())
        ],
        "the relabeling made `node`, and `job` is the Service's name"
    );
    assert!(
        web[0]["scrapeUrl"]
            .as_str()
            .unwrap()
            .contains("/api/v1/namespaces/shop/pods/web-"),
        "{web:?}"
    );
    let numeric = prometheus.wait_targets_up(&pool("serviceMonitor/shop/web-numeric"), 2);
    assert!(
        numeric
            .iter()
            .all(|t| t["labels"]["job"] == "web" && t["labels"]["endpoint"] == "http"),
        "{numeric:?}"
    );
    prometheus.wait_targets_up(&pool("serviceMonitor/ops/any-web"), 2);
    let agent = prometheus.wait_targets_up(&pool("podMonitor/ops/agent"), 1);
    assert_eq!(agent[0]["labels"]["job"], "ops/agent");
    let kept = wait_for("the web exporter's series", LONG, || {
        let found = prometheus.query("web_requests_total{job=\"web\",cluster=\"edge\"}");
        (found.len() >= 2).then_some(found)
    });
    assert!(kept.iter().all(|s| s["metric"]["cluster"] == CLUSTER));
    // Only serviceMonitor/shop/web's targets have `node` (its relabeling),
    // and its metricRelabeling drops go_*.
    wait_for("web's series with node", LONG, || {
        (prometheus.query("web_requests_total{node!=\"\"}").len() == 2).then_some(())
    });
    assert!(prometheus.query("go_goroutines{node!=\"\"}").is_empty());
    assert!(
        !prometheus.query("go_goroutines{job=\"web\"}").is_empty(),
        "the other jobs keep it"
    );

    let status = daemon.wait_status("the skipped monitors", LONG, |s| {
        s["clusters"][CLUSTER]["discovery"]["monitors"]["jobs"] == 4
    });
    let skipped = status["clusters"][CLUSTER]["discovery"]["monitors"]["skipped"].to_string();
    assert!(
        skipped.contains("serviceMonitor/shop/secure/0 is skipped: bearerTokenSecret"),
        "{skipped}"
    );
    assert_eq!(
        daemon.log().matches("secure/0 is skipped").count(),
        1,
        "said once in the journal:\n{}",
        daemon.log()
    );

    // Added at runtime: a job, by watch and a reload, no restart.
    let lists = shop.fake.requests("list_servicemonitors");
    let mut state = shop.fake.current_state();
    state["monitors"]["servicemonitors"]
        .as_array_mut()
        .unwrap()
        .push(service_monitor(
            "ops",
            "late",
            json!({
        "namespaceSelector": {"matchNames": ["ops"]},
        "selector": {"matchLabels": {"app": "agent"}},
        "endpoints": [{"port": "metrics", "interval": "5s"}]}),
        ));
    shop.fake.set_state(state);
    prometheus.wait_targets_up(&pool("serviceMonitor/ops/late"), 1);
    // Deleted: its job goes.
    let mut state = shop.fake.current_state();
    state["monitors"]["servicemonitors"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["metadata"]["name"] != "any-web");
    shop.fake.set_state(state);
    wait_for("serviceMonitor/ops/any-web gone", LONG, || {
        let pools: Vec<Value> = prometheus.active_targets();
        (!pools.iter().any(|t| {
            t["scrapePool"]
                .as_str()
                .unwrap_or("")
                .starts_with(&pool("serviceMonitor/ops/any-web"))
        }))
        .then_some(())
    });
    assert_eq!(
        shop.fake.requests("list_servicemonitors"),
        lists,
        "changes came by watch, not relists"
    );
    prometheus.wait_targets_up(&pool("serviceMonitor/shop/web"), 2);
    daemon.drain();
}

#[test]
fn a_cluster_without_the_crds_is_one_line_and_no_watch() {
    let setup = Setup::new();
    let shop = Shop::start(&setup, "omit", false);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.relist_rarely();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("serves no monitoring.coreos.com/v1"),
        "{}",
        stdout(&out)
    );
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up(&format!("promfed/{CLUSTER}/kubelet"), 2);
    wait_for("the daemon's own lists", LONG, || {
        (shop.fake.requests("list_podmonitors") >= 2).then_some(())
    });
    let counts = shop.fake.request_counts();
    assert_eq!(
        counts["list_servicemonitors"], 2,
        "apply and the daemon's start: {counts}"
    );
    assert_eq!(counts["list_podmonitors"], 2, "{counts}");
    assert!(
        counts.get("watch_servicemonitors").is_none() && counts.get("watch_podmonitors").is_none(),
        "{counts}"
    );
    assert_eq!(
        daemon
            .log()
            .matches("serves no monitoring.coreos.com/v1")
            .count(),
        1,
        "{}",
        daemon.log()
    );
    daemon.drain();
}

/// doctor names each skipped monitor endpoint and the field that skips it,
/// per cluster, from the notes status.json shows; the jobs found are a
/// line of their own.
#[test]
fn doctor_names_each_skipped_monitor_field() {
    let setup = Setup::new();
    let shop = Shop::start(&setup, "null", true);
    let mut state = shop.fake.current_state();
    state["monitors"]["servicemonitors"]
        .as_array_mut()
        .unwrap()
        .push(service_monitor(
            "shop",
            "basic",
            json!({"selector": {"matchLabels": {"app": "web"}},
                   "endpoints": [{"port": "http", "basicAuth": {"username": {"name": "s", "key": "u"}}},
                                 {"port": "http", "tlsConfig": {"ca": {"secret": {"name": "s", "key": "ca"}}}}]}),
        ));
    shop.fake.set_state(state);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let out = setup.promfed(&["doctor", CLUSTER]);
    let report = stdout(&out);
    let line = |needle: &str| {
        report
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{report}"))
            .to_string()
    };
    assert!(
        line("4 monitor jobs").starts_with("  ✔ monitors: "),
        "{report}"
    );
    let heading = report
        .find(&format!("cluster {CLUSTER}\n"))
        .unwrap_or_else(|| panic!("no heading for {CLUSTER}:\n{report}"));
    for needle in [
        "serviceMonitor/shop/secure/0 is skipped: bearerTokenSecret",
        "serviceMonitor/shop/basic/0 is skipped: basicAuth",
        "serviceMonitor/shop/basic/1 is skipped: tlsConfig",
        "serviceMonitor/shop/bad-regex/0 is skipped: metricRelabelings[0]",
    ] {
        let l = line(needle);
        assert!(l.starts_with("  ! monitors: "), "{l}\n{report}");
        assert!(report.find(&l).unwrap() > heading, "{report}");
    }
    // The same notes as the daemon's status.json.
    assert_exit(&setup.promfed(&["apply"]), 0);
    let mut daemon = setup.daemon();
    let status = daemon.wait_status("the skipped monitors", LONG, |s| {
        s["clusters"][CLUSTER]["discovery"]["monitors"]["skipped"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    for note in status["clusters"][CLUSTER]["discovery"]["monitors"]["skipped"]
        .as_array()
        .unwrap()
    {
        let note = note.as_str().unwrap();
        assert!(
            report.contains(note),
            "{note} is not in doctor's report:\n{report}"
        );
    }
    daemon.drain();
}

/// A cluster whose monitors are hostile (more than the 500 kept, a regex
/// that does not compile, a name with a line break) beside a healthy one:
/// the healthy cluster's targets are applied and UP, and the hostile one's
/// other jobs too.
#[test]
fn hostile_monitors_leave_a_healthy_cluster_beside_them_alone() {
    let setup = Setup::new();
    let shop = Shop::start(&setup, "omit", true);
    let mut state = shop.fake.current_state();
    let list = state["monitors"]["servicemonitors"].as_array_mut().unwrap();
    for i in 0..505 {
        list.push(service_monitor(
            "shop",
            &format!("flood-{i:04}"),
            // Jobs, but no pod matches: what is counted is the monitors.
            json!({"selector": {"matchLabels": {"app": "nothing"}}, "endpoints": [{"port": "http"}]}),
        ));
    }
    shop.fake.set_state(state);
    let calm_exporter = NodeExporter::start(setup.root.path());
    let calm = FakeCluster::start(setup.root.path(), "calm", &["c-1", "c-2"], &calm_exporter);
    setup.add_cluster(&calm);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    let said = stdout(&out);
    assert!(
        said.contains("511 monitors, more than the 500 promfed takes per cluster"),
        "{said}"
    );
    for job in ["kubelet", "cadvisor", "node-exporter"] {
        let file = setup.path(&format!("state/targets/calm/{job}.json"));
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            text.matches("\"targets\"").count(),
            2,
            "{}: {text}",
            file.display()
        );
    }
    prometheus.wait_targets_up("promfed/calm/kubelet", 2);
    prometheus.wait_targets_up("promfed/calm/node-exporter", 2);
    prometheus.wait_targets_up("promfed/calm/apiserver", 1);
    // The hostile cluster's own built-in jobs go on.
    prometheus.wait_targets_up(&format!("promfed/{CLUSTER}/kubelet"), 2);
    let config = std::fs::read_to_string(setup.path("prometheus/prometheus.yml")).unwrap();
    assert!(
        !config.contains("bad/name") && !config.contains("(unclosed"),
        "{config}"
    );
}
