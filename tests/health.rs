//! Health per cluster with the real daemon: a watch that went silent, a
//! token about to expire, half the targets down in a real Prometheus;
//! status.json, the metrics file, `promfed status` and its `--json`. The
//! thresholds' arithmetic over time is unit-tested with paused time
//! (`daemon::state`, `cluster_health`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt(exp: i64) -> String {
    format!(
        "{}.{}.signature",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#),
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"system:serviceaccount:monitoring:prometheus","exp":{exp}}}"#
        ))
    )
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promfed status`'s line for `cluster`.
fn line_of(out: &str, cluster: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(&format!("{cluster} ")))
        .unwrap_or_else(|| panic!("no line for {cluster}:\n{out}"))
        .to_string()
}

fn status_json(setup: &Setup) -> Value {
    serde_json::from_str(&stdout(&setup.promfed(&["status", "--json"]))).unwrap()
}

fn last_event(status: &Value, cluster: &str, resource: &str) -> Option<String> {
    status["clusters"][cluster]["discovery"]["watches"]
        .as_array()?
        .iter()
        .find(|w| w["resource"] == resource)?["last_event"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_watch_that_stays_silent_is_the_oldest_in_status_and_metrics() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let mut state = stage.current_state();
    state["silent_watches"] = serde_json::json!(["nodes"]);
    stage.set_state(state);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    wait_for("both watches open", LONG, || {
        (stage.requests("watch_silent_nodes") >= 1 && stage.requests("watch_endpointslices") >= 1)
            .then_some(())
    });
    // Times are whole seconds: let the slices' bookmarks outrun the
    // nodes watch's opening, then change the targets, which publishes.
    std::thread::sleep(Duration::from_secs(3));
    let mut state = stage.state(&["s-1", "s-2"], exporter.port);
    state["silent_watches"] = serde_json::json!(["nodes"]);
    stage.set_state(state);

    let status = daemon.wait_status("the slices' newer event", LONG, |s| {
        match (
            last_event(s, "stage", "nodes"),
            last_event(s, "stage", "endpointslices"),
        ) {
            (Some(nodes), Some(slices)) => slices > nodes,
            _ => false,
        }
    });
    assert!(
        status["clusters"]["stage"]["discovery"]["last_list"].is_string(),
        "{status}"
    );
    let metrics = setup.read("state/promfed.prom");
    let of = |resource: &str| {
        metric(
            &metrics,
            &format!(
                "promfed_cluster_watch_last_event_timestamp_seconds{{cluster=\"stage\",resource=\"{resource}\"}}"
            ),
        )
        .unwrap_or_else(|| panic!("no {resource} watch:\n{metrics}"))
    };
    assert!(of("nodes") < of("endpointslices"), "{metrics}");
    assert!(of("nodes") >= now() - 60, "{metrics}");
    let listed = metric(
        &metrics,
        "promfed_cluster_last_list_success_timestamp_seconds{cluster=\"stage\"}",
    );
    assert!(listed.is_some_and(|t| t >= of("nodes")), "{metrics}");

    let out = stdout(&setup.promfed(&["status"]));
    assert!(
        out.contains("CLUSTER  DISCOVERY  TARGETS  CREDENTIAL  WATCH"),
        "{out}"
    );
    let line = line_of(&out, "stage");
    assert!(line.contains(" nodes "), "the oldest watch: {line}");
    let json = status_json(&setup);
    let oldest = &json["clusters"]["stage"]["health"]["oldest_watch"];
    assert_eq!(oldest["resource"], "nodes", "{json}");
    assert!(
        oldest["age_seconds"].as_i64().is_some_and(|a| a >= 3),
        "{json}"
    );
    daemon.drain();
}

#[test]
fn a_token_about_to_expire_is_red_and_a_certificate_shows_its_end() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    // stage's token ends in 3½ hours; the fake takes it until then.
    let exp = now() + 3 * 3600 + 1800;
    let token = jwt(exp);
    let mut state = stage.current_state();
    state["tokens"] =
        serde_json::json!({ &token: { "user": "system:serviceaccount:monitoring:prometheus" } });
    stage.set_state(state);
    setup.add_cluster(&stage);
    setup.write("etc/promfed.d/stage/token", &format!("{token}\n"));
    // prod presents the fake's client certificate (365 days).
    for file in ["ca.crt", "client.crt", "client.key"] {
        std::fs::copy(
            prod.pki(file),
            setup.path(&format!("etc/promfed.d/prod-{file}")),
        )
        .unwrap();
    }
    setup.write(
        "etc/promfed.d/prod.toml",
        &format!(
            "api_server = \"{}\"\ncert_file = \"prod-client.crt\"\nkey_file = \"prod-client.key\"\nca_file = \"prod-ca.crt\"\n",
            prod.url()
        ),
    );
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    daemon.wait_status("both discovered", LONG, |s| {
        ["stage", "prod"]
            .iter()
            .all(|c| s["clusters"][c]["discovery"]["state"] == "ok")
    });

    prometheus.wait_targets_up("promfed/stage/", 4);
    prometheus.wait_targets_up("promfed/prod/", 4);
    let metrics = setup.read("state/promfed.prom");
    assert_eq!(
        metric(
            &metrics,
            "promfed_cluster_token_expiry_timestamp_seconds{cluster=\"stage\"}"
        ),
        Some(exp),
        "{metrics}"
    );
    let cert_end = metric(
        &metrics,
        "promfed_cluster_certificate_expiry_timestamp_seconds{cluster=\"prod\"}",
    )
    .unwrap_or_else(|| panic!("no certificate expiry:\n{metrics}"));
    let days = (cert_end - now()) / 86_400;
    assert!((363..=365).contains(&days), "{days} days:\n{metrics}");
    assert!(!metrics.contains("promfed_cluster_token_expiry_timestamp_seconds{cluster=\"prod\"}"));

    let out = setup.promfed(&["status"]);
    assert_exit(&out, 1);
    let shown = stdout(&out);
    let stage_line = line_of(&shown, "stage");
    assert!(stage_line.contains("token 3h"), "{stage_line}");
    assert!(stage_line.contains("red"), "{stage_line}");
    assert!(stage_line.contains("token expires in 3h"), "{stage_line}");
    assert!(!shown.contains(&token), "the token is shown:\n{shown}");
    let prod_line = line_of(&shown, "prod");
    assert!(
        prod_line.contains(&format!("certificate {days}d")),
        "{prod_line}"
    );
    assert!(
        !prod_line.contains("red") && !prod_line.contains("yellow"),
        "{prod_line}"
    );

    let json = status_json(&setup);
    let health = &json["clusters"]["stage"]["health"];
    assert_eq!(health["level"], "red", "{json}");
    assert_eq!(health["credential"]["credential"], "token", "{json}");
    assert_eq!(health["causes"][0], "token expires in 3h", "{json}");
    assert_eq!(
        json["clusters"]["prod"]["health"]["credential"]["credential"],
        "certificate"
    );
    assert!(!json.to_string().contains(&token));
    daemon.drain();
}

#[test]
fn half_the_targets_down_in_prometheus_is_red_with_their_error() {
    half_the_targets_down(Release::Bookworm);
}

#[test]
fn half_the_targets_down_in_prometheus_2_53_is_red_with_their_error() {
    half_the_targets_down(Release::Trixie);
}

#[test]
fn half_the_targets_down_in_prometheus_3_5_is_red_with_their_error() {
    half_the_targets_down(Release::Sid);
}

fn half_the_targets_down(release: Release) {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let half = FakeCluster::start(setup.root.path(), "half", &["h-1", "h-2"], &exporter);
    let mut state = half.current_state();
    state["failing_pods"] = serde_json::json!(["node-exporter-h-2"]);
    half.set_state(state);
    let prometheus = setup.prometheus_of(release, "reload = \"http\"");
    setup.add_cluster(&half);
    // node-exporter alone: two targets, one failing.
    setup.append(
        "etc/promfed.d/half.toml",
        "[kubelet]\nenabled = false\n[cadvisor]\nenabled = false\n[apiserver]\nenabled = false\n",
    );
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    wait_for("one node-exporter up and one down with 500", LONG, || {
        let targets = prometheus.active_targets();
        let ours: Vec<&Value> = targets
            .iter()
            .filter(|t| t["labels"]["cluster"] == "half")
            .collect();
        let up = ours.iter().filter(|t| t["health"] == "up").count();
        let failed = ours.iter().any(|t| {
            t["health"] == "down" && t["lastError"].as_str().unwrap_or("").contains("500")
        });
        (ours.len() == 2 && up == 1 && failed).then_some(())
    });
    let metrics = setup.read("state/promfed.prom");
    assert!(
        metrics
            .contains("promfed_cluster_targets{cluster=\"half\",scrape_job=\"node-exporter\"} 2"),
        "{metrics}"
    );

    let out = setup.promfed(&["status"]);
    assert_exit(&out, 1);
    let shown = stdout(&out);
    let line = line_of(&shown, "half");
    assert!(line.contains(" 1/2 "), "{line}");
    assert!(
        line.ends_with("red     1/2 targets down: 500 Internal Server Error through the proxy"),
        "{line}"
    );
    let json = status_json(&setup);
    let targets = &json["clusters"]["half"]["health"]["targets"];
    assert_eq!(
        (&targets["up"], &targets["total"]),
        (&1.into(), &2.into()),
        "{json}"
    );
    assert_eq!(
        targets["top_error"], "500 Internal Server Error through the proxy",
        "{json}"
    );
    assert_eq!(json["prometheus_targets"]["error"], Value::Null, "{json}");
    daemon.drain();
}
