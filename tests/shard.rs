//! `[shard]`: three (then four) promfed + Prometheus hosts on loopback
//! share 30 clusters with `replication = 2`, and send their samples to a
//! real VictoriaMetrics (deduplicating) and to a Prometheus remote-write
//! receiver. Every cluster is scraped by exactly two hosts, counted once
//! after dedup, still scraped when a host stops, and a fourth member moves
//! what `promfed shard-plan` said it would, and no more.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::*;

const CLUSTERS: usize = 30;

fn cluster_names() -> Vec<String> {
    (0..CLUSTERS).map(|i| format!("c-{i:02}")).collect()
}

/// One monitoring host: its own promfed settings, clusters folder, state
/// and Prometheus.
struct Host {
    name: String,
    setup: Setup,
    prometheus: Option<Prometheus>,
}

impl Host {
    /// A host named `name` among `members`, with every cluster file (all
    /// pointing at `fake`, kubelet only), writing to `vm` and `receiver`.
    fn start(
        name: &str,
        members: &[&str],
        fake: &FakeCluster,
        vm: &VictoriaMetrics,
        receiver: &Prometheus,
    ) -> Host {
        let setup = Setup::new();
        // The replica label is added by promfed; VictoriaMetrics gets the
        // samples without it (so both replicas make one series, deduped),
        // the receiver with it (so each replica is seen).
        setup.write(
            "etc/prometheus.base.yml",
            &format!(
                "global:\n  scrape_interval: 2s\nremote_write:\n- url: {}/api/v1/write\n  write_relabel_configs:\n  - action: labeldrop\n    regex: replica\n  queue_config: {{batch_send_deadline: 1s}}\n- url: {}/api/v1/write\n  queue_config: {{batch_send_deadline: 1s}}\nscrape_configs: []\n",
                vm.url(),
                receiver.url()
            ),
        );
        setup.write("etc/promfed.d/shared/token", &format!("{}\n", fake.token));
        std::fs::copy(fake.ca(), setup.path("etc/promfed.d/shared/ca.crt")).unwrap();
        for c in cluster_names() {
            setup.write(
                &format!("etc/promfed.d/{c}.toml"),
                &format!(
                    "api_server = \"{}\"\ntoken_file = \"shared/token\"\nca_file = \"shared/ca.crt\"\n[cadvisor]\nenabled = false\n[apiserver]\nenabled = false\n[node_exporter]\nenabled = false\n",
                    fake.url()
                ),
            );
        }
        let prometheus = setup.prometheus(None);
        let mut host = Host {
            name: name.to_string(),
            setup,
            prometheus: Some(prometheus),
        };
        host.members(members);
        host
    }

    /// Writes the settings with these members and applies them.
    fn members(&mut self, members: &[&str]) {
        let url = self.prometheus.as_ref().unwrap().url();
        self.setup.settings(&url, "reload = \"http\"");
        let list: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
        self.setup.append(
            "etc/promfed.toml",
            &format!(
                "\n[shard]\nmembers = [{}]\nself = \"{}\"\nreplication = 2\n",
                list.join(", "),
                self.name
            ),
        );
        let out = self.setup.promfed(&["apply"]);
        assert_exit(&out, 0);
    }

    /// The clusters this host's Prometheus scrapes.
    fn scraped(&self) -> BTreeSet<String> {
        self.prometheus
            .as_ref()
            .unwrap()
            .active_targets()
            .iter()
            .filter_map(|t| t["labels"]["cluster"].as_str().map(str::to_string))
            .collect()
    }
}

/// `promfed shard-plan --json` on `host`, with `args`.
fn plan(host: &Host, args: &[&str]) -> Value {
    plan_of(&host.setup, args)
}

/// `promfed shard-plan --json` with `args`, on a setup.
fn plan_of(setup: &Setup, args: &[&str]) -> Value {
    let mut all = vec!["shard-plan", "--json"];
    all.extend_from_slice(args);
    let out = setup.promfed(&all);
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each host's clusters in a plan's table.
fn by_host(plan: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut hosts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (cluster, owners) in plan.as_object().unwrap() {
        for o in owners.as_array().unwrap() {
            hosts
                .entry(o.as_str().unwrap().to_string())
                .or_default()
                .insert(cluster.clone());
        }
    }
    hosts
}

fn number(v: &[Value]) -> f64 {
    v.first()
        .and_then(|r| r["value"][1].as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1.0)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn three_hosts_share_thirty_clusters_two_each_and_a_fourth_moves_what_the_plan_said() {
    let root = tempfile::tempdir().unwrap();
    let exporter = NodeExporter::start(root.path());
    let fake = FakeCluster::start(root.path(), "fleet", &["node-a"], &exporter);
    let vm = VictoriaMetrics::start(root.path(), "2s");
    let receiver = Prometheus::start_receiver(&root.path().join("receiver"));
    let three = ["mon-a", "mon-b", "mon-c"];
    let mut hosts: Vec<Host> = three
        .iter()
        .map(|h| Host::start(h, &three, &fake, &vm, &receiver))
        .collect();

    // The table every host computes alone, and what each one scrapes.
    let table = plan(&hosts[1], &[]);
    assert_eq!(table["self"], "mon-b");
    let owners = &table["plan"];
    assert_eq!(owners.as_object().unwrap().len(), CLUSTERS);
    for (c, o) in owners.as_object().unwrap() {
        assert_eq!(o.as_array().unwrap().len(), 2, "{c}: {o}");
    }
    assert_eq!(plan(&hosts[0], &[])["plan"], *owners, "every host agrees");
    let expected = by_host(owners);
    for host in &hosts {
        let scraped = wait_for(
            &format!("{}'s targets", host.name),
            Duration::from_secs(20),
            || {
                let s = host.scraped();
                (s == expected[&host.name]).then_some(s)
            },
        );
        assert!(!scraped.is_empty(), "{} scrapes nothing", host.name);
        let config = host.setup.read("prometheus/prometheus.yml");
        assert!(
            config.contains(&format!("replica: \"{}\"", host.name)),
            "{config}"
        );
        let status = host.setup.promfed(&["check"]);
        assert!(
            stdout(&status).contains("not by this host"),
            "{}",
            stdout(&status)
        );
    }

    assert_eq!(
        expected.values().map(BTreeSet::len).sum::<usize>(),
        2 * CLUSTERS,
        "each cluster on exactly two hosts"
    );

    // Every cluster reaches VictoriaMetrics, once after dedup; the
    // receiver sees both replicas of each.
    wait_for(
        "every cluster in VictoriaMetrics",
        Duration::from_secs(60),
        || {
            (number(&vm.query("count(count by (cluster) (up{job=\"kubelet\"}))"))
                == CLUSTERS as f64)
                .then_some(())
        },
    );
    assert_eq!(
        number(&vm.query("max(count by (cluster) (up{job=\"kubelet\"}))")),
        1.0,
        "one series per cluster after dedup"
    );
    wait_for(
        "both replicas at the receiver",
        Duration::from_secs(60),
        || {
            let replicas = receiver
                .query("count by (cluster) (count by (cluster, replica) (up{job=\"kubelet\"}))");
            (replicas.len() == CLUSTERS && replicas.iter().all(|r| r["value"][1] == "2"))
                .then_some(())
        },
    );

    // doctor reads each queue's health from Prometheus's own metrics.
    let report = stdout(&hosts[1].setup.promfed(&["doctor"]));
    for receiving in [vm.url(), receiver.url()] {
        assert!(
            report.contains(&format!(
                "✔ remote_write: {receiving}/api/v1/write: 0 samples failed"
            )),
            "{report}"
        );
    }

    // One host stops: every cluster is still scraped by its other replica.
    let stopped = now();
    hosts[0].prometheus = None;
    wait_for(
        "every cluster fresh without mon-a",
        Duration::from_secs(60),
        || {
            let oldest =
                number(&vm.query("min(max by (cluster) (timestamp(up{job=\"kubelet\"})))"));
            (oldest > stopped + 4.0).then_some(())
        },
    );

    // A fourth member: shard-plan's prediction, then the real thing.
    let four = ["mon-a", "mon-b", "mon-c", "mon-d"];
    let predicted = plan(&hosts[1], &["--members", &four.join(",")]);
    let with = &predicted["with"];
    let moved = with["moved_fraction"].as_f64().unwrap();
    // The ideal is 1/4 (the new host's share); at most 10 % above it.
    assert!(moved <= 0.25 * 1.10, "moved {moved}");
    assert!(moved > 0.0);
    assert!(
        with["gained"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g[1] == "mon-d"),
        "only the new host gains: {with}"
    );
    let future = by_host(&with["plan"]);
    for host in hosts.iter_mut().skip(1) {
        host.members(&four);
    }
    hosts.push(Host::start("mon-d", &four, &fake, &vm, &receiver));
    for host in hosts.iter().skip(1) {
        wait_for(
            &format!("{}'s targets after the join", host.name),
            Duration::from_secs(20),
            || (host.scraped() == future[&host.name]).then_some(()),
        );
    }
    // What moved off the remaining hosts is exactly what the plan said.
    for host in hosts.iter().skip(1).take(2) {
        let lost: BTreeSet<String> = expected[&host.name]
            .difference(&future[&host.name])
            .cloned()
            .collect();
        let said: BTreeSet<String> = with["lost"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l[1] == host.name.as_str())
            .map(|l| l[0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(lost, said, "{}", host.name);
    }
}

#[test]
fn shard_mistakes_name_the_key_and_exit_78() {
    let cases = [
        (
            "members = [\"mon-a\", \"mon-b\"]\nself = \"mon-c\"\n",
            "key `shard.self`: `mon-c` is not in members (mon-a, mon-b)",
        ),
        (
            "members = [\"mon-a\", \"mon-a\"]\nself = \"mon-a\"\n",
            "key `shard.members[1]`: `mon-a` is listed twice",
        ),
        (
            "members = [\"mon-a\", \"mon-b\"]\nself = \"mon-a\"\nreplication = 0\n",
            "key `shard.replication`: must be at least 1",
        ),
        (
            "members = [\"mon-a\", \"mon-b\"]\nself = \"mon-a\"\nreplication = 3\n",
            "key `shard.replication`: 3 is more than the 2 members",
        ),
        (
            "members = []\nself = \"mon-a\"\n",
            "key `shard.members`: is empty",
        ),
        ("self = \"mon-a\"\n", "key `shard.members`: missing"),
        (
            "members = [\"mon-a\"]\nself = \"mon-a\"\nreplica_label = \"cluster\"\n",
            "key `shard.replica_label`: `cluster` is set by promfed itself",
        ),
    ];
    for (shard, expected) in cases {
        let s = crate::bad_input::setup();
        s.append("etc/promfed.toml", &format!("\n[shard]\n{shard}"));
        let out = s.promfed(&["check"]);
        assert_exit(&out, 78);
        assert!(stderr(&out).contains(expected), "{shard}: {}", stderr(&out));
    }

    // With replicas, a cluster's own `replica` label would hide which host
    // sent a sample: refused there, with its place; the others go on.
    let s = crate::bad_input::setup();
    s.append(
        "etc/promfed.toml",
        "\n[shard]\nmembers = [\"mon-a\", \"mon-b\"]\nself = \"mon-a\"\nreplication = 2\n",
    );
    s.write(
        "etc/promfed.d/prod.toml",
        &format!(
            "{}[labels]\nteam = \"a\"\nreplica = \"x\"\n",
            crate::bad_input::GOOD_CLUSTER
        ),
    );
    let out = s.promfed(&["apply"]);
    assert_exit(&out, 78);
    let expected = format!(
        "{}:6:1: key `labels.replica`: `replica` is [shard]'s replica_label",
        s.path("etc/promfed.d/prod.toml").display()
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    let installed = s.read("prometheus/prometheus.yml");
    assert!(installed.contains("promfed/stage/"), "{installed}");
    assert!(!installed.contains("promfed/prod/"), "{installed}");

    // shard-plan's --members are held to the same rules as members.
    let s = crate::bad_input::setup();
    s.append(
        "etc/promfed.toml",
        "\n[shard]\nmembers = [\"mon-a\", \"mon-b\"]\nself = \"mon-a\"\nreplication = 2\n",
    );
    for (members, expected) in [
        (
            "mon-a,mon-b mon-c",
            "--members: `mon-b mon-c` is not a host name",
        ),
        ("mon-a,,mon-b", "--members: an empty name"),
        ("mon-a,mon-a", "--members: `mon-a` is listed twice"),
        (
            "mon-a",
            "--members: replication = 2 needs at least 2 members",
        ),
    ] {
        let out = s.promfed(&["shard-plan", "--members", members]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(expected),
            "{members}: {}",
            stderr(&out)
        );
    }
    assert_exit(
        &s.promfed(&["shard-plan", "--members", "mon-a, mon-b,mon-c"]),
        0,
    );
}

#[test]
fn doctor_fails_a_remote_write_queue_that_delivers_nothing() {
    let setup = Setup::new();
    let nobody = free_port();
    setup.write(
        "etc/prometheus.base.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nremote_write:\n- url: http://127.0.0.1:{nobody}/api/v1/write\nscrape_configs:\n- job_name: self\n  static_configs:\n  - targets: [localhost:1]\n"
        ),
    );
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    assert_exit(&setup.promfed(&["apply"]), 0);
    // Until a sample is taken there is nothing to be behind on.
    let report = wait_for("the queue to be failed", Duration::from_secs(30), || {
        let report = stdout(&setup.promfed(&["doctor"]));
        report.contains("✘ remote_write").then_some(report)
    });
    let lines: Vec<&str> = report.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.contains(&format!(
                "✘ remote_write: http://127.0.0.1:{nobody}/api/v1/write"
            ))
        })
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        lines[at].contains("nothing sent yet") || lines[at].contains("behind"),
        "{report}"
    );
    assert!(lines[at + 1].contains("fix: is the receiver"), "{report}");
}

/// The daemon says this host's share: status.json, `promfed status` and
/// the metrics file; and only the clusters it owns are discovered.
#[test]
fn the_daemon_reports_this_hosts_share_and_discovers_only_its_own() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), "fleet", &["node-a"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.append(
        "etc/promfed.toml",
        "\n[shard]\nmembers = [\"mon-a\", \"mon-b\"]\nself = \"mon-a\"\n",
    );
    setup.write("etc/promfed.d/shared/token", &format!("{}\n", fake.token));
    std::fs::copy(fake.ca(), setup.path("etc/promfed.d/shared/ca.crt")).unwrap();
    for c in &cluster_names()[..10] {
        setup.write(
            &format!("etc/promfed.d/{c}.toml"),
            &format!(
                "api_server = \"{}\"\ntoken_file = \"shared/token\"\nca_file = \"shared/ca.crt\"\n",
                fake.url()
            ),
        );
    }
    // The clusters another host owns point at an API server of their own:
    // it must hear nothing from this host.
    let table = plan_of(&setup, &[]);
    let other = FakeCluster::start(setup.root.path(), "elsewhere", &["node-z"], &exporter);
    let mut mine = BTreeSet::new();
    for (c, owners) in table["plan"].as_object().unwrap() {
        if owners.as_array().unwrap().iter().any(|o| o == "mon-a") {
            mine.insert(c.clone());
        } else {
            setup.write(
                &format!("etc/promfed.d/{c}.toml"),
                &format!(
                    "api_server = \"{}\"\ntoken_file = \"shared/token\"\nca_file = \"shared/ca.crt\"\n",
                    other.url()
                ),
            );
        }
    }
    let here = mine.len();
    assert!(here > 0 && here < 10, "{table}");
    let mut daemon = setup.daemon();
    let status = daemon.wait_status("the share", Duration::from_secs(40), |s| {
        s["shard"]["clusters"] == 10
            && s["clusters"]
                .as_object()
                .is_some_and(|c| c.values().all(|c| c["discovery"]["state"] == "ok"))
    });
    assert_eq!(status["shard"]["scraped_here"], here);
    let reported: BTreeSet<String> = status["clusters"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(reported, mine, "{status}");
    assert!(fake.requests("list_nodes") > 0);
    let counts = other.request_counts();
    assert!(
        counts.as_object().unwrap().values().all(|n| n == 0),
        "another host's clusters were asked: {counts}"
    );
    let said = stdout(&setup.promfed(&["status"]));
    assert!(
        said.contains(&format!(
            "shard: this host is mon-a of 2 members (mon-a, mon-b), each cluster scraped by 1: {here} of 10 clusters scraped here"
        )),
        "{said}"
    );
    let metrics = setup.read("state/promfed.prom");
    assert!(
        metrics.contains("promfed_shard_clusters{scope=\"all\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("promfed_shard_clusters{{scope=\"here\"}} {here}")),
        "{metrics}"
    );
    assert!(metrics.contains("promfed_shard_members 2"), "{metrics}");
    // Replication 1: no replica label is needed, none is added.
    assert!(!setup.read("prometheus/prometheus.yml").contains("replica:"));
}
