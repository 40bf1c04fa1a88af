//! The limits every generated job carries, against a real Prometheus (2.42,
//! 2.53 and 3.5):
//! a node whose cAdvisor answers more than its job's default
//! `body_size_limit` is one target down with Prometheus's own error, every
//! other target stays up, and `promfed doctor` warns about that sample and
//! projects the proxy load.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// 40 MiB: over cAdvisor's default 32MB (binary MB, as Prometheus reads it).
const OVERSIZED_MIB: u64 = 40;

#[test]
fn an_oversized_cadvisor_answer_is_one_target_down_and_doctor_warns() {
    oversized_cadvisor(Release::Bookworm);
}

#[test]
fn an_oversized_cadvisor_answer_is_one_target_down_on_prometheus_2_53() {
    oversized_cadvisor(Release::Trixie);
}

#[test]
fn an_oversized_cadvisor_answer_is_one_target_down_on_prometheus_3_5() {
    oversized_cadvisor(Release::Sid);
}

fn oversized_cadvisor(release: Release) {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), "big", &["node-a", "node-b"], &exporter);
    let mut state = fake.current_state();
    state["oversized_cadvisor"] = json!({"nodes": ["node-a"], "megabytes": OVERSIZED_MIB});
    fake.set_state(state);
    let prometheus = setup.prometheus_of(release, "reload = \"http\"");
    setup.add_cluster(&fake);
    // The default limits, at an interval whose default timeout (5 s) leaves
    // time to read 32 MB through the fake: the limit, not the clock, stops it.
    setup.append(
        "etc/promfed.d/big.toml",
        "[cadvisor]\nscrape_interval = \"10s\"\n",
    );
    assert_exit(&setup.promfed(&["apply"]), 0);
    let installed = setup.read("prometheus/prometheus.yml");
    assert!(
        installed.contains("    sample_limit: 200000\n    body_size_limit: 32MB\n"),
        "{installed}"
    );
    assert_eq!(
        installed.contains("fallback_scrape_protocol"),
        release == Release::Sid,
        "rendered for its own promtool"
    );

    // 2 kubelet + 2 cAdvisor + 1 API server + 2 node-exporter targets.
    let targets = wait_for(
        "node-a's cAdvisor down and every other target up",
        Duration::from_secs(60),
        || {
            let targets: Vec<Value> = prometheus
                .active_targets()
                .into_iter()
                .filter(|t| {
                    t["scrapePool"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("promfed/big/")
                })
                .collect();
            let settled = targets.len() == 7
                && targets.iter().all(|t| t["health"] != "unknown")
                && targets.iter().any(|t| t["health"] == "down");
            settled.then_some(targets)
        },
    );
    let down: Vec<&Value> = targets.iter().filter(|t| t["health"] != "up").collect();
    assert_eq!(down.len(), 1, "{targets:#?}");
    assert_eq!(down[0]["scrapePool"], "promfed/big/cadvisor", "{down:#?}");
    assert_eq!(down[0]["labels"]["instance"], "node-a", "{down:#?}");
    assert!(
        down[0]["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("body size limit exceeded"),
        "{down:#?}"
    );

    let out = setup.promfed(&["doctor"]);
    let report = stdout(&out);
    assert_exit(&out, 0);
    // Doctor samples the first node, node-a: 40 MiB, over 32MB.
    assert!(
        report.lines().any(|l| {
            l.trim_start()
                .starts_with("! scrape: cadvisor node-a: 40.0 MiB in ")
                && l.contains("over its body_size_limit 32MB")
        }),
        "{report}"
    );
    assert!(
        report.contains("✔ scrape: kubelet node-a: "),
        "a sample far under its limit is no warning:\n{report}"
    );
    assert!(report.contains("✔ load: about "), "{report}");
}
