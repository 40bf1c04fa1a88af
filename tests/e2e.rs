//! `promfed apply` end to end: real Prometheus, promtool and node-exporter,
//! fake API servers that forward node-exporter paths to the real exporter.

use std::time::Duration;

use crate::support::*;

/// Checks the labels of every target Prometheus scrapes for `cluster`.
pub(crate) fn assert_cluster_targets(
    targets: &[serde_json::Value],
    cluster: &str,
    nodes: &[&str],
    api_address: &str,
) {
    let mut seen: Vec<(String, String, String, String)> = targets
        .iter()
        .map(|t| {
            let l = &t["labels"];
            assert_eq!(l["cluster"], cluster, "{t}");
            assert_eq!(l["env"], "test", "{t}");
            (
                t["scrapePool"].as_str().unwrap().to_string(),
                l["job"].as_str().unwrap().to_string(),
                l["instance"].as_str().unwrap().to_string(),
                l["metrics_path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![(
        format!("promfed/{cluster}/apiserver"),
        "apiserver".into(),
        api_address.to_string(),
        String::new(),
    )];
    for n in nodes {
        want.push((
            format!("promfed/{cluster}/cadvisor"),
            "kubelet".into(),
            n.to_string(),
            "/metrics/cadvisor".into(),
        ));
        want.push((
            format!("promfed/{cluster}/kubelet"),
            "kubelet".into(),
            n.to_string(),
            "/metrics".into(),
        ));
        want.push((
            format!("promfed/{cluster}/node-exporter"),
            "node-exporter".into(),
            n.to_string(),
            String::new(),
        ));
    }
    want.sort();
    assert_eq!(seen, want);
    // Every target is scraped through the API server, never a node or pod.
    for t in targets {
        assert!(
            t["scrapeUrl"]
                .as_str()
                .unwrap()
                .starts_with(&format!("https://{api_address}/")),
            "{t}"
        );
    }
    let pod_paths: Vec<&str> = targets
        .iter()
        .filter(|t| t["labels"]["job"] == "node-exporter")
        .map(|t| {
            let url = t["scrapeUrl"].as_str().unwrap();
            &url[url.find("/api/").unwrap_or(0)..]
        })
        .collect();
    for n in nodes {
        let path =
            format!("/api/v1/namespaces/monitoring/pods/node-exporter-{n}:9100/proxy/metrics");
        assert!(
            pod_paths.contains(&path.as_str()),
            "{path} not in {pod_paths:?}"
        );
    }
}

#[test]
fn one_cluster_is_scraped_through_the_api_server_with_its_labels() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), "stage", &["node-a", "node-b"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&fake);

    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("cluster stage"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("2 nodes, 2 node-exporter pods"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("installed, reloaded and verified"),
        "{}",
        stdout(&out)
    );

    let targets = prometheus.wait_targets_up("promfed/stage/", 7);
    assert_cluster_targets(
        &targets,
        "stage",
        &["node-a", "node-b"],
        &format!("127.0.0.1:{}", fake.port),
    );

    // Real node-exporter series, per node, with the cluster label.
    let series = wait_for(
        "node-exporter series",
        std::time::Duration::from_secs(20),
        || {
            let r = prometheus.query("count by (instance) (node_cpu_seconds_total{cluster=\"stage\",job=\"node-exporter\"})");
            (r.len() == 2).then_some(r)
        },
    );
    let mut instances: Vec<&str> = series
        .iter()
        .map(|s| s["metric"]["instance"].as_str().unwrap())
        .collect();
    instances.sort();
    assert_eq!(instances, ["node-a", "node-b"]);
    // The kube-prometheus drops are in force; cAdvisor keeps its own labels.
    assert!(
        prometheus
            .query("container_spec_memory_limit_bytes")
            .is_empty()
    );
    let cpu = prometheus.query("container_cpu_usage_seconds_total{cluster=\"stage\"}");
    assert_eq!(
        cpu.len(),
        2,
        "one container per node, the pod-less cgroup dropped: {cpu:?}"
    );
    assert!(
        cpu.iter()
            .all(|s| s["metric"]["namespace"] == "default" && s["metric"]["container"] == "app")
    );

    // No token appears in what promfed generated.
    let generated = setup.read("prometheus/prometheus.yml");
    assert!(!generated.contains(&fake.token));
    assert!(generated.contains("credentials_file: "));

    // A second apply changes nothing and does not reload.
    let before = prometheus.last_reload();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("is up to date, no reload needed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(prometheus.last_reload(), before);
}

#[test]
fn two_clusters_one_with_a_client_certificate_reloaded_by_signal() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1", "p-2", "p-3"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(
        &prometheus.url(),
        &format!("pid_file = \"{}\"", prometheus.pid_file.display()),
    );
    setup.add_cluster(&stage);
    // prod authenticates with a client certificate instead of a token.
    for f in ["client.crt", "client.key"] {
        std::fs::copy(prod.pki(f), setup.path(&format!("etc/promfed.d/prod-{f}"))).unwrap();
    }
    std::fs::copy(prod.ca(), setup.path("etc/promfed.d/prod-ca.crt")).unwrap();
    setup.write(
        "etc/promfed.d/prod.toml",
        &format!(
            "api_server = \"{}\"\ncert_file = \"prod-client.crt\"\nkey_file = \"prod-client.key\"\nca_file = \"prod-ca.crt\"\nlabels = {{ env = \"test\" }}\n",
            prod.url()
        ),
    );

    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("cluster prod"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("3 nodes, 3 node-exporter pods"),
        "{}",
        stdout(&out)
    );

    let targets = prometheus.wait_targets_up("promfed/prod/", 10);
    assert_cluster_targets(
        &targets,
        "prod",
        &["p-1", "p-2", "p-3"],
        &format!("127.0.0.1:{}", prod.port),
    );
    let targets = prometheus.wait_targets_up("promfed/stage/", 4);
    assert_cluster_targets(
        &targets,
        "stage",
        &["s-1"],
        &format!("127.0.0.1:{}", stage.port),
    );
    let up = wait_for(
        "series of both clusters",
        std::time::Duration::from_secs(20),
        || {
            let r = prometheus.query("count by (cluster) (up{job=\"node-exporter\"} == 1)");
            (r.len() == 2).then_some(r)
        },
    );
    assert_eq!(up.len(), 2);
}

#[test]
fn an_unreachable_or_forbidding_api_server_keeps_the_last_targets() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let mut fake = FakeCluster::start(setup.root.path(), "stage", &["node-a", "node-b"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&fake);
    assert_exit(&setup.promfed(&["apply"]), 0);
    let targets_before = setup.read("state/targets/stage/kubelet.json");
    assert!(targets_before.contains("/api/v1/nodes/node-b/proxy/metrics"));

    // 403: the service account lost `list nodes`.
    let mut state = fake.current_state();
    state["tokens"][&fake.token]["deny"] = serde_json::json!(["list nodes"]);
    fake.set_state(state);
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("discovery failed (forbidden): 403 Forbidden: nodes is forbidden: User \"system:serviceaccount:monitoring:prometheus\" cannot list resource \"nodes\""),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("promfed needs `list` on `nodes`"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        setup.read("state/targets/stage/kubelet.json"),
        targets_before
    );

    // A wrong token: 401.
    setup.write("etc/promfed.d/stage/token", "not-the-token\n");
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("discovery failed (unauthorized): 401 Unauthorized"),
        "{}",
        stdout(&out)
    );

    // The API server is down.
    fake.stop();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("discovery failed (unreachable)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("its last targets stay in place"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        setup.read("state/targets/stage/kubelet.json"),
        targets_before
    );
    assert!(
        setup
            .read("prometheus/prometheus.yml")
            .contains("job_name: promfed/stage/kubelet")
    );
}

#[test]
fn a_ca_that_does_not_match_is_reported_as_a_tls_problem() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), "stage", &["node-a"], &exporter);
    setup.settings("http://127.0.0.1:1", "reload = \"http\"");
    setup.add_cluster(&fake);
    std::fs::copy(
        fake.pki("other-ca.crt"),
        setup.path("etc/promfed.d/stage/ca.crt"),
    )
    .unwrap();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("discovery failed (tls): TLS with"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("is ca_file the CA that signed this API server's certificate?"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_reload_that_does_not_take_is_rolled_back() {
    // Prometheus runs as `nobody`, but promfed was told it runs as root: an
    // unreadable CA passes promfed's checks and promtool, and Prometheus
    // 2.42 fails the reload of a job that already exists.
    let setup = Setup::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(setup.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), "stage", &["node-a"], &exporter);
    let prometheus = setup.prometheus(Some("nobody"));
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&fake);
    std::fs::set_permissions(
        setup.path("etc/promfed.d/stage/token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert_exit(&setup.promfed(&["apply"]), 0);
    prometheus.wait_targets_up("promfed/stage/", 4);
    let good = std::fs::read(setup.path("prometheus/prometheus.yml")).unwrap();

    std::fs::set_permissions(
        setup.path("etc/promfed.d/stage/ca.crt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let cluster_file = setup
        .read("etc/promfed.d/stage.toml")
        .replace("env = \"test\"", "env = \"test\", team = \"x\"");
    setup.write("etc/promfed.d/stage.toml", &cluster_file);
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("the new configuration did not take: reload failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("answered 500 Internal Server Error: failed to reload config"),
        "Prometheus's own answer is shown: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("rolled back to the previous"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(setup.path("prometheus/prometheus.yml")).unwrap(),
        good
    );
    let info = prometheus.api("/api/v1/status/runtimeinfo");
    assert_eq!(
        info["data"]["reloadConfigSuccess"], true,
        "the restored config is in force"
    );
}

#[test]
fn a_broken_cluster_file_keeps_its_last_good_config_and_the_others_are_applied() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    setup.add_cluster(&prod);
    assert_exit(&setup.promfed(&["apply"]), 0);
    prometheus.wait_targets_up("promfed/prod/", 4);

    // prod's file breaks; stage gets a new label; a new file is broken from the start.
    let prod_file = setup.read("etc/promfed.d/prod.toml");
    setup.write(
        "etc/promfed.d/prod.toml",
        &format!("{prod_file}scrape_intervall = \"5s\"\n"),
    );
    let stage_file = setup
        .read("etc/promfed.d/stage.toml")
        .replace("env = \"test\"", "env = \"test\", team = \"blue\"");
    setup.write("etc/promfed.d/stage.toml", &stage_file);
    setup.write("etc/promfed.d/new.toml", "api_server = 42\n");

    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:5:1: key `scrape_intervall`: unknown key",
            setup.path("etc/promfed.d/prod.toml").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:1:14: key `api_server`: expected a string",
            setup.path("etc/promfed.d/new.toml").display()
        )),
        "{err}"
    );
    let text = stdout(&out);
    assert!(
        text.contains("cluster prod")
            && text.contains("file invalid: keeping its last good configuration"),
        "{text}"
    );
    assert!(
        text.contains("cluster new")
            && text.contains("file invalid: not monitored until it is fixed"),
        "{text}"
    );
    assert!(text.contains("installed, reloaded and verified"), "{text}");

    // stage's change is in force; prod is still scraped as before.
    wait_for(
        "stage's new label",
        std::time::Duration::from_secs(20),
        || {
            let t = prometheus.wait_targets_up("promfed/stage/", 4);
            t.iter()
                .all(|t| t["labels"]["team"] == "blue")
                .then_some(())
        },
    );
    let prod_targets = prometheus.wait_targets_up("promfed/prod/", 4);
    assert!(
        prod_targets
            .iter()
            .all(|t| t["labels"]["cluster"] == "prod")
    );

    // Deleting prod's file removes its jobs.
    std::fs::remove_file(setup.path("etc/promfed.d/prod.toml")).unwrap();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 78); // new.toml is still broken
    assert!(
        !setup
            .read("prometheus/prometheus.yml")
            .contains("promfed/prod/")
    );
    assert!(!setup.path("state/targets/prod").exists());
}

#[test]
fn up_to_date_means_in_force_even_after_a_lost_reload() {
    // The reproduction: a reload lost to a stopped Prometheus must
    // not leave the next apply saying "up to date" while the jobs are absent.
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    assert_exit(&setup.promfed(&["apply"]), 0);

    setup.add_cluster(&prod);
    let pid = std::fs::read_to_string(&prometheus.pid_file).unwrap();
    let kill = |signal: &str| {
        let ok = std::process::Command::new("kill")
            .args([signal, pid.trim()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    kill("-STOP");
    let stopped = setup.promfed(&["apply"]);
    kill("-CONT");
    assert_exit(&stopped, 1);
    assert!(
        stdout(&stopped).contains("installed but not verified"),
        "{}",
        stdout(&stopped)
    );

    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("installed, reloaded and verified"),
        "the same bytes must be reloaded, not called up to date: {}",
        stdout(&out)
    );
    let loaded = prometheus.api("/api/v1/status/config")["data"]["yaml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(loaded.contains("promfed/prod/kubelet"), "{loaded}");

    // Now it is in force: the next apply changes nothing.
    let reloaded_at = prometheus.last_reload();
    let again = setup.promfed(&["apply"]);
    assert_exit(&again, 0);
    assert!(
        stdout(&again).contains("is up to date, no reload needed"),
        "{}",
        stdout(&again)
    );
    assert_eq!(prometheus.last_reload(), reloaded_at);
}

#[test]
fn an_unlistable_folder_or_an_unreadable_file_keeps_the_clusters() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    setup.add_cluster(&prod);
    assert_exit(&setup.promfed(&["apply"]), 0);
    prometheus.wait_targets_up("promfed/", 8);
    let kept = |what: &str| {
        let config = setup.read("prometheus/prometheus.yml");
        for cluster in ["stage", "prod"] {
            assert!(
                config.contains(&format!("promfed/{cluster}/kubelet")),
                "{what}: {cluster}'s jobs are gone"
            );
            assert!(
                setup
                    .path(&format!("state/targets/{cluster}/kubelet.json"))
                    .exists(),
                "{what}: {cluster}'s targets are gone"
            );
            assert!(
                setup
                    .path(&format!("state/last-good/clusters/{cluster}.json"))
                    .exists(),
                "{what}: {cluster}'s last good definition is gone"
            );
        }
        // Still there (a scrape may be slow under load: health is not the point).
        assert_eq!(promfed_targets(&prometheus), 8, "{what}");
    };

    // The folder moved away: an error, not "every cluster removed".
    let folder = setup.path("etc/promfed.d");
    let moved = setup.path("etc/promfed.d.moved");
    std::fs::rename(&folder, &moved).unwrap();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("cannot list the clusters folder"),
        "{}",
        stderr(&out)
    );
    kept("folder moved away");
    std::fs::rename(&moved, &folder).unwrap();
    assert_exit(&setup.promfed(&["apply"]), 0);

    // A cluster file that became a dangling symlink: reported by name, and
    // the cluster keeps its last good definition.
    let file = setup.path("etc/promfed.d/prod.toml");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(setup.path("nowhere/prod.toml"), &file).unwrap();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains(&format!(
            "{}: cannot read: is a symlink to {}",
            file.display(),
            setup.path("nowhere/prod.toml").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("keeping its last good configuration"),
        "{}",
        stdout(&out)
    );
    kept("dangling symlink");
}

fn promfed_targets(prometheus: &Prometheus) -> usize {
    prometheus
        .active_targets()
        .iter()
        .filter(|t| {
            t["scrapePool"]
                .as_str()
                .is_some_and(|p| p.starts_with("promfed/"))
        })
        .count()
}

#[test]
fn the_operators_own_prometheus_yml_is_adopted_not_wiped() {
    // Debian's situation: an existing prometheus.yml of the operator's (a
    // node job, alerting, external labels, 15 s), and promfed's base still
    // as shipped. Nothing of it may be lost.
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let original = format!(
        "# Sample config for Prometheus.\n\nglobal:\n  scrape_interval:     15s # comments survive\n  external_labels:\n      monitor: 'example'\n\nalerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['localhost:9093']\n\nscrape_configs:\n  - job_name: 'node'\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        exporter.port
    );
    setup.write("prometheus/prometheus.yml", &original);
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/etc/promfed/prometheus.base.yml"
        ),
        setup.path("etc/prometheus.base.yml"),
    )
    .unwrap();
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);

    let check = setup.promfed(&["check"]);
    assert_exit(&check, 0);
    assert!(
        stderr(&check).contains("will adopt it"),
        "{}",
        stderr(&check)
    );
    assert!(
        !setup.path("state/adopted").exists(),
        "check writes nothing"
    );

    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("notice: adopted"), "{}", stderr(&out));
    assert_eq!(
        setup.read("state/adopted/prometheus.yml"),
        original,
        "byte for byte"
    );
    let installed = setup.read("prometheus/prometheus.yml");
    assert!(
        installed.starts_with("# Generated by promfed from"),
        "{installed}"
    );
    assert!(
        installed.contains("state/adopted/prometheus.yml"),
        "the header names the base in use"
    );

    // All of the operator's setup is in force, with the cluster's jobs.
    let loaded = prometheus.api("/api/v1/status/config")["data"]["yaml"]
        .as_str()
        .unwrap()
        .to_string();
    for expected in [
        "job_name: node",
        "localhost:9093",
        "monitor: example",
        "scrape_interval: 15s",
        "job_name: promfed/stage/kubelet",
    ] {
        assert!(
            loaded.contains(expected),
            "missing {expected:?} in\n{loaded}"
        );
    }
    prometheus.wait_targets_up("node", 1);

    // Said once: the next apply adopts nothing more, and keeps the base.
    let again = setup.promfed(&["apply"]);
    assert_exit(&again, 0);
    assert!(!stderr(&again).contains("adopted"), "{}", stderr(&again));
    assert_eq!(setup.read("state/adopted/prometheus.yml"), original);
}

#[test]
fn label_values_reach_prometheus_exactly_as_written() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let file = setup.read("etc/promfed.d/stage.toml").replace(
        "labels = { env = \"test\" }",
        "labels = { a = \"a$1b\", b = \"$foo-bar\", c = \"cost$$\", d = \"${1}x\" }",
    );
    setup.write("etc/promfed.d/stage.toml", &file);
    assert_exit(&setup.promfed(&["apply"]), 0);
    prometheus.wait_targets_up("promfed/stage/", 4);
    let target = prometheus
        .active_targets()
        .into_iter()
        .find(|t| t["scrapePool"] == "promfed/stage/kubelet")
        .expect("the kubelet target");
    let labels = &target["labels"];
    assert_eq!(labels["a"], "a$1b", "{labels}");
    assert_eq!(labels["b"], "$foo-bar", "{labels}");
    assert_eq!(labels["c"], "cost$$", "{labels}");
    assert_eq!(labels["d"], "${1}x", "{labels}");
}

#[test]
fn one_cluster_the_checker_refuses_never_holds_the_others_back() {
    // Validation catches what it knows (a 5 s job under a 10 s timeout is
    // clamped as Prometheus does; 293y is refused with file and line); for
    // any other refusal, promfed finds the clusters responsible. A wrapper
    // around the real promtool stands in for a refusal promfed cannot
    // foresee: it refuses any candidate carrying `refuse-me`.
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let evil = FakeCluster::start(setup.root.path(), "evil", &["e-1"], &exporter);
    let late = FakeCluster::start(setup.root.path(), "late", &["l-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.write(
        "bin/promtool",
        &format!("#!/bin/sh\nif grep -q refuse-me \"$3\"; then echo 'FAILED: refuse-me is not allowed' >&2; exit 1; fi\nexec {PROMTOOL} \"$@\"\n"),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        setup.path("bin/promtool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let settings = setup
        .read("etc/promfed.toml")
        .replace(
            &format!("promtool = \"{PROMTOOL}\""),
            "promtool = \"../bin/promtool\"",
        )
        .replace(
            "scrape_interval = \"2s\"",
            "scrape_interval = \"30s\"\nscrape_timeout = \"10s\"",
        );
    setup.write("etc/promfed.toml", &settings);
    setup.add_cluster(&stage);
    setup.add_cluster(&evil);
    assert_exit(&setup.promfed(&["apply"]), 0);

    // A 5 s job under the 10 s timeout: clamped, as Prometheus does.
    let fast = format!(
        "{}[kubelet]\nscrape_interval = \"5s\"\n",
        setup.read("etc/promfed.d/stage.toml")
    );
    setup.write("etc/promfed.d/stage.toml", &fast);
    // 293 years: refused with file, line and key, before promtool.
    let evil_file = setup.read("etc/promfed.d/evil.toml");
    setup.write(
        "etc/promfed.d/evil.toml",
        &format!("{evil_file}[cadvisor]\nscrape_interval = \"293y\"\n"),
    );
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("evil.toml:6:19: key `cadvisor.scrape_interval`: `293y` is longer than Prometheus accepts"),
        "{}",
        stderr(&out)
    );
    let installed = setup.read("prometheus/prometheus.yml");
    let lines: Vec<&str> = installed.lines().map(str::trim).collect();
    assert!(
        lines
            .windows(2)
            .any(|w| w == ["scrape_interval: 5s", "scrape_timeout: 5s"]),
        "{installed}"
    );

    // A refusal promfed cannot foresee, beside a new cluster: the new one is
    // applied, the refused one keeps its last good definition.
    setup.write(
        "etc/promfed.d/evil.toml",
        &evil_file.replace("env = \"test\"", "env = \"refuse-me\""),
    );
    setup.add_cluster(&late);
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("evil.toml: this cluster's configuration is refused (prometheus), so its last good definition stays in force"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("refuse-me is not allowed"),
        "{}",
        stderr(&out)
    );
    let installed = setup.read("prometheus/prometheus.yml");
    assert!(
        installed.contains("promfed/late/kubelet"),
        "the new cluster is applied"
    );
    assert!(
        installed.contains("promfed/evil/kubelet"),
        "the refused one keeps its jobs"
    );
    assert!(
        !installed.contains("refuse-me"),
        "but not its refused definition"
    );
    prometheus.wait_targets_up("promfed/late/", 4);
    prometheus.wait_targets_up("promfed/evil/", 4);
}

#[test]
fn every_scalar_of_the_base_reaches_prometheus_as_written() {
    // The same base given to a Prometheus of its own is the reference: the
    // promfed-managed Prometheus must read every value exactly as it does.
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let base = "# tricky scalars, quoted and not\nglobal:\n  scrape_interval: 15s\n  external_labels:\n    version: 1.10\n    build: 0x1F\n    octal: 0o17\n    old_octal: 017\n    exponent: 1e3\n    float: .5\n    infinity: .inf\n    big: 123456789012345678901234567890\n    bigger: 1234567890123456789012345678901234567890123\n    yes_: yes\n    no_: no\n    on_: on\n    off_: Off\n    date: 2001-12-14\n    time: 2001-12-14t21:59:43.10-05:00\n    colon: 1:20\n    single: '1.10'\n    double: \"0x1F\"\n    tagged: !!str 1e3\n    tilde: ~\n    plus: +12\nrule_files: ~\nscrape_configs: []\n";
    setup.write("etc/prometheus.base.yml", base);
    let reference = Prometheus::start(
        &{
            let dir = setup.path("reference");
            std::fs::create_dir_all(&dir).unwrap();
            dir
        },
        &setup.path("etc/prometheus.base.yml"),
        None,
    );
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);

    let installed = setup.read("prometheus/prometheus.yml");
    let operators_part = base.strip_suffix("scrape_configs: []\n").unwrap();
    assert!(
        installed.contains(operators_part),
        "the base's text is copied as written:\n{installed}"
    );
    let labels = |p: &Prometheus| {
        let yaml = p.api("/api/v1/status/config")["data"]["yaml"]
            .as_str()
            .unwrap()
            .to_string();
        let doc: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        doc["global"]["external_labels"].clone()
    };
    let expected = labels(&reference);
    assert_eq!(expected["version"], "1.10", "the reference reads the text");
    assert_eq!(expected["big"], "123456789012345678901234567890");
    assert_eq!(labels(&prometheus), expected);
}

#[test]
fn node_exporters_come_from_endpoint_slices_and_from_endpoints_only_without_them() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    // Three pods: the fake puts them in two slices.
    let fake = FakeCluster::start(
        setup.root.path(),
        "stage",
        &["n-1", "n-2", "n-3"],
        &exporter,
    );
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&fake);
    let requests = |what: &str| fake.requests(what);
    let exporters = || {
        setup
            .read("state/targets/stage/node-exporter.json")
            .matches("\"targets\"")
            .count()
    };

    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("3 nodes, 3 node-exporter pods"),
        "{}",
        stdout(&out)
    );
    assert_eq!(exporters(), 3);
    assert!(requests("list_endpointslices") >= 1);
    assert_eq!(
        requests("get_endpoints"),
        0,
        "Endpoints are deprecated: not read"
    );

    // A pod that is not ready is left out.
    let mut state = fake.current_state();
    state["node_exporter"]["pods"][1]["ready"] = serde_json::json!(false);
    fake.set_state(state.clone());
    let out = setup.promfed(&["apply"]);
    assert!(
        stdout(&out).contains("3 nodes, 2 node-exporter pods"),
        "{}",
        stdout(&out)
    );
    assert_eq!(exporters(), 2);

    // A server without discovery.k8s.io/v1: Endpoints, with the same answer.
    state["no_endpointslices"] = serde_json::json!(true);
    fake.set_state(state);
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("3 nodes, 2 node-exporter pods"),
        "{}",
        stdout(&out)
    );
    assert!(requests("get_endpoints") >= 1);
    prometheus.wait_targets_up("promfed/stage/node-exporter", 2);
}

/// How often Prometheus answered `handler`, from its own metrics.
fn handled(prometheus: &Prometheus, handler: &str) -> u64 {
    let metrics = http_get(&format!("{}/metrics", prometheus.url())).unwrap();
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && l.contains(&format!("handler=\"{handler}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_no_op_runs_no_promtool_and_a_known_prometheus_is_not_read_back_whole() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus(None);
    // promtool, counting its runs.
    let calls = setup.path("promtool.calls");
    let wrapper = setup.path("promtool");
    setup.write(
        "promtool",
        &format!(
            "#!/bin/sh\necho run >> {}\nexec {PROMTOOL} \"$@\"\n",
            calls.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let settings = setup
        .read("etc/promfed.toml")
        .replace(PROMTOOL, wrapper.to_str().unwrap());
    setup.write("etc/promfed.toml", &settings);
    let runs = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let config_reads = || handled(&prometheus, "/api/v1/status/config");

    // The first apply proves that this Prometheus reads promfed's file.
    setup.add_cluster(&stage);
    assert_exit(&setup.promfed(&["apply"]), 0);
    assert!(runs() >= 1);
    assert_eq!(config_reads(), 1, "read back once to prove the file");

    // A change: gated, installed, reloaded; the same Prometheus run needs
    // no second reading of its whole configuration.
    setup.add_cluster(&prod);
    let (before_runs, before_reads) = (runs(), config_reads());
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("installed, reloaded and verified"),
        "{}",
        stdout(&out)
    );
    assert_eq!(runs(), before_runs + 1, "a change is gated");
    assert_eq!(config_reads(), before_reads);

    // Nothing changed: no promtool, no reload, no reading back.
    let reloaded_at = prometheus.last_reload();
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("is up to date, no reload needed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(runs(), before_runs + 1, "a no-op runs no promtool");
    assert_eq!(config_reads(), before_reads);
    assert_eq!(prometheus.last_reload(), reloaded_at);

    // `check` always asks promtool.
    assert_exit(&setup.promfed(&["check"]), 0);
    assert_eq!(runs(), before_runs + 2);
}

#[test]
fn a_prometheus_that_reads_another_file_is_caught() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    // Prometheus runs a copy: promfed's file is not the one it reads.
    std::fs::copy(
        setup.path("prometheus/prometheus.yml"),
        setup.path("prometheus/other.yml"),
    )
    .unwrap();
    let prometheus =
        Prometheus::start(setup.root.path(), &setup.path("prometheus/other.yml"), None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 1);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains("does not match: missing [promfed/stage/"),
        "{said}"
    );
}

/// How many inotify instances a process holds.
fn inotify_instances(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", pid.trim()))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("inotify"))
        .count()
}

#[test]
fn prometheus_spends_one_inotify_instance_per_cluster() {
    // Debian allows 128 per user; three per cluster ran out at 42 clusters.
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), "stage", &["n-1", "n-2"], &exporter);
    let prometheus = setup.prometheus(None);
    let pid = std::fs::read_to_string(&prometheus.pid_file).unwrap();
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let before = inotify_instances(&pid);
    setup.add_cluster(&fake);
    let stage = setup.read("etc/promfed.d/stage.toml");
    for name in ["prod", "dev"] {
        setup.write(&format!("etc/promfed.d/{name}.toml"), &stage);
    }
    assert_exit(&setup.promfed(&["apply"]), 0);
    let used = wait_for(
        "the watchers of three clusters",
        Duration::from_secs(10),
        || {
            let n = inotify_instances(&pid) - before;
            (n >= 3).then_some(n)
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        inotify_instances(&pid) - before,
        3,
        "one per cluster, not one per job"
    );
    assert_eq!(used, 3);
    // Each job still has exactly its own targets.
    for name in ["stage", "prod", "dev"] {
        prometheus.wait_targets_up(&format!("promfed/{name}/"), 7);
        for (job, count) in [
            ("kubelet", 2),
            ("cadvisor", 2),
            ("node-exporter", 2),
            ("apiserver", 1),
        ] {
            let pool = format!("promfed/{name}/{job}");
            let targets = prometheus
                .active_targets()
                .into_iter()
                .filter(|t| t["scrapePool"] == pool.as_str())
                .count();
            assert_eq!(targets, count, "{pool}");
        }
    }
}

#[test]
fn kubernetes_sd_mode_runs_on_prometheus_2_53_with_the_labels_of_file_sd_mode() {
    // Debian 12's Prometheus has no Kubernetes discovery; Debian 13's does.
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), "stage", &["node-a", "node-b"], &exporter);
    let prometheus =
        Prometheus::start_trixie(setup.root.path(), &setup.path("prometheus/prometheus.yml"));
    setup.kubernetes_sd_settings(&prometheus.url());
    setup.add_cluster(&fake);

    let out = setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("installed, reloaded and verified"),
        "{}",
        stdout(&out)
    );
    assert!(
        setup
            .read("prometheus/prometheus.yml")
            .contains("role: endpointslice")
    );
    // Prometheus discovers by itself, through its own watches: the same
    // targets and labels as promfed's file_sd mode gives.
    let targets = prometheus.wait_targets_up("promfed/stage/", 7);
    assert_cluster_targets(
        &targets,
        "stage",
        &["node-a", "node-b"],
        &format!("127.0.0.1:{}", fake.port),
    );
    let series = wait_for("node-exporter series", Duration::from_secs(30), || {
        let r = prometheus.query(
            "count by (instance) (node_cpu_seconds_total{cluster=\"stage\",job=\"node-exporter\"})",
        );
        (r.len() == 2).then_some(r)
    });
    assert_eq!(series.len(), 2);

    // A node joins: Prometheus's watch brings it, with no reload.
    let reloaded = prometheus.last_reload();
    fake.set_state(fake.state(&["node-a", "node-b", "node-c"], exporter.port));
    let targets = prometheus.wait_targets_up("promfed/stage/", 10);
    assert_cluster_targets(
        &targets,
        "stage",
        &["node-a", "node-b", "node-c"],
        &format!("127.0.0.1:{}", fake.port),
    );
    assert_eq!(prometheus.last_reload(), reloaded);
}
