//! `[federate]`: an in-cluster Prometheus (Istio's addon, or one exposed
//! with mutual TLS) federated into the central one, with Istio's series and
//! labels intact and this cluster's name on every series.

use std::path::Path;

use serde_json::json;

use crate::support::*;

/// What Istio's sidecars and istiod export, as Istio's sample Prometheus
/// scrapes it (job `kubernetes-pods`).
const ISTIO_SERIES: &str = "\
# TYPE istio_requests_total counter
istio_requests_total{reporter=\"destination\",source_workload=\"productpage-v1\",destination_workload=\"reviews-v2\",source_cluster=\"east\",destination_cluster=\"west\",response_code=\"200\"} 42
# TYPE pilot_xds_pushes counter
pilot_xds_pushes{type=\"cds\"} 7
";

/// The in-cluster Prometheus: scrapes the Istio-shaped exporter every
/// second, one replica of an HA pair with a `cluster` label of its own.
fn mesh_config(dir: &Path, exporter_port: u16) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels:\n    prometheus_replica: prometheus-0\n    cluster: mesh-own-name\nscrape_configs:\n- job_name: kubernetes-pods\n  static_configs:\n  - targets: ['127.0.0.1:{exporter_port}']\n    labels: {{namespace: bookinfo, pod: reviews-v2-abc, app: reviews, version: v2}}\n"
        ),
    )
    .unwrap();
    config
}

/// One federated series of `name` from `cluster`, once it has arrived.
fn federated(prometheus: &Prometheus, selector: &str) -> serde_json::Value {
    wait_for(selector, std::time::Duration::from_secs(40), || {
        prometheus
            .query(selector)
            .first()
            .map(|s| s["metric"].clone())
    })
}

#[test]
fn an_in_cluster_prometheus_is_federated_through_the_service_proxy() {
    let setup = Setup::new();
    let root = setup.root.path();
    let exporter = NodeExporter::start(root);
    let istio = TextExporter::start(root, "istio-exporter", ISTIO_SERIES);
    let mesh_dir = root.join("mesh");
    let mesh = Prometheus::start(&mesh_dir, &mesh_config(&mesh_dir, istio.port), None);

    let east = FakeCluster::start(root, "east", &["n-1"], &exporter);
    let mut state = east.state(&["n-1"], exporter.port);
    state["services"] = json!({
        "istio-system/prometheus": {"upstream": format!("127.0.0.1:{}", mesh.port), "ports": ["9090", "http"]}
    });
    east.set_state(state);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&east);
    setup.append(
        "etc/promfed.d/east.toml",
        "\n[federate]\nmatch = ['{job=\"kubernetes-pods\"}', '{__name__=~\"pilot(.*)\"}']\n",
    );
    assert_exit(&setup.promfed(&["apply"]), 0);
    prometheus.wait_targets_up("promfed/east/federate", 1);

    // Istio's labels as they were; this cluster's name, not the source's;
    // the HA replica label gone.
    let s = federated(&prometheus, "istio_requests_total");
    assert_eq!(s["cluster"], "east", "{s}");
    assert_eq!(s["job"], "kubernetes-pods", "{s}");
    assert_eq!(s["source_cluster"], "east");
    assert_eq!(s["destination_cluster"], "west");
    assert_eq!(s["reporter"], "destination");
    assert_eq!(s["source_workload"], "productpage-v1");
    assert_eq!(s["namespace"], "bookinfo");
    assert_eq!(s["app"], "reviews");
    assert!(s.get("prometheus_replica").is_none(), "{s}");
    let pilot = federated(&prometheus, "pilot_xds_pushes");
    assert_eq!(pilot["cluster"], "east");
    // Only through the API server: its service proxy carried the scrapes.
    assert!(east.requests("proxy_service istio-system/prometheus") >= 1);

    // The operator keeps the source's own `cluster` label instead.
    let text = setup.read("etc/promfed.d/east.toml");
    setup.write(
        "etc/promfed.d/east.toml",
        &text.replace("[federate]\n", "[federate]\nkeep_source_cluster = true\n"),
    );
    assert_exit(&setup.promfed(&["apply"]), 0);
    let kept = federated(
        &prometheus,
        "istio_requests_total{cluster=\"mesh-own-name\"}",
    );
    assert_eq!(kept["source_cluster"], "east");
}

#[test]
fn mutual_tls_federation_works_with_the_right_certificate_and_fails_alone_without() {
    let setup = Setup::new();
    let root = setup.root.path();
    let exporter = NodeExporter::start(root);
    let istio = TextExporter::start(root, "istio-exporter", ISTIO_SERIES);
    let pki = make_pki(&root.join("mesh-pki"));
    let other_pki = make_pki(&root.join("other-pki"));
    let mesh_dir = root.join("mesh");
    let mesh = Prometheus::start_mutual_tls(&mesh_dir, &mesh_config(&mesh_dir, istio.port), &pki);
    let url = format!("https://127.0.0.1:{}", mesh.port);

    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let mut fakes = Vec::new();
    for (name, extra) in [
        // The right CA and a client certificate it signed.
        (
            "west",
            format!(
                "ca_file = \"{0}/ca.crt\"\ncert_file = \"{0}/client.crt\"\nkey_file = \"{0}/client.key\"\n",
                pki.display()
            ),
        ),
        // No client certificate: the server refuses the handshake.
        (
            "nocert",
            format!("ca_file = \"{}/ca.crt\"\n", pki.display()),
        ),
        // Another CA: the server's certificate is not trusted.
        (
            "wrongca",
            format!(
                "ca_file = \"{0}/ca.crt\"\ncert_file = \"{1}/client.crt\"\nkey_file = \"{1}/client.key\"\n",
                other_pki.display(),
                pki.display()
            ),
        ),
    ] {
        let fake = FakeCluster::start(root, name, &["n-1"], &exporter);
        setup.add_cluster(&fake);
        setup.append(
            &format!("etc/promfed.d/{name}.toml"),
            &format!(
                "\n[federate]\nurl = \"{url}\"\nmatch = ['{{job=\"kubernetes-pods\"}}']\n{extra}"
            ),
        );
        fakes.push(fake);
    }
    assert_exit(&setup.promfed(&["apply"]), 0);

    prometheus.wait_targets_up("promfed/west/federate", 1);
    let s = federated(&prometheus, "istio_requests_total{cluster=\"west\"}");
    assert_eq!(s["destination_cluster"], "west");
    // The failures are Prometheus's target errors, each about TLS, and
    // every other job of those clusters is up.
    let error_of = |pool: &str| {
        wait_for(pool, std::time::Duration::from_secs(40), || {
            prometheus
                .active_targets()
                .into_iter()
                .find(|t| t["scrapePool"] == pool && t["health"] == "down")
                .map(|t| t["lastError"].as_str().unwrap_or("").to_string())
        })
    };
    // Under TLS 1.3 the server refuses after the client's last handshake
    // message: Prometheus sees the alert, or, racing it, the connection the
    // server closed (a reset on reading, a broken pipe on writing).
    let nocert = error_of("promfed/nocert/federate");
    assert!(
        [
            "certificate required",
            "bad certificate",
            "reset by peer",
            "broken pipe"
        ]
        .iter()
        .any(|w| nocert.contains(w)),
        "{nocert}"
    );
    let wrongca = error_of("promfed/wrongca/federate");
    assert!(
        wrongca.contains("x509") || wrongca.contains("certificate"),
        "{wrongca}"
    );
    prometheus.wait_targets_up("promfed/nocert/kubelet", 1);
    prometheus.wait_targets_up("promfed/wrongca/node-exporter", 1);
}
