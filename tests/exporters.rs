//! `[exporter.<job>]`: the kube-state-metrics and kube-dns presets and a
//! traefik of the operator's own, each a job of its own through the API
//! server's service or pod proxy, UP in real Prometheus in both discovery
//! modes; a target behind kube-rbac-proxy explained by doctor and status.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);
const CLUSTER: &str = "edge";
const KSM_SAMPLE: &str = include_str!("fixtures/exporters/kube-state-metrics.prom");
const COREDNS_SAMPLE: &str = include_str!("fixtures/exporters/coredns.prom");
const TRAEFIK_SERIES: &str = "# TYPE traefik_entrypoint_requests_total counter\ntraefik_entrypoint_requests_total{code=\"200\",entrypoint=\"web\",method=\"GET\",protocol=\"http\"} 7\n";

/// The three exporter jobs: two preset lines and the README's traefik.
const EXPORTER_TABLES: &str = "\n[exporter.kube-state-metrics]\n[exporter.kube-dns]\n\n[exporter.traefik]\nnamespace = \"traefik\"\nselector = { \"app.kubernetes.io/name\" = \"traefik\" }\nport = \"metrics\"\n";

/// One fake cluster with node-exporter, kube-state-metrics (per service,
/// in `monitoring`), CoreDNS (two pods, in `kube-system`) and traefik.
struct Edge {
    fake: FakeCluster,
    coredns: TextExporter,
    _ksm: TextExporter,
    _traefik: TextExporter,
    _node_exporter: NodeExporter,
}

fn exporter(
    namespace: &str,
    service: &str,
    labels: Value,
    port: Value,
    upstream: u16,
    pods: &[(&str, &str)],
) -> Value {
    json!({
        "namespace": namespace, "service": service, "labels": labels, "ports": [port],
        "upstream": format!("127.0.0.1:{upstream}"),
        "pods": pods.iter().map(|(name, node)| json!({"name": name, "node": node})).collect::<Vec<_>>(),
    })
}

impl Edge {
    fn start(setup: &Setup, shape: &str) -> Edge {
        let root = setup.root.path();
        let node_exporter = NodeExporter::start(root);
        let ksm = TextExporter::start(root, "ksm", KSM_SAMPLE);
        let coredns = TextExporter::start(root, "coredns", COREDNS_SAMPLE);
        let traefik = TextExporter::start(root, "traefik", TRAEFIK_SERIES);
        let fake = FakeCluster::start(root, CLUSTER, &["n-1", "n-2"], &node_exporter);
        let edge = Edge {
            fake,
            coredns,
            _ksm: ksm,
            _traefik: traefik,
            _node_exporter: node_exporter,
        };
        let mut state = edge.fake.current_state();
        state["shape"] = json!(shape);
        state["exporters"] = json!([
            exporter(
                "monitoring",
                "kube-state-metrics",
                json!({"app.kubernetes.io/name": "kube-state-metrics"}),
                json!({"name": "http-metrics", "port": 8080}),
                edge._ksm.port,
                &[("kube-state-metrics-0", "n-1")]
            ),
            exporter(
                "kube-system",
                "kube-dns",
                json!({"k8s-app": "kube-dns"}),
                json!({"name": "metrics", "port": 9153}),
                edge.coredns.port,
                &[("coredns-a", "n-1"), ("coredns-b", "n-2")]
            ),
            exporter(
                "traefik",
                "traefik",
                json!({"app.kubernetes.io/name": "traefik"}),
                json!({"name": "metrics", "port": 9100}),
                edge._traefik.port,
                &[("traefik-x", "n-2")]
            ),
        ]);
        edge.fake.set_state(state);
        setup.add_cluster(&edge.fake);
        setup.append(&format!("etc/promfed.d/{CLUSTER}.toml"), EXPORTER_TABLES);
        edge
    }
}

/// Every exporter job is up, with its labels; kube-state-metrics's
/// `namespace`/`pod` are the objects' (honor_labels); `cluster` is on
/// every series of the three jobs.
fn assert_every_exporter_up(prometheus: &Prometheus) {
    let ksm = prometheus.wait_targets_up(&format!("promfed/{CLUSTER}/kube-state-metrics"), 1);
    assert!(
        ksm[0]["scrapeUrl"].as_str().unwrap().ends_with(
            "/api/v1/namespaces/monitoring/services/kube-state-metrics:http-metrics/proxy/metrics"
        ),
        "{ksm:?}"
    );
    assert_eq!(
        ksm[0]["labels"]["instance"],
        "monitoring/kube-state-metrics:http-metrics"
    );
    let dns = prometheus.wait_targets_up(&format!("promfed/{CLUSTER}/kube-dns"), 2);
    let mut instances: Vec<(&str, &str)> = dns
        .iter()
        .map(|t| {
            (
                t["labels"]["instance"].as_str().unwrap(),
                t["labels"]["pod"].as_str().unwrap(),
            )
        })
        .collect();
    instances.sort();
    assert_eq!(instances, [("n-1", "coredns-a"), ("n-2", "coredns-b")]);
    assert!(
        dns.iter()
            .all(|t| t["labels"]["job"] == "kube-dns" && t["labels"]["namespace"] == "kube-system")
    );
    let traefik = prometheus.wait_targets_up(&format!("promfed/{CLUSTER}/traefik"), 1);
    assert!(
        traefik[0]["scrapeUrl"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/namespaces/traefik/pods/traefik-x:9100/proxy/metrics"),
        "{traefik:?}"
    );

    let pod_info = wait_for("kube_pod_info", LONG, || {
        let found =
            prometheus.query("kube_pod_info{job=\"kube-state-metrics\",pod=\"cart-7d4b9c-x2x1q\"}");
        found.first().map(|s| s["metric"].clone())
    });
    assert_eq!(
        pod_info["namespace"], "shop",
        "honor_labels keeps the object's namespace: {pod_info}"
    );
    assert_eq!(pod_info["cluster"], CLUSTER);
    assert_eq!(pod_info["env"], "test");
    let requests = wait_for("CoreDNS's requests", LONG, || {
        let found = prometheus.query("coredns_dns_requests_total{job=\"kube-dns\",type=\"A\"}");
        (found.len() == 2).then_some(found)
    });
    assert!(
        requests.iter().all(|s| s["metric"]["cluster"] == CLUSTER),
        "{requests:?}"
    );
    let unlabelled =
        prometheus.query("{job=~\"kube-state-metrics|kube-dns|traefik\",cluster!=\"edge\"}");
    assert!(
        unlabelled.is_empty(),
        "series without cluster=\"edge\": {unlabelled:?}"
    );
}

/// file_sd on Debian 12's Prometheus 2.42, under the daemon: a CoreDNS
/// pod that joins is a target by watch, with no relist and no reload.
#[test]
fn every_exporter_is_up_with_file_sd_and_churn_needs_no_reload() {
    let setup = Setup::new();
    let edge = Edge::start(&setup, "null");
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.relist_rarely();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out)
            .contains("kube-dns: 2 targets, kube-state-metrics: 1 target, traefik: 1 target"),
        "{}",
        stdout(&out)
    );
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    assert_every_exporter_up(&prometheus);

    wait_for("the watch of kube-system's slices", LONG, || {
        (edge.fake.requests("watch_endpointslices kube-system") >= 1).then_some(())
    });
    let lists = edge.fake.requests("list_endpointslices kube-system");
    let reloaded = prometheus.last_reload();
    let mut state = edge.fake.current_state();
    state["exporters"][1]["pods"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "coredns-c", "node": "n-1"}));
    edge.fake.set_state(state);
    prometheus.wait_targets_up(&format!("promfed/{CLUSTER}/kube-dns"), 3);
    assert_eq!(
        edge.fake.requests("list_endpointslices kube-system"),
        lists,
        "events, not relists"
    );
    assert_eq!(prometheus.last_reload(), reloaded, "no reload on churn");
    daemon.drain();
}

/// `discovery = "kubernetes_sd"` on Debian 13's Prometheus 2.53: the same
/// jobs found by Prometheus itself, with the same targets and labels.
#[test]
fn every_exporter_is_up_with_kubernetes_sd_on_prometheus_2_53() {
    let setup = Setup::new();
    let _edge = Edge::start(&setup, "omit");
    let prometheus =
        Prometheus::start_trixie(setup.root.path(), &setup.path("prometheus/prometheus.yml"));
    setup.kubernetes_sd_settings(&prometheus.url());
    assert_exit(&setup.promfed(&["apply"]), 0);
    assert_every_exporter_up(&prometheus);
}

/// kube-state-metrics behind kube-rbac-proxy: the proxy strips the
/// Authorization header, so it answers 401. doctor names that cause and
/// its fix; status says it for that job, not a bare DOWN.
#[test]
fn a_target_behind_kube_rbac_proxy_is_explained_by_doctor_and_status() {
    let setup = Setup::new();
    let edge = Edge::start(&setup, "null");
    let mut state = edge.fake.current_state();
    state["exporters"][0]["auth"] = json!("kube-rbac-proxy");
    edge.fake.set_state(state);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");

    let out = setup.promfed(&["doctor", CLUSTER]);
    let report = stdout(&out);
    assert_exit(&out, 1);
    let line = report
        .lines()
        .find(|l| {
            l.contains("exporter kube-state-metrics monitoring/kube-state-metrics:http-metrics")
        })
        .unwrap_or_else(|| panic!("no sample line for kube-state-metrics:\n{report}"));
    assert!(
        line.contains('✘')
            && line.contains("answered 401 from the target itself, not the API server"),
        "{report}"
    );
    assert!(
        report.contains("strips the Authorization header before proxying"),
        "{report}"
    );
    assert!(
        report.contains("--ignore-paths=/metrics") && report.contains("NetworkPolicy"),
        "{report}"
    );
    assert!(edge.fake.requests("exporter_unauthorized") >= 1);
    // The others sample fine, with their size and time.
    assert!(
        report.contains("exporter kube-dns n-1: ") && report.contains(" KiB in "),
        "{report}"
    );

    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up(&format!("promfed/{CLUSTER}/kube-dns"), 2);
    wait_for("kube-state-metrics down with 401", LONG, || {
        prometheus
            .active_targets()
            .iter()
            .any(|t| {
                t["scrapePool"] == format!("promfed/{CLUSTER}/kube-state-metrics")
                    && t["lastError"].as_str().unwrap_or("").contains("401")
            })
            .then_some(())
    });
    let status = stdout(&setup.promfed(&["status"]));
    assert!(
        status.contains(&format!(
            "promfed/{CLUSTER}/kube-state-metrics  0/1 up: server returned HTTP status 401"
        )),
        "{status}"
    );
    assert!(status.contains("exporter kube-state-metrics: 401 through the proxy: the API server strips the Authorization header"), "{status}");
    assert!(
        status.contains(&format!("promfed/{CLUSTER}/kube-dns")) && status.contains("2/2 up"),
        "{status}"
    );
    daemon.drain();
}

/// Prometheus 3.5 LTS (Debian sid), gated by its own promtool: every
/// exporter job UP in both discovery modes, as on 2.42 and 2.53.
#[test]
fn every_exporter_is_up_on_prometheus_3_5_in_both_discovery_modes() {
    for kubernetes_sd in [false, true] {
        let setup = Setup::new();
        let _edge = Edge::start(&setup, "null");
        let prometheus = Prometheus::start_sid(
            setup.root.path(),
            &setup.path("prometheus/prometheus.yml"),
            None,
        );
        // Each mode's settings name their own promtool: 3.5's replaces it.
        let promtool = if kubernetes_sd {
            setup.kubernetes_sd_settings(&prometheus.url());
            TRIXIE_PROMTOOL
        } else {
            setup.settings(&prometheus.url(), "reload = \"http\"");
            PROMTOOL
        };
        let settings = setup
            .read("etc/promfed.toml")
            .replace(promtool, SID_PROMTOOL);
        setup.write("etc/promfed.toml", &settings);
        let out = setup.promfed(&["apply"]);
        assert_exit(&out, 0);
        assert!(
            setup
                .read("prometheus/prometheus.yml")
                .contains("fallback_scrape_protocol"),
            "rendered for promtool 3.5"
        );
        assert_every_exporter_up(&prometheus);
    }
}

/// Two ready kube-state-metrics pods: promfed reads one; `--total-shards`
/// in its args makes the job per endpoint (each shard UP through the pod
/// proxy), none keeps one target through the service proxy (an HA pair,
/// whose series each pod would give twice).
#[test]
fn a_sharded_kube_state_metrics_is_scraped_per_endpoint_an_unsharded_pair_per_service() {
    for sharded in [true, false] {
        let setup = Setup::new();
        let edge = Edge::start(&setup, "null");
        let mut state = edge.fake.current_state();
        let ksm = &mut state["exporters"][0];
        ksm["pods"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "kube-state-metrics-1", "node": "n-2"}));
        ksm["args"] = if sharded {
            json!(["--port=8080", "--shard=0", "--total-shards=2"])
        } else {
            json!(["--port=8080"])
        };
        edge.fake.set_state(state);
        let prometheus = setup.prometheus(None);
        setup.settings(&prometheus.url(), "reload = \"http\"");
        let out = setup.promfed(&["apply"]);
        assert_exit(&out, 0);
        let want = if sharded {
            "kube-state-metrics: 2 targets"
        } else {
            "kube-state-metrics: 1 target,"
        };
        assert!(stdout(&out).contains(want), "{}", stdout(&out));
        assert!(edge.fake.requests("get_pod") >= 1, "a pod was read");
        let job = format!("promfed/{CLUSTER}/kube-state-metrics");
        let up = prometheus.wait_targets_up(&job, if sharded { 2 } else { 1 });
        let mut urls: Vec<&str> = up
            .iter()
            .map(|t| t["scrapeUrl"].as_str().unwrap())
            .collect();
        urls.sort_unstable();
        if sharded {
            assert!(
                urls[0].ends_with(
                    "/namespaces/monitoring/pods/kube-state-metrics-0:8080/proxy/metrics"
                ) && urls[1].ends_with(
                    "/namespaces/monitoring/pods/kube-state-metrics-1:8080/proxy/metrics"
                ),
                "{urls:?}"
            );
        } else {
            assert_eq!(urls.len(), 1, "{urls:?}");
            assert!(
                urls[0].ends_with(
                    "/namespaces/monitoring/services/kube-state-metrics:http-metrics/proxy/metrics"
                ),
                "{urls:?}"
            );
        }
    }
}
