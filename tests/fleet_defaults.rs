//! `[defaults]` in promfed.toml, with the real binary: what every cluster
//! inherits, what one cluster overrides or turns off, where a bad default
//! is reported, and the daemon applying a change to them.

use std::time::Duration;

use crate::bad_input::{GOOD_CLUSTER, installed, setup};
use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

/// Two clusters, stage and prod, under fleet defaults; prod overrides the
/// port and adds a label of its own.
fn fleet(defaults: &str) -> Setup {
    let s = setup();
    s.append("etc/promfed.toml", defaults);
    s.write(
        "etc/promfed.d/prod.toml",
        &format!("{GOOD_CLUSTER}labels = {{ env = \"prod\" }}\n[node_exporter]\nport = 9200\n"),
    );
    s
}

const DEFAULTS: &str = "\n[defaults]\nlabels = { team = \"sre\" }\n\n[defaults.node_exporter]\nnamespace = \"kube-mon\"\nport = 9101\n";

/// The 1-based line of `text` in promfed.toml.
fn settings_line(s: &Setup, text: &str) -> usize {
    let all = s.read("etc/promfed.toml");
    let at = all.find(text).expect("in promfed.toml");
    all[..at].matches('\n').count() + 1
}

#[test]
fn check_and_render_show_the_defaults_merged_and_where_each_value_comes_from() {
    let s = fleet(DEFAULTS);
    assert_exit(&s.promfed(&["check"]), 0);

    let out = s.promfed(&["render"]);
    assert_exit(&out, 0);
    let yaml = stdout(&out);
    for cluster in ["stage", "prod"] {
        let job = &yaml[yaml
            .find(&format!("job_name: promfed/{cluster}/node-exporter"))
            .unwrap()..];
        let job = &job[..job.find("- job_name").unwrap_or(job.len())];
        assert!(
            job.contains("target_label: team\n      replacement: sre"),
            "{cluster}: {job}"
        );
    }
    assert!(
        yaml.contains("target_label: env\n      replacement: prod"),
        "{yaml}"
    );

    let settings = s.path("etc/promfed.toml").display().to_string();
    let prod_file = s.path("etc/promfed.d/prod.toml").display().to_string();
    let port_line = settings_line(&s, "port = 9101");
    let team_line = settings_line(&s, "labels = { team");
    let out = s.promfed(&["render", "stage", "prod"]);
    assert_exit(&out, 0);
    let shown = stdout(&out);
    let (stage, prod) = shown.split_at(shown.find("# cluster prod").expect("prod shown"));
    for (part, value, from) in [
        (
            stage,
            "node_exporter.port = 9101",
            format!("# {settings}:{port_line}, [defaults]"),
        ),
        (
            stage,
            "node_exporter.namespace = \"kube-mon\"",
            format!("# {settings}:{}, [defaults]", port_line - 1),
        ),
        (
            stage,
            "labels.team = \"sre\"",
            format!("# {settings}:{team_line}, [defaults]"),
        ),
        (
            prod,
            "node_exporter.port = 9200",
            format!("# {prod_file}:6"),
        ),
        (prod, "labels.env = \"prod\"", format!("# {prod_file}:4")),
        (
            prod,
            "labels.team = \"sre\"",
            format!("# {settings}:{team_line}, [defaults]"),
        ),
    ] {
        let line = part.lines().find(|l| l.starts_with(value));
        assert!(
            line.is_some_and(|l| l.ends_with(&from)),
            "{value} from {from}, in\n{shown}"
        );
    }
    assert!(
        prod.contains(&format!(
            "# overrides [defaults] node_exporter.port (line {port_line})"
        )),
        "{shown}"
    );

    // doctor says the same; its network checks fail (nothing listens).
    let out = s.promfed(&["doctor", "stage"]);
    let doctor = stdout(&out);
    assert!(
        doctor.contains(&format!(
            "✔ defaults: from [defaults]: labels.team = \"sre\" (line {team_line}), node_exporter.namespace = \"kube-mon\" (line {}), node_exporter.port = 9101 (line {port_line})",
            port_line - 1
        )),
        "{doctor}"
    );
}

#[test]
fn enabled_false_in_one_cluster_turns_an_inherited_job_off() {
    let s = fleet(DEFAULTS);
    s.append(
        "etc/promfed.d/stage.toml",
        "[node_exporter]\nenabled = false\n",
    );
    let out = s.promfed(&["render"]);
    assert_exit(&out, 0);
    let yaml = stdout(&out);
    assert!(!yaml.contains("promfed/stage/node-exporter"), "{yaml}");
    assert!(
        yaml.contains("job_name: promfed/prod/node-exporter"),
        "{yaml}"
    );
    assert!(yaml.contains("job_name: promfed/stage/kubelet"), "{yaml}");
}

#[test]
fn a_bad_default_names_promfed_toml_line_column_and_key_and_changes_nothing() {
    let s = fleet("\n[defaults.node_exporter]\nport = 70000\n");
    let before = installed(&s);
    let line = settings_line(&s, "port = 70000");
    for command in ["check", "render"] {
        let out = s.promfed(&[command]);
        assert_exit(&out, 78);
        let expected = format!(
            "error: {}:{line}:8: key `defaults.node_exporter.port`: 70000 is not a port number (1-65535)",
            s.path("etc/promfed.toml").display()
        );
        assert!(
            stderr(&out).contains(&expected),
            "{command}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("prod.toml"), "{}", stderr(&out));
    }
    assert_eq!(installed(&s), before);
}

#[test]
fn keys_that_belong_to_one_cluster_are_refused_as_defaults() {
    let s = fleet("\n[defaults]\napi_server = \"https://10.0.0.1:6443\"\n");
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("key `defaults.api_server`: `api_server` is the cluster's API server: it cannot be a default; set it in each cluster file"),
        "{}",
        stderr(&out)
    );
}

/// A cluster file that clashes with a default is that cluster's problem:
/// reported at the default, naming the cluster; the others are rendered.
#[test]
fn a_cluster_that_clashes_with_a_default_is_alone_in_its_trouble() {
    let s = fleet("\n[defaults.federate]\nservice = \"prometheus\"\nmatch = ['up']\n");
    s.append(
        "etc/promfed.d/prod.toml",
        "[federate]\nurl = \"https://prom.example\"\n",
    );
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let line = settings_line(&s, "service = \"prometheus\"");
    let expected = format!(
        "{}:{line}:11: key `defaults.federate.service`: give either `url`",
        s.path("etc/promfed.toml").display()
    );
    let err = stderr(&out);
    assert!(err.contains(&expected), "{err}");
    assert!(
        err.contains(&format!(
            "inherited from [defaults] by {}",
            s.path("etc/promfed.d/prod.toml").display()
        )),
        "{err}"
    );
    assert!(
        stdout(&out).contains("prod.toml), file invalid: not monitored until it is fixed"),
        "{}",
        stdout(&out)
    );
    let out = s.promfed(&["render"]);
    assert!(
        stdout(&out)
            .contains("/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/federate"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("promfed/prod/"), "{}", stdout(&out));
}

/// The daemon: node-exporter found through the namespace and port only
/// [defaults] give; a change to [defaults] reaches every cluster; a broken
/// one keeps the settings in force.
#[test]
fn the_daemon_applies_a_change_of_the_defaults_to_every_cluster() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fakes: Vec<FakeCluster> = ["stage", "prod"]
        .into_iter()
        .map(|name| {
            let fake =
                FakeCluster::start(setup.root.path(), name, &[&format!("{name}-1")], &exporter);
            let mut state = fake.current_state();
            state["node_exporter"]["namespace"] = "kube-mon".into();
            state["node_exporter"]["port_name"] = "metrics".into();
            fake.set_state(state);
            fake
        })
        .collect();
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.append(
        "etc/promfed.toml",
        "\n[defaults]\nlabels = { team = \"a\" }\n[defaults.node_exporter]\nnamespace = \"kube-mon\"\nport = \"metrics\"\n",
    );
    for fake in &fakes {
        setup.add_cluster(fake);
    }
    let mut daemon = setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    // kubelet, cAdvisor, the API server, and node-exporter in kube-mon.
    for name in ["stage", "prod"] {
        let up = prometheus.wait_targets_up(&format!("promfed/{name}/"), 4);
        assert!(up.iter().all(|t| t["labels"]["team"] == "a"), "{up:?}");
    }

    let settings = setup.read("etc/promfed.toml");
    setup.write(
        "etc/promfed.toml",
        &settings.replace("team = \"a\"", "team = \"b\""),
    );
    for name in ["stage", "prod"] {
        wait_for(&format!("{name}'s targets to carry team=b"), LONG, || {
            let targets = prometheus.active_targets();
            let mine: Vec<&serde_json::Value> = targets
                .iter()
                .filter(|t| {
                    t["scrapePool"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with(&format!("promfed/{name}/"))
                })
                .collect();
            (mine.len() == 4
                && mine
                    .iter()
                    .all(|t| t["labels"]["team"] == "b" && t["health"] == "up"))
            .then_some(())
        });
    }

    // Broken: logged with its place, and the settings in force stay.
    let installed = setup.read("prometheus/prometheus.yml");
    setup.write(
        "etc/promfed.toml",
        &settings
            .replace("team = \"a\"", "team = \"b\"")
            .replace("port = \"metrics\"", "port = 0"),
    );
    let log = wait_for("the broken default in the log", LONG, || {
        let log = daemon.log();
        log.contains("keeping the settings in force").then_some(log)
    });
    assert!(
        log.contains("key `defaults.node_exporter.port`: 0 is not a port number"),
        "{log}"
    );
    assert_eq!(setup.read("prometheus/prometheus.yml"), installed);
    for name in ["stage", "prod"] {
        prometheus.wait_targets_up(&format!("promfed/{name}/"), 4);
    }
}
