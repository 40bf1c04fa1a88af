//! Objects as a real API server marshals them: Go sends an empty list or
//! map without `omitempty` as `null`, and leaves optional fields out. The
//! fake's `"shape"` (`null`, `omit`) serves every object so; discovery,
//! the daemon and `doctor` must read them all. The EndpointSlice controller
//! keeps a placeholder slice (`"endpoints": null, "ports": null`) for a
//! service whose pods are all gone: that is zero targets, not an error.
//! Also: a daemon start lists each cluster once, then watches.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);
/// How long a pod's coming or going may take to reach the targets files.
const CHURN: Duration = Duration::from_secs(10);
const CLUSTER: &str = "stage";

/// A fake cluster in `shape` with two nodes and their node-exporter pods,
/// one annotated application pod, one unannotated pod without labels and
/// ports, and a real Prometheus that promfed's settings point at.
struct World {
    setup: Setup,
    fake: FakeCluster,
    prometheus: Prometheus,
    exporter: NodeExporter,
    app: TextExporter,
}

fn app_pods(upstream: u16) -> Value {
    json!([
        {"namespace": "shop", "name": "cart-1", "labels": {"app": "cart"},
         "annotations": {"prometheus.io/scrape": "true"},
         "ports": [8080], "upstream": format!("127.0.0.1:{upstream}")},
        // Nothing to say: no annotations, no labels, no ports (all empty).
        {"namespace": "shop", "name": "quiet-1", "upstream": format!("127.0.0.1:{upstream}")},
    ])
}

/// The fake's state for `nodes` (one node-exporter pod on each), in `shape`.
fn state_of(world: &World, shape: &str, nodes: &[&str]) -> Value {
    let mut state = world.fake.state(nodes, world.exporter.port);
    state["shape"] = json!(shape);
    state["pods"] = app_pods(world.app.port);
    state
}

/// With `[pods]` on or off: off, only nodes and EndpointSlices are read.
fn world(shape: &str, nodes: &[&str], pods: bool) -> World {
    let setup = Setup::new();
    let root = setup.root.path();
    let exporter = NodeExporter::start(root);
    let app = TextExporter::start(root, "app-exporter", "# TYPE app_up gauge\napp_up 1\n");
    let fake = FakeCluster::start(root, CLUSTER, nodes, &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&fake);
    if pods {
        setup.append(
            &format!("etc/promfed.d/{CLUSTER}.toml"),
            "\n[pods]\nenabled = true\n",
        );
    }
    let world = World {
        setup,
        fake,
        prometheus,
        exporter,
        app,
    };
    world.fake.set_state(state_of(&world, shape, nodes));
    world
}

/// The targets in promfed's targets file of `job`; a file that is not
/// there (a job without targets) has none.
fn file_targets(setup: &Setup, job: &str) -> usize {
    std::fs::read_to_string(setup.path(&format!("state/targets/{CLUSTER}/{job}.json")))
        .map(|t| t.matches("\"targets\"").count())
        .unwrap_or(0)
}

fn discovery_state(daemon: &Daemon) -> Value {
    daemon.status()["clusters"][CLUSTER]["discovery"]["state"].clone()
}

// (a) ------------------------------------------------------------------

/// `promfed apply` reads nodes, EndpointSlices and pods in `shape`, and
/// Prometheus scrapes every target.
fn apply_reads(shape: &str) {
    let w = world(shape, &["n-1", "n-2"], true);
    let out = w.setup.promfed(&["apply"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("2 nodes, 2 node-exporter pods, 1 annotated pod"),
        "{}",
        stdout(&out)
    );
    // apiserver, 2 kubelets, 2 cAdvisors, 2 node-exporters, 1 pod.
    w.prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/"), 8);
    let pod = w
        .prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/pods"), 1);
    assert_eq!(pod[0]["labels"]["pod"], "cart-1", "{pod:?}");
    assert_eq!(file_targets(&w.setup, "node-exporter"), 2);
}

#[test]
fn apply_reads_objects_whose_empty_fields_are_null() {
    apply_reads("null");
}

#[test]
fn apply_reads_objects_whose_empty_fields_are_left_out() {
    apply_reads("omit");
}

// (b) ------------------------------------------------------------------

/// The daemon follows a cluster in `shape`: a node joins (just registered:
/// no addresses, no conditions yet), a node-exporter pod goes.
fn daemon_follows(shape: &str) {
    let w = world(shape, &["n-1", "n-2"], true);
    w.setup.relist_rarely();
    let mut daemon = w.setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    daemon.wait_status("discovery ok", LONG, |s| {
        s["clusters"][CLUSTER]["discovery"]["state"] == "ok"
    });
    w.prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/"), 8);

    let mut state = state_of(&w, shape, &["n-1", "n-2", "n-3"]);
    state["bare_nodes"] = json!(["n-3"]);
    w.fake.set_state(state.clone());
    w.prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/kubelet"), 3);
    w.prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/node-exporter"), 3);

    let pods = state["node_exporter"]["pods"].as_array_mut().unwrap();
    pods.retain(|p| p["node"] != "n-1");
    w.fake.set_state(state);
    w.prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/node-exporter"), 2);
    w.prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/kubelet"), 3);
    assert_eq!(file_targets(&w.setup, "node-exporter"), 2);
    assert_ne!(discovery_state(&daemon), "failing", "{}", daemon.status());
}

#[test]
fn the_daemon_follows_a_cluster_whose_empty_fields_are_null() {
    daemon_follows("null");
}

#[test]
fn the_daemon_follows_a_cluster_whose_empty_fields_are_left_out() {
    daemon_follows("omit");
}

// (c) ------------------------------------------------------------------

/// The last node-exporter pod goes: the placeholder slice the controller
/// keeps means no node-exporter targets, a fact and not a failure; no
/// relisting; `doctor` says so; the pod comes back and so does its target.
/// Without `[pods]`: the slices alone are what is tested.
fn placeholder_slice(shape: &str) {
    let w = world(shape, &["n-1"], false);
    w.setup.relist_rarely();
    let mut daemon = w.setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    w.prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/node-exporter"), 1);
    daemon.wait_status("discovery ok", LONG, |s| {
        s["clusters"][CLUSTER]["discovery"]["state"] == "ok"
    });
    wait_for("the watch of EndpointSlices", LONG, || {
        (w.fake.requests("watch_endpointslices") >= 1).then_some(())
    });

    let with_pod = state_of(&w, shape, &["n-1"]);
    let mut without = with_pod.clone();
    without["node_exporter"]["pods"] = json!([]);
    let lists = w.fake.requests("list_endpointslices");
    w.fake.set_state(without);
    // (Through wait_status, whose failure shows the status and the log.)
    daemon.wait_status("no node-exporter target", CHURN, |_| {
        file_targets(&w.setup, "node-exporter") == 0
    });
    // The node itself is still there.
    assert_eq!(file_targets(&w.setup, "kubelet"), 1);

    // Ten seconds of it: never failing, no relist loop.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        daemon.drain();
        assert_ne!(
            discovery_state(&daemon),
            "failing",
            "zero endpoints is not a failure: {}\n--- log\n{}",
            daemon.status(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let relists = w.fake.requests("list_endpointslices") - lists;
    assert!(
        relists <= 1,
        "{relists} lists of EndpointSlices in 10 s: {}\n--- log\n{}",
        w.fake.request_counts(),
        daemon.log()
    );
    assert_eq!(file_targets(&w.setup, "node-exporter"), 0);
    let log = daemon.log();
    assert!(
        !log.contains("invalid type: null") && !log.contains("unexpected answer from : "),
        "{log}"
    );

    // doctor: a fact, not an error.
    let out = w.setup.promfed(&["doctor", CLUSTER]);
    let report = stdout(&out);
    assert!(report.contains("0 ready endpoints"), "{report}");
    assert!(!report.contains("invalid type"), "{report}");
    let failed: Vec<&str> = report
        .lines()
        .filter(|l| l.trim_start().starts_with('✘'))
        .collect();
    assert!(failed.is_empty(), "{report}");
    assert_exit(&out, 0);

    // The pod is back: so is its target.
    w.fake.set_state(with_pod);
    daemon.wait_status("the node-exporter target back", CHURN, |_| {
        file_targets(&w.setup, "node-exporter") == 1
    });
    w.prometheus
        .wait_targets_up(&format!("promfed/{CLUSTER}/node-exporter"), 1);
    assert_ne!(discovery_state(&daemon), "failing", "{}", daemon.status());
}

#[test]
fn the_placeholder_slice_of_a_service_without_pods_is_zero_targets_when_null() {
    placeholder_slice("null");
}

#[test]
fn the_placeholder_slice_of_a_service_without_pods_is_zero_targets_when_left_out() {
    placeholder_slice("omit");
}

// (d) ------------------------------------------------------------------

/// Three clusters: a daemon start lists each one once (nodes and
/// EndpointSlices) and then watches, no more. Beside them, `[monitors]` in
/// two namespaces costs per namespace one list and one watch each of
/// servicemonitors, podmonitors, EndpointSlices and pods; without the CRDs,
/// one list each of servicemonitors and podmonitors per namespace (the two
/// 404s) and nothing else, no watch.
fn startup_lists_once(shape: &str) {
    let setup = Setup::new();
    let root = setup.root.path();
    let exporter = NodeExporter::start(root);
    let names = ["east", "west", "north"];
    let fakes: Vec<FakeCluster> = names
        .iter()
        .map(|name| {
            let fake = FakeCluster::start(root, name, &["n-1", "n-2"], &exporter);
            let mut state = fake.current_state();
            state["shape"] = json!(shape);
            state["exporters"] = exporters(exporter.port);
            fake.set_state(state);
            fake
        })
        .collect();
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.relist_rarely();
    for fake in &fakes {
        setup.add_cluster(fake);
        setup.append(
            &format!("etc/promfed.d/{}.toml", fake.name),
            "\n[exporter.kube-state-metrics]\n[exporter.kube-dns]\n",
        );
    }
    let monitored = monitored_clusters(&setup, &exporter, shape);
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    daemon.wait_status("every cluster ok", LONG, |s| {
        names
            .iter()
            .chain(["mon", "bare"].iter())
            .all(|n| s["clusters"][n]["discovery"]["state"] == "ok")
    });
    let [mon, bare] = &monitored;
    wait_for("mon's watches", LONG, || {
        (mon.requests("watch_servicemonitors") >= 2
            && mon.requests("watch_podmonitors") >= 2
            && mon.requests("watch_pods") >= 2
            && mon.requests("watch_endpointslices shop") >= 1
            && mon.requests("watch_endpointslices ops") >= 1)
            .then_some(())
    });
    for fake in &fakes {
        wait_for(&format!("{}'s watches", fake.name), LONG, || {
            (fake.requests("watch_nodes") >= 1 && fake.requests("watch_endpointslices") >= 1)
                .then_some(())
        });
    }
    // Anything late would come now.
    std::thread::sleep(Duration::from_secs(2));
    let keys = [
        "list_servicemonitors",
        "list_podmonitors",
        "list_endpointslices shop",
        "list_endpointslices ops",
        "list_pods",
        "watch_servicemonitors",
        "watch_podmonitors",
        "watch_endpointslices shop",
        "watch_endpointslices ops",
        "watch_pods",
    ];
    let seen = |fake: &FakeCluster| -> Vec<(&str, u64)> {
        let counts = fake.request_counts();
        keys.iter()
            .map(|&k| (k, counts[k].as_u64().unwrap_or(0)))
            .collect()
    };
    assert_eq!(
        seen(mon),
        [
            ("list_servicemonitors", 2),
            ("list_podmonitors", 2),
            ("list_endpointslices shop", 1),
            ("list_endpointslices ops", 1),
            ("list_pods", 2),
            ("watch_servicemonitors", 2),
            ("watch_podmonitors", 2),
            ("watch_endpointslices shop", 1),
            ("watch_endpointslices ops", 1),
            ("watch_pods", 2),
        ],
        "mon: {}\n--- log\n{}",
        mon.request_counts(),
        daemon.log()
    );
    assert_eq!(
        seen(bare),
        keys.iter()
            .map(|&k| (
                k,
                2 * u64::from(k.starts_with("list_") && k.ends_with("monitors"))
            ))
            .collect::<Vec<_>>(),
        "bare: {}\n--- log\n{}",
        bare.request_counts(),
        daemon.log()
    );
    // Each monitor's job has its pod.
    for (file, pod) in [
        ("serviceMonitor_shop_web_0.json", "web-a"),
        ("podMonitor_ops_agent_0.json", "agent-x"),
    ] {
        let path = setup.path(&format!("state/targets/mon/{file}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(text.contains(pod), "{}: {text}", path.display());
    }
    for fake in &fakes {
        let counts = fake.request_counts();
        let seen: Vec<(&str, u64)> = [
            "list_nodes",
            "list_endpointslices",
            "list_endpointslices monitoring",
            "list_endpointslices kube-system",
            "watch_nodes",
            "watch_endpointslices",
            "watch_endpointslices monitoring",
            "watch_endpointslices kube-system",
        ]
        .into_iter()
        .map(|k| (k, counts[k].as_u64().unwrap_or(0)))
        .collect();
        // node-exporter's slices, then one list and one watch per
        // namespace the exporters name (kube-state-metrics: kube-system
        // and monitoring; kube-dns: kube-system), not one per exporter.
        assert_eq!(
            seen,
            [
                ("list_nodes", 1),
                ("list_endpointslices", 3),
                ("list_endpointslices monitoring", 2),
                ("list_endpointslices kube-system", 1),
                ("watch_nodes", 1),
                ("watch_endpointslices", 3),
                ("watch_endpointslices monitoring", 2),
                ("watch_endpointslices kube-system", 1),
            ],
            "cluster {}: {counts}\n--- log\n{}",
            fake.name,
            daemon.log()
        );
        // The exporters' objects, in this shape, give their targets.
        for (job, n) in [("kube-dns", 2), ("kube-state-metrics", 1)] {
            let file = setup.path(&format!("state/targets/{}/{job}.json", fake.name));
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            assert_eq!(
                text.matches("\"targets\"").count(),
                n,
                "{}: {text}",
                file.display()
            );
        }
    }
}

/// Two clusters with `[monitors]` in namespaces shop and ops: `mon` serves
/// a ServiceMonitor in shop and a PodMonitor in ops, `bare` neither CRD.
fn monitored_clusters(setup: &Setup, exporter: &NodeExporter, shape: &str) -> [FakeCluster; 2] {
    let root = setup.root.path();
    ["mon", "bare"].map(|name| {
        let fake = FakeCluster::start(root, name, &["n-1"], exporter);
        let mut state = fake.current_state();
        state["shape"] = json!(shape);
        if name == "mon" {
            let upstream = format!("127.0.0.1:{}", exporter.port);
            state["exporters"] = json!([
                {"namespace": "shop", "service": "web", "labels": {"app": "web"},
                 "ports": [{"name": "http", "port": 8080}], "upstream": upstream,
                 "pods": [{"name": "web-a", "node": "n-1"}]},
                {"namespace": "ops", "service": "agent", "labels": {"app": "agent"},
                 "ports": [{"name": "metrics", "port": 9400}], "upstream": upstream,
                 "pods": [{"name": "agent-x", "node": "n-1"}]},
            ]);
            state["monitors"] = json!({
                "servicemonitors": [{"metadata": {"name": "web", "namespace": "shop"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}}, "endpoints": [{"port": "http"}]}}],
                "podmonitors": [{"metadata": {"name": "agent", "namespace": "ops"},
                    "spec": {"selector": {"matchLabels": {"app": "agent"}}, "podMetricsEndpoints": [{"port": "metrics"}]}}],
            });
        }
        fake.set_state(state);
        setup.add_cluster(&fake);
        setup.append(
            &format!("etc/promfed.d/{name}.toml"),
            "\n[monitors]\nnamespaces = [\"shop\", \"ops\"]\n",
        );
        fake
    })
}

/// kube-state-metrics in `monitoring` and CoreDNS in `kube-system`, as the
/// fake serves them; their scrapes are not what these tests look at.
fn exporters(upstream: u16) -> Value {
    json!([
        {"namespace": "monitoring", "service": "kube-state-metrics",
         "labels": {"app.kubernetes.io/name": "kube-state-metrics"},
         "ports": [{"name": "http-metrics", "port": 8080}], "upstream": format!("127.0.0.1:{upstream}"),
         "pods": [{"name": "kube-state-metrics-0", "node": "n-1"}]},
        {"namespace": "kube-system", "service": "kube-dns", "labels": {"k8s-app": "kube-dns"},
         "ports": [{"name": "dns", "port": 53}, {"name": "metrics", "port": 9153}],
         "upstream": format!("127.0.0.1:{upstream}"),
         "pods": [{"name": "coredns-a", "node": "n-1"}, {"name": "coredns-b", "node": "n-2"}]},
    ])
}

#[test]
fn a_daemon_start_lists_each_cluster_once_when_empty_fields_are_null() {
    startup_lists_once("null");
}

#[test]
fn a_daemon_start_lists_each_cluster_once_when_empty_fields_are_left_out() {
    startup_lists_once("omit");
}
