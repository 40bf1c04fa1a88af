//! `[pods]`: pods annotated `prometheus.io/scrape`, scraped through the
//! API server's pod proxy with the labels Istio's sample Prometheus gives.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

const ISTIO_SERIES: &str = "\
# TYPE istio_requests_total counter
istio_requests_total{reporter=\"destination\",source_cluster=\"mesh\",destination_cluster=\"mesh\",destination_workload=\"reviews-v2\"} 42
";

fn app_pod(namespace: &str, name: &str, annotations: Value, upstream: u16) -> Value {
    json!({
        "namespace": namespace, "name": name, "annotations": annotations,
        "labels": {"app": name.split('-').next().unwrap(), "version": "v2"},
        "ports": [9080], "upstream": format!("127.0.0.1:{upstream}"),
    })
}

fn istio_annotations() -> Value {
    json!({"prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus"})
}

/// Two pods to scrape (a sidecar's, on a path of its own; istiod's, over
/// https) and four not to: unannotated, a path out of its proxy, not ready,
/// finished.
fn mesh_pods(sidecar: u16, plain: u16) -> Vec<Value> {
    let scrape = json!({"prometheus.io/scrape": "true"});
    let mut starting = app_pod("bookinfo", "starting-1", scrape.clone(), plain);
    starting["ready"] = json!(false);
    let mut done = app_pod("bookinfo", "done-1", scrape, plain);
    done["phase"] = json!("Succeeded");
    vec![
        app_pod("bookinfo", "reviews-v2-abc", istio_annotations(), sidecar),
        app_pod(
            "istio-system",
            "istiod-xyz",
            json!({"prometheus.io/scrape": "true", "prometheus.io/port": "15014", "prometheus.io/scheme": "https"}),
            plain,
        ),
        app_pod("bookinfo", "plain-1", json!({}), plain),
        app_pod(
            "bookinfo",
            "ratings-v1-x",
            json!({"prometheus.io/scrape": "true", "prometheus.io/path": "/../../../api/v1/secrets"}),
            plain,
        ),
        starting,
        done,
    ]
}

/// A fake cluster `mesh` with `mesh_pods`, and the exporters behind them.
struct Mesh {
    fake: FakeCluster,
    sidecar: TextExporter,
    _plain: TextExporter,
    _exporter: NodeExporter,
}

impl Mesh {
    fn start(root: &std::path::Path) -> Mesh {
        let exporter = NodeExporter::start(root);
        let sidecar = TextExporter::start_at(root, "sidecar", ISTIO_SERIES, "/stats/prometheus");
        let plain = TextExporter::start(root, "plain-exporter", "# TYPE app_up gauge\napp_up 1\n");
        let fake = FakeCluster::start(root, "mesh", &["n-1"], &exporter);
        let mut state = fake.state(&["n-1"], exporter.port);
        state["pods"] = json!(mesh_pods(sidecar.port, plain.port));
        fake.set_state(state);
        Mesh {
            fake,
            sidecar,
            _plain: plain,
            _exporter: exporter,
        }
    }
}

/// Cluster labels that a pod's target also has (`namespace`, `app`,
/// `version`), besides ones it has not.
fn with_cluster_wide_labels(setup: &Setup) {
    let file = setup.read("etc/promfed.d/mesh.toml");
    let old = "labels = { env = \"test\" }";
    assert!(file.contains(old), "{file}");
    setup.write(
        "etc/promfed.d/mesh.toml",
        &file.replace(
            old,
            "labels = { env = \"test\", tier = \"mesh-wide\", namespace = \"all\", app = \"all\", version = \"all\" }",
        ),
    );
}

/// The labels and proxy path of the sidecar's target, in either mode.
fn assert_reviews_target(targets: &[Value]) {
    let reviews = targets
        .iter()
        .find(|t| t["labels"]["pod"] == "reviews-v2-abc")
        .expect("the sidecar's pod");
    let labels = &reviews["labels"];
    assert_eq!(labels["job"], "kubernetes-pods");
    assert_eq!(labels["namespace"], "bookinfo");
    assert_eq!(labels["app"], "reviews");
    assert_eq!(labels["version"], "v2");
    assert_eq!(labels["cluster"], "mesh");
    assert_eq!(labels["instance"], "reviews-v2-abc:15020");
    // The cluster's own labels fill in what the pod does not say, and never
    // override what it does (every pod would get the same namespace).
    assert_eq!(labels["env"], "test");
    assert_eq!(labels["tier"], "mesh-wide");
    assert!(
        reviews["scrapeUrl"].as_str().unwrap().ends_with(
            "/api/v1/namespaces/bookinfo/pods/reviews-v2-abc:15020/proxy/stats/prometheus"
        ),
        "{reviews}"
    );
}

#[test]
fn annotated_ready_pods_are_scraped_through_the_pod_proxy_and_churn_needs_no_reload() {
    let setup = Setup::new();
    let root = setup.root.path();
    let mesh = Mesh::start(root);
    let state = mesh.fake.current_state();

    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.relist_rarely();
    setup.add_cluster(&mesh.fake);
    with_cluster_wide_labels(&setup);
    setup.append("etc/promfed.d/mesh.toml", "\n[pods]\nenabled = true\n");
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(", 2 annotated pods"),
        "{}",
        stdout(&out)
    );
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));

    // Annotated, Running and Ready only; a path out of the pod's proxy is
    // not one.
    let targets = prometheus.wait_targets_up("promfed/mesh/pods", 2);
    assert_reviews_target(&targets);
    assert!(
        mesh.fake
            .requests("proxy_pod https istio-system/istiod-xyz/metrics")
            >= 1
    );
    let series = wait_for("Istio's series", LONG, || {
        prometheus
            .query("istio_requests_total{job=\"kubernetes-pods\"}")
            .first()
            .map(|s| s["metric"].clone())
    });
    assert_eq!(series["cluster"], "mesh");
    assert_eq!(series["pod"], "reviews-v2-abc");
    assert_eq!(series["destination_workload"], "reviews-v2");

    // A pod joins and leaves: targets follow by watch, with no relist and
    // no reload.
    let lists = mesh.fake.requests("list_pods");
    let reloaded = prometheus.last_reload();
    let mut joined = state.clone();
    joined["pods"].as_array_mut().unwrap().push(app_pod(
        "bookinfo",
        "details-v1-q",
        istio_annotations(),
        mesh.sidecar.port,
    ));
    mesh.fake.set_state(joined);
    prometheus.wait_targets_up("promfed/mesh/pods", 3);
    mesh.fake.set_state(state);
    prometheus.wait_targets_up("promfed/mesh/pods", 2);
    assert_eq!(
        mesh.fake.requests("list_pods"),
        lists,
        "events, not relists"
    );
    assert_eq!(prometheus.last_reload(), reloaded, "no reload on churn");

    // More matching pods than max_targets: said, and capped.
    setup.append("etc/promfed.d/mesh.toml", "max_targets = 1\n");
    prometheus.wait_targets_up("promfed/mesh/pods", 1);
    wait_for("the cap said in the journal", LONG, || {
        daemon
            .log()
            .contains("2 pods are annotated for scraping, more than [pods] max_targets = 1")
            .then_some(())
    });
}

/// `discovery = "kubernetes_sd"` on Prometheus 2.53: Prometheus finds the
/// pods itself, and the rules give the same targets and labels.
#[test]
fn kubernetes_sd_mode_gives_the_same_pod_targets_on_prometheus_2_53() {
    let setup = Setup::new();
    let root = setup.root.path();
    let mesh = Mesh::start(root);
    let prometheus = Prometheus::start_trixie(root, &setup.path("prometheus/prometheus.yml"));
    setup.kubernetes_sd_settings(&prometheus.url());
    setup.add_cluster(&mesh.fake);
    with_cluster_wide_labels(&setup);
    setup.append(
        "etc/promfed.d/mesh.toml",
        "\n[pods]\nenabled = true\nnamespaces = [\"bookinfo\", \"istio-system\"]\n",
    );
    assert_exit(&setup.promfed(&["apply"]), 0);

    let targets = prometheus.wait_targets_up("promfed/mesh/pods", 2);
    assert_reviews_target(&targets);
    let istiod = targets
        .iter()
        .find(|t| t["labels"]["pod"] == "istiod-xyz")
        .expect("istiod's pod");
    assert!(
        istiod["scrapeUrl"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/namespaces/istio-system/pods/https:istiod-xyz:15014/proxy/metrics"),
        "{istiod}"
    );
}
