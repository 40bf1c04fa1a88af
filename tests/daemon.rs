//! `promfed run` with real processes: Prometheus, Alertmanager,
//! node-exporter, the fake API servers and a notify socket standing in for
//! systemd.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

fn up_targets(prometheus: &Prometheus, prefix: &str) -> usize {
    prometheus
        .active_targets()
        .iter()
        .filter(|t| {
            t["scrapePool"].as_str().unwrap_or("").starts_with(prefix) && t["health"] == "up"
        })
        .count()
}

#[test]
fn clusters_come_and_go_while_running_and_systemd_hears_about_it() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1", "p-2"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    // As under WatchdogSec=400ms: the watchdog is petted at half that.
    let mut daemon = setup.daemon_with_env(&[("WATCHDOG_USEC", "400000")]);

    let ready = daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    daemon.wait_message("WATCHDOG=1", Duration::from_secs(2), |m| {
        m == "WATCHDOG=1\n"
    });
    assert!(
        ready.contains("STATUS=1 cluster OK, 0 failing; last apply"),
        "{ready}"
    );
    prometheus.wait_targets_up("promfed/stage/", 4);

    // A new cluster file: its targets come up without restarting anything.
    setup.add_cluster(&prod);
    prometheus.wait_targets_up("promfed/prod/", 7);
    daemon.wait_message("a status with both clusters", LONG, |m| {
        m.contains("STATUS=2 clusters OK, 0 failing")
    });

    // Broken: prod keeps its last good configuration, stage is unaffected.
    let prod_file = setup.read("etc/promfed.d/prod.toml");
    setup.write("etc/promfed.d/prod.toml", &format!("{prod_file}oops = 1\n"));
    let status = daemon.wait_status("the broken file in status.json", LONG, |s| {
        s["clusters"]["prod"]["definition"] == "kept_last_good"
    });
    assert!(
        status["problems"][0]
            .as_str()
            .unwrap()
            .contains("prod.toml:5:1: key `oops`: unknown key"),
        "{status}"
    );
    assert_eq!(up_targets(&prometheus, "promfed/prod/"), 7);
    assert_eq!(up_targets(&prometheus, "promfed/stage/"), 4);

    // Deleted: its jobs are gone.
    std::fs::remove_file(setup.path("etc/promfed.d/prod.toml")).unwrap();
    wait_for("prod's jobs to be gone", LONG, || {
        (!setup
            .read("prometheus/prometheus.yml")
            .contains("promfed/prod/")
            && up_targets(&prometheus, "promfed/prod/") == 0)
            .then_some(())
    });

    // SIGHUP re-reads everything: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    daemon.drain();
    let before = daemon.messages.len();
    daemon.signal("HUP");
    daemon.wait_message_since(before, "READY=1 after the reload", LONG, |m| {
        m.contains("READY=1")
    });
    // A STATUS= of the transaction before may still arrive in between.
    let reload: Vec<&String> = daemon.messages[before..]
        .iter()
        .filter(|m| m.contains("RELOADING=1") || m.contains("READY=1"))
        .collect();
    assert!(
        reload[0].contains("RELOADING=1") && reload[0].contains("MONOTONIC_USEC="),
        "{reload:?}"
    );
    assert!(daemon.log().contains("SIGHUP: re-reading everything"));

    // SIGTERM: STOPPING=1 and a clean exit within a second, nothing left behind.
    let start = Instant::now();
    daemon.signal("TERM");
    let status = wait_for("promfed to exit", Duration::from_secs(5), || {
        daemon.process.child.try_wait().unwrap()
    });
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    daemon.wait_message("STOPPING=1", Duration::from_secs(1), |m| {
        m.contains("STOPPING=1")
    });
    let leftovers: Vec<_> = std::fs::read_dir(setup.path("prometheus"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["prometheus.yml"]);
    // The order systemd expects: READY before anything else but STATUS.
    let first_ready = daemon
        .messages
        .iter()
        .position(|m| m.contains("READY=1"))
        .unwrap();
    assert!(
        daemon.messages[..first_ready]
            .iter()
            .all(|m| !m.contains("RELOADING") && !m.contains("STOPPING"))
    );
    assert!(daemon.messages.last().unwrap().contains("STOPPING=1"));
}

#[test]
fn nodes_tokens_and_failures_change_targets_without_a_reload() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up("promfed/stage/", 4);
    let loaded = prometheus.last_reload();

    // A node joins: it becomes a target, and Prometheus is not reloaded.
    stage.set_state(stage.state(&["s-1", "s-2"], exporter.port));
    prometheus.wait_targets_up("promfed/stage/", 7);
    assert_eq!(prometheus.last_reload(), loaded, "file_sd needs no reload");
    let metrics = setup.read("state/promfed.prom");
    assert!(
        metrics.contains("promfed_cluster_targets{cluster=\"stage\",scrape_job=\"kubelet\"} 2"),
        "{metrics}"
    );

    // The token rotates in the cluster and in the file: targets stay up.
    let mut state = stage.current_state();
    state["tokens"] = serde_json::json!({ "token-stage-2": { "user": "system:serviceaccount:monitoring:prometheus" } });
    stage.set_state(state);
    setup.write("etc/promfed.d/stage/token", "token-stage-2\n");
    std::thread::sleep(Duration::from_secs(5)); // two scrape intervals on the new token
    prometheus.wait_targets_up("promfed/stage/", 7);
    assert_eq!(
        daemon.status()["clusters"]["stage"]["discovery"]["state"],
        "ok"
    );
    assert_eq!(
        prometheus.last_reload(),
        loaded,
        "a rotated token needs no reload"
    );

    // The API server fails: the status says so, the targets stay.
    let targets = setup.read("state/targets/stage/kubelet.json");
    let mut state = stage.current_state();
    state["fail"] = serde_json::json!(500);
    stage.set_state(state);
    let status = daemon.wait_status("discovery to be failing", LONG, |s| {
        s["clusters"]["stage"]["discovery"]["state"] == "failing"
    });
    assert_eq!(status["clusters"]["stage"]["discovery"]["reason"], "http");
    assert!(
        status["clusters"]["stage"]["discovery"]["error"]
            .as_str()
            .unwrap()
            .contains("answered 500"),
        "{status}"
    );
    assert_eq!(setup.read("state/targets/stage/kubelet.json"), targets);
    daemon.wait_message("a failing STATUS", LONG, |m| {
        m.contains("0 clusters OK, 1 failing (stage)")
    });
    let metrics = setup.read("state/promfed.prom");
    assert!(
        metrics.contains("promfed_cluster_discovery_healthy{cluster=\"stage\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("promfed_cluster_discovery_errors_total{cluster=\"stage\",reason=\"http\"}"),
        "{metrics}"
    );

    // `promfed status` says the same, for a person and for scripts.
    let out = setup.promfed(&["status"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("stage    failing"),
        "{}",
        stdout(&out)
    );
    let out = setup.promfed(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["clusters"]["stage"]["discovery"]["state"], "failing");
}

#[test]
fn a_change_while_prometheus_is_down_is_applied_when_it_is_back() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = setup.prometheus(None);
    let port = prometheus.port;
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));

    drop(prometheus);
    setup.add_cluster(&stage);
    let status = daemon.wait_status("an unverified install", LONG, |s| {
        s["last_apply"]["prometheus"] == "unverified"
    });
    assert!(
        status["last_apply"]["error"]
            .as_str()
            .unwrap()
            .contains("Prometheus is not reachable"),
        "{status}"
    );

    // Back on the same port: the retry reloads and verifies.
    let prometheus = Prometheus::start_on(
        setup.root.path(),
        &setup.path("prometheus/prometheus.yml"),
        port,
    );
    // Restarted, it read the installed file itself: the retry finds it in
    // force (no reload needed) or reloads it; either way verified.
    daemon.wait_status("the retry to verify", LONG, |s| {
        s["last_apply"]["error"].is_null()
            && (s["last_apply"]["prometheus"] == "applied"
                || s["last_apply"]["prometheus"] == "unchanged")
    });
    prometheus.wait_targets_up("promfed/stage/", 4);
}

#[test]
fn alertmanager_gets_a_route_per_cluster_and_a_bad_receiver_is_refused() {
    require(AMTOOL);
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.write(
        "etc/alertmanager.base.yml",
        "route:\n  receiver: default\nreceivers:\n  - name: default\n  - name: team-stage\n",
    );
    // As if promfed had written it before: marked, so it is promfed's.
    setup.write(
        "prometheus/alertmanager.yml",
        &format!(
            "# Generated by promfed (the test's first file)\n{}",
            setup.read("etc/alertmanager.base.yml")
        ),
    );
    let alertmanager = Alertmanager::start(
        setup.root.path(),
        &setup.path("prometheus/alertmanager.yml"),
    );
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let settings = setup.read("etc/promfed.toml");
    setup.write(
        "etc/promfed.toml",
        &format!(
            "{settings}\n[alertmanager]\nconfig_file = \"../prometheus/alertmanager.yml\"\nbase_file = \"alertmanager.base.yml\"\namtool = \"{AMTOOL}\"\nurl = \"{}\"\nuser = \"root\"\n",
            alertmanager.url()
        ),
    );
    setup.add_cluster(&stage);
    let cluster = setup.read("etc/promfed.d/stage.toml");
    setup.write(
        "etc/promfed.d/stage.toml",
        &format!("receiver = \"team-stage\"\n{cluster}"),
    );

    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    let status = daemon.wait_status("both applied", LONG, |s| {
        s["last_apply"]["alertmanager"] == "applied"
    });
    assert_eq!(status["last_apply"]["prometheus"], "applied");
    assert_eq!(
        alertmanager.routes(),
        [("cluster=\"stage\"".to_string(), "team-stage".to_string())]
    );

    // A receiver that does not exist: amtool refuses that cluster's route,
    // so the cluster keeps its last good definition (and route) and the
    // problem is reported; nothing else is held back.
    let installed = setup.read("prometheus/alertmanager.yml");
    let prometheus_config = setup.read("prometheus/prometheus.yml");
    setup.write(
        "etc/promfed.d/stage.toml",
        &format!("receiver = \"nobody-home\"\n{cluster}"),
    );
    let status = daemon.wait_status("amtool's refusal", LONG, |s| {
        s["problems"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p.as_str().unwrap_or("").contains("nobody-home"))
        })
    });
    let problem = status["problems"].to_string();
    assert!(
        problem.contains("stage.toml: this cluster's configuration is refused (alertmanager), so its last good definition stays in force")
            && problem.contains("amtool rejected the candidate"),
        "{status}"
    );
    assert_eq!(
        status["clusters"]["stage"]["definition"], "kept_last_good",
        "{status}"
    );
    assert_eq!(setup.read("prometheus/alertmanager.yml"), installed);
    assert_eq!(
        alertmanager.routes(),
        [("cluster=\"stage\"".to_string(), "team-stage".to_string())]
    );
    // Prometheus's file did not change, so it was not touched either.
    assert_eq!(setup.read("prometheus/prometheus.yml"), prometheus_config);
    assert_eq!(status["last_apply"]["prometheus"], "unchanged");
}

#[test]
fn status_tells_the_truth_about_a_stopped_daemon_and_a_broken_settings_file() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    daemon.wait_status("stage discovered", LONG, |s| {
        s["clusters"]["stage"]["discovery"]["state"] == "ok"
    });

    // promfed.toml broken: the daemon runs on its last good settings, and
    // status still shows what it does.
    let good_settings = setup.read("etc/promfed.toml");
    setup.write("etc/promfed.toml", &format!("{good_settings}wat = 1\n"));
    let out = setup.promfed(&["status"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("stage"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("has 1 problem (`promfed check` shows them)"),
        "{}",
        stderr(&out)
    );

    // Stopped: not "running since", and not success.
    daemon.signal("TERM");
    wait_for("promfed to exit", Duration::from_secs(5), || {
        daemon.process.child.try_wait().unwrap()
    });
    let out = setup.promfed(&["status"]);
    assert_exit(&out, 3);
    assert!(
        stdout(&out).contains("promfed is not running"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_replaced_clusters_folder_is_watched_again() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up("promfed/stage/", 4);

    // A backup copied back over the folder: same path, another inode.
    let folder = setup.path("etc/promfed.d");
    let copy = setup.path("etc/promfed.d.bak");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&folder)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::rename(&copy, &folder).unwrap();
    std::thread::sleep(Duration::from_secs(3));

    // An edit in the new folder is seen without a SIGHUP.
    setup.add_cluster(&prod);
    let start = Instant::now();
    while up_targets(&prometheus, "promfed/prod/") < 4 {
        assert!(
            start.elapsed() < LONG,
            "prod never came up:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        daemon.log().contains("watching it again"),
        "{}",
        daemon.log()
    );
}

#[test]
fn without_inotify_the_daemon_polls_says_it_is_degraded_and_recovers() {
    use std::os::unix::fs::PermissionsExt;
    let user = test_user("promfed-itest");
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    // The tree becomes the test user's, who runs the daemon.
    std::fs::create_dir_all(setup.path("state")).unwrap();
    let chown = Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(setup.root.path())
        .status()
        .unwrap();
    assert!(chown.success());
    std::fs::set_permissions(setup.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // Every inotify instance of that user is taken, as when Prometheus's
    // file_sd jobs use up Debian's 128.
    let hog = InotifyHog::start(&user);
    let mut daemon = setup.daemon_as(Some(&user), &[]);
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up("promfed/stage/", 4);
    daemon.wait_status("degraded in status.json", LONG, |s| {
        s["degraded"]
            .as_str()
            .is_some_and(|d| d.contains("polling"))
    });
    let out = setup.promfed(&["status"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("degraded: polling"),
        "{}",
        stdout(&out)
    );
    assert!(
        setup
            .read("state/promfed.prom")
            .contains("promfed_watch_degraded 1"),
        "{}",
        setup.read("state/promfed.prom")
    );
    daemon.wait_message("degraded in STATUS=", LONG, |m| {
        m.contains("degraded: polling")
    });

    // Changes are still seen, by polling.
    setup.add_cluster(&prod);
    Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(setup.path("etc"))
        .status()
        .unwrap();
    prometheus.wait_targets_up("promfed/prod/", 4);

    // Instances free again: the watch comes back by itself.
    drop(hog);
    daemon.wait_status("the watch restored", LONG, |s| s["degraded"].is_null());
    // status.json is written first, the metrics file right after.
    wait_for("the metric restored", LONG, || {
        setup
            .read("state/promfed.prom")
            .contains("promfed_watch_degraded 0")
            .then_some(())
    });
    assert!(
        daemon.log().contains("watching folders again"),
        "{}",
        daemon.log()
    );
}

#[test]
fn sigterm_ends_the_daemon_within_a_second_whatever_it_is_reading() {
    let setup = Setup::new();
    setup.settings("http://127.0.0.1:1", "reload = \"http\"");
    // Twenty cluster files at the size limit, full of unknown keys: reading
    // them all takes seconds.
    let mut big =
        String::from("api_server = \"https://127.0.0.1:1\"\ntoken_file = \"t\"\nca_file = \"c\"\n");
    let mut i = 0;
    while big.len() < (2 << 20) - 64 {
        big.push_str(&format!("key{i} = 1\n"));
        i += 1;
    }
    for n in 0..20 {
        setup.write(&format!("etc/promfed.d/big{n}.toml"), &big);
    }
    let mut daemon = setup.daemon();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        daemon.process.child.try_wait().unwrap().is_none(),
        "still reading"
    );
    let start = Instant::now();
    daemon.signal("TERM");
    let status = wait_for("promfed to exit", Duration::from_secs(10), || {
        daemon.process.child.try_wait().unwrap()
    });
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_edit_where_a_linked_cluster_file_lives_is_noticed() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    // The cluster file lives elsewhere (a configuration repository, say).
    let linked = setup.path("repo/stage.toml");
    std::fs::create_dir_all(setup.path("repo")).unwrap();
    let text = setup
        .read("etc/promfed.d/stage.toml")
        .replace(
            "ca_file = \"stage/ca.crt\"",
            &format!(
                "ca_file = \"{}\"",
                setup.path("etc/promfed.d/stage/ca.crt").display()
            ),
        )
        .replace(
            "token_file = \"stage/token\"",
            &format!(
                "token_file = \"{}\"",
                setup.path("etc/promfed.d/stage/token").display()
            ),
        );
    std::fs::write(&linked, &text).unwrap();
    std::fs::remove_file(setup.path("etc/promfed.d/stage.toml")).unwrap();
    std::os::unix::fs::symlink(&linked, setup.path("etc/promfed.d/stage.toml")).unwrap();
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up("promfed/stage/", 4);

    std::fs::write(&linked, text.replace("env = \"test\"", "env = \"edited\"")).unwrap();
    wait_for("the edit in force", LONG, || {
        setup
            .read("prometheus/prometheus.yml")
            .contains("replacement: edited")
            .then_some(())
    });
}

#[test]
fn watch_events_become_targets_without_a_reload_or_a_relist() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["n-1", "n-2"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.relist_rarely();
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up("promfed/stage/kubelet", 2);
    let requests = |what: &str| stage.requests(what);
    wait_for("both watches", LONG, || {
        (requests("watch_nodes") >= 1 && requests("watch_endpointslices") >= 1).then_some(())
    });
    let lists = requests("list_nodes");
    let reloaded = prometheus.last_reload();

    // A node joins with its node-exporter pod (a new EndpointSlice).
    stage.set_state(stage.state(&["n-1", "n-2", "n-3"], exporter.port));
    prometheus.wait_targets_up("promfed/stage/kubelet", 3);
    prometheus.wait_targets_up("promfed/stage/node-exporter", 3);
    // It leaves: its slice is deleted, and so are its targets.
    stage.set_state(stage.state(&["n-1", "n-2"], exporter.port));
    wait_for("n-3's targets gone", LONG, || {
        let exporters = setup.read("state/targets/stage/node-exporter.json");
        let kubelets = setup.read("state/targets/stage/kubelet.json");
        (!exporters.contains("n-3") && !kubelets.contains("n-3")).then_some(())
    });
    assert_eq!(requests("list_nodes"), lists, "events, not relists");
    assert_eq!(prometheus.last_reload(), reloaded, "no reload on churn");

    // A 410 (the server's watch cache moved on): promfed relists, and sees
    // what changed meanwhile.
    let mut state = stage.state(&["n-1", "n-2", "n-4"], exporter.port);
    state["faults"] = serde_json::json!({"expire_watches": true});
    stage.set_state(state);
    wait_for("a relist after the 410", LONG, || {
        (requests("list_nodes") > lists).then_some(())
    });
    stage.set_state(stage.state(&["n-1", "n-2", "n-4"], exporter.port));
    wait_for("n-4 in the targets file", LONG, || {
        setup
            .read("state/targets/stage/kubelet.json")
            .contains("n-4")
            .then_some(())
    });
    // Prometheus may still show n-3 for one discovery batch: wait for n-4.
    wait_for("n-4 in Prometheus", LONG, || {
        let targets = prometheus.wait_targets_up("promfed/stage/kubelet", 3);
        targets
            .iter()
            .any(|t| t["labels"]["instance"] == "n-4")
            .then_some(())
    });
    assert_eq!(prometheus.last_reload(), reloaded, "no reload on churn");
}

/// Lists and watches hold no TLS buffer between reads (`LeanTls`): an API
/// server that speaks only TLS 1.2, and answers larger than one TLS record
/// (300 nodes, one EndpointSlice of 300 endpoints), are read whole.
#[test]
fn tls_1_2_and_answers_of_many_records_are_read_whole() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let old = FakeCluster::start_with_env(
        setup.root.path(),
        "old",
        &["n-1"],
        &exporter,
        &[("FAKE_APISERVER_TLS_MAX", "1.2")],
    );
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.relist_rarely();
    setup.add_cluster(&old);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up("promfed/old/kubelet", 1);
    wait_for("both watches", LONG, || {
        (old.requests("watch_nodes") >= 1 && old.requests("watch_endpointslices") >= 1)
            .then_some(())
    });

    let many: Vec<String> = (1..=300).map(|i| format!("n-{i}")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    old.set_state(old.state(&names, exporter.port));
    wait_for("300 nodes and 300 pods by watch", LONG, || {
        let kubelets = setup.read("state/targets/old/kubelet.json");
        let exporters = setup.read("state/targets/old/node-exporter.json");
        (kubelets.matches("\"instance\"").count() == 300
            && exporters.matches("\"instance\"").count() == 300)
            .then_some(())
    });
    // And by a list: the same, read again from scratch.
    let lists = old.requests("list_nodes");
    daemon.signal("HUP");
    wait_for("a relist", LONG, || {
        (old.requests("list_nodes") > lists).then_some(())
    });
    let kubelets = setup.read("state/targets/old/kubelet.json");
    assert_eq!(kubelets.matches("\"instance\"").count(), 300);
    assert!(kubelets.contains("\"n-300\""));
}

#[test]
fn an_identity_that_may_list_but_not_watch_is_listed_instead() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["n-1"], &exporter);
    let mut state = stage.current_state();
    state["tokens"][&stage.token]["deny"] =
        serde_json::json!(["watch nodes", "watch endpointslices"]);
    stage.set_state(state);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    prometheus.wait_targets_up("promfed/stage/kubelet", 1);
    wait_for("the warning", LONG, || {
        daemon
            .log()
            .contains("may list but not watch")
            .then_some(())
    });

    let mut state = stage.state(&["n-1", "n-2"], exporter.port);
    state["tokens"][&stage.token]["deny"] =
        serde_json::json!(["watch nodes", "watch endpointslices"]);
    stage.set_state(state);
    prometheus.wait_targets_up("promfed/stage/kubelet", 2);
    let status = daemon.wait_status("discovery ok", LONG, |s| {
        s["clusters"]["stage"]["discovery"]["state"] == "ok"
    });
    assert!(
        status["clusters"]["stage"]["discovery"]["error"].is_null(),
        "{status}"
    );
}

/// The sum of the daemon's metric lines that start with `prefix`.
fn metric_sum(setup: &Setup, prefix: &str) -> u64 {
    let metrics = std::fs::read_to_string(setup.path("state/promfed.prom")).unwrap_or_default();
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `promfed_reloads_total` of Prometheus.
fn prometheus_reloads(setup: &Setup) -> u64 {
    metric_sum(setup, "promfed_reloads_total{program=\"prometheus\"")
}

/// `promfed_applies_total`: transactions run, whatever their result.
fn applies(setup: &Setup) -> u64 {
    metric_sum(setup, "promfed_applies_total{")
}

/// Waits until the daemon has been idle (no reload) for a while.
fn settled_reloads(setup: &Setup) -> u64 {
    let mut last = (prometheus_reloads(setup), Instant::now());
    wait_for("the daemon to settle", LONG, || {
        let now = prometheus_reloads(setup);
        if now != last.0 {
            last = (now, Instant::now());
        }
        (last.1.elapsed() > Duration::from_millis(1500)).then_some(now)
    })
}

#[test]
fn a_file_applies_when_whole_and_a_burst_costs_two_reloads() {
    use std::io::Write;
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["n-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    let before = settled_reloads(&setup);

    // A file renamed into place is one change, one transaction (the kernel
    // reports a rename three ways).
    let transactions = applies(&setup);
    let tmp = setup.path("etc/promfed.d/renamed.toml.tmp");
    std::fs::write(&tmp, setup.read("etc/promfed.d/stage.toml")).unwrap();
    std::fs::rename(&tmp, setup.path("etc/promfed.d/renamed.toml")).unwrap();
    let before = before + 1;
    assert_eq!(settled_reloads(&setup), before);
    assert_eq!(applies(&setup) - transactions, 1, "{}", daemon.log());

    // Written in two parts with a pause longer than the debounce: the first
    // part alone is a valid cluster, and must never be applied.
    let stage_file = setup.read("etc/promfed.d/stage.toml");
    let half = stage_file.replace("labels = { env = \"test\" }\n", "");
    assert_ne!(half, stage_file);
    let mut file = std::fs::File::create(setup.path("etc/promfed.d/again.toml")).unwrap();
    file.write_all(half.as_bytes()).unwrap();
    file.sync_all().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    file.write_all(b"labels = { env = \"whole\" }\n").unwrap();
    drop(file);
    wait_for("the whole file in force", LONG, || {
        let config = prometheus.api("/api/v1/status/config")["data"]["yaml"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        config.contains("promfed/again/").then_some(())
    });
    assert!(
        setup.read("prometheus/prometheus.yml").contains("whole"),
        "the second part is in force"
    );
    assert_eq!(
        settled_reloads(&setup) - before,
        1,
        "one reload, for the whole file only: {}",
        daemon.log()
    );

    // A burst of 100 cluster files, each written and renamed into place:
    // the first applies at once, the rest together in one more transaction.
    let before = settled_reloads(&setup);
    let nowhere = format!("https://127.0.0.1:{}", free_port());
    for i in 0..100 {
        let text = stage_file.replace(&stage.url(), &nowhere);
        let tmp = setup.path(&format!("etc/promfed.d/burst-{i:03}.toml.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(
            &tmp,
            setup.path(&format!("etc/promfed.d/burst-{i:03}.toml")),
        )
        .unwrap();
    }
    wait_for("all 100 in force", LONG, || {
        let installed = setup.read("prometheus/prometheus.yml");
        installed.contains("promfed/burst-099/").then_some(())
    });
    let reloads = settled_reloads(&setup) - before;
    assert!(
        (1..=2).contains(&reloads),
        "{reloads} reloads for a burst of 100 files"
    );
}

#[test]
fn status_and_metrics_say_when_prometheus_has_no_inotify_instance_left() {
    use std::os::unix::fs::PermissionsExt;
    let user = test_user("promfed-prom");
    let setup = Setup::new();
    std::fs::set_permissions(setup.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = setup.prometheus(Some(&user));
    setup.settings(&prometheus.url(), "reload = \"http\"");
    // Prometheus's user has no inotify instance left, as past Debian's 128.
    let hog = InotifyHog::start(&user);
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    let status = daemon.wait_status("the exhausted budget in status.json", LONG, |s| {
        s["prometheus_watches"]["exhausted"] == true
    });
    assert_eq!(status["prometheus_watches"]["needed"], 1);
    let out = setup.promfed(&["status"]);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("EXHAUSTED"), "{}", stdout(&out));
    assert!(stdout(&out).contains("fs.inotify.max_user_instances"));
    wait_for("the metric", LONG, || {
        setup
            .read("state/promfed.prom")
            .contains("promfed_prometheus_watch_budget_exhausted 1")
            .then_some(())
    });
    daemon.wait_message("exhausted in STATUS=", LONG, |m| {
        m.contains("Prometheus file watches exhausted")
    });

    // Instances free again: the next reload makes every watcher.
    drop(hog);
    let cluster = setup.read("etc/promfed.d/stage.toml");
    setup.write(
        "etc/promfed.d/stage.toml",
        &cluster.replace("env = \"test\"", "env = \"again\""),
    );
    daemon.wait_status("the budget recovered", LONG, |s| {
        s["prometheus_watches"]["exhausted"] == false
    });
    wait_for("the metric recovered", LONG, || {
        setup
            .read("state/promfed.prom")
            .contains("promfed_prometheus_watch_budget_exhausted 0")
            .then_some(())
    });
}

#[test]
fn an_unrelated_change_relists_no_other_cluster_and_a_rotated_token_does() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["n-1"], &exporter);
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.relist_rarely();
    setup.add_cluster(&stage);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    wait_for("stage's watches", LONG, || {
        (stage.requests("watch_nodes") >= 1).then_some(())
    });
    let lists = stage.requests("list_nodes");

    // Another cluster comes and is applied: stage is not asked again.
    setup.add_cluster(&prod);
    prometheus.wait_targets_up("promfed/prod/", 4);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        stage.requests("list_nodes"),
        lists,
        "stage relisted for prod's change"
    );

    // stage's token is rotated (a new file moved into place): relisted.
    let token = setup.path("etc/promfed.d/stage/token");
    let fresh = setup.path("etc/promfed.d/stage/token.new");
    std::fs::copy(&token, &fresh).unwrap();
    std::fs::rename(&fresh, &token).unwrap();
    wait_for("a relist with the new token", LONG, || {
        (stage.requests("list_nodes") > lists).then_some(())
    });
}
