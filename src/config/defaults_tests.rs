//! `[defaults]` as promfed reads them: through promfed.toml's reader and
//! under real cluster files. Here, not in defaults.rs, so that defaults.rs
//! does not depend on the cluster reader (which depends on it).

use std::path::Path;

use super::cluster::{Cluster, PortRef};
use super::defaults::Defaults;
use super::diagnostic::SourceText;
use super::last_good::LastGood;
use super::settings::Settings;

const SETTINGS: &str = "/etc/promfed/promfed.toml";
const HEAD: &str = "[prometheus]\nuser = \"root\"\nreload = \"http\"\n";
const CLUSTER: &str =
    "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"t\"\nca_file = \"ca.crt\"\n";

fn settings(defaults: &str) -> Result<Settings, Vec<String>> {
    Settings::parse(&SourceText::new(SETTINGS, format!("{HEAD}{defaults}")))
        .map_err(|ds| ds.iter().map(|d| d.headline()).collect())
}

fn defaults(text: &str) -> Defaults {
    settings(text).unwrap().defaults
}

fn cluster(defaults: &Defaults, extra: &str) -> Result<Cluster, Vec<String>> {
    let source = SourceText::new("/etc/promfed.d/a.toml", format!("{CLUSTER}{extra}"));
    Cluster::parse_with(&source, "a", defaults)
        .map(|p| p.cluster)
        .map_err(|b| b.problems.iter().map(|d| d.headline()).collect())
}

#[test]
fn inherited_values_fill_in_and_the_cluster_file_overrides_key_by_key() {
    let d = defaults(
        "[defaults]\nlabels = { env = \"prod\", team = \"sre\" }\nreceiver = \"sre\"\n[defaults.node_exporter]\nnamespace = \"kube-mon\"\nport = \"metrics\"\n",
    );
    let c = cluster(
        &d,
        "labels = { team = \"web\" }\n[node_exporter]\nnamespace = \"mon\"\n",
    )
    .unwrap();
    assert_eq!(c.node_exporter.namespace, "mon");
    assert_eq!(c.node_exporter.port, PortRef::Name("metrics".into()));
    assert_eq!(c.receiver.as_deref(), Some("sre"));
    let labels: Vec<(&str, &str)> = c
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(labels, [("env", "prod"), ("team", "web")]);
    // Without the defaults the same file gets the built-in ones.
    let plain = cluster(&Defaults::none(), "").unwrap();
    assert_eq!(plain.node_exporter.port, PortRef::Number(9100));
}

#[test]
fn enabled_false_turns_an_inherited_job_off() {
    let d = defaults(
        "[defaults.pods]\nenabled = true\n[defaults.node_exporter]\nport = 9101\n[defaults.federate]\nmatch = ['up']\n",
    );
    let on = cluster(&d, "").unwrap();
    assert!(on.pods.is_some() && on.federate.is_some() && on.node_exporter.component.enabled);
    let off = cluster(
        &d,
        "[pods]\nenabled = false\n[node_exporter]\nenabled = false\n[federate]\nenabled = false\n",
    )
    .unwrap();
    assert_eq!(off.pods, None);
    assert_eq!(off.federate, None);
    assert!(!off.node_exporter.component.enabled);
}

#[test]
fn an_array_in_the_cluster_file_replaces_the_default_one() {
    let d = defaults("[defaults.pods]\nenabled = true\nnamespaces = [\"istio-system\", \"web\"]\n");
    let c = cluster(&d, "[pods]\nnamespaces = [\"shop\"]\n").unwrap();
    assert_eq!(c.pods.unwrap().namespaces, ["shop"]);
}

/// A bad default is promfed.toml's problem, found once with its place
/// there: the settings do not load, as with any broken setting.
#[test]
fn a_bad_default_names_promfed_toml_and_the_defaults_key() {
    let errors = settings(
        "[defaults]\ncolour = 1\n[defaults.node_exporter]\nport = 70000\n[defaults.cadvisor]\nscrape_interval = \"often\"\n",
    )
    .unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].starts_with("/etc/promfed/promfed.toml:5:1: key `defaults.colour`: unknown key"),
        "{}",
        errors[0]
    );
    assert_eq!(
        errors[1],
        "/etc/promfed/promfed.toml:7:8: key `defaults.node_exporter.port`: 70000 is not a port number (1-65535)"
    );
    assert!(
        errors[2].starts_with("/etc/promfed/promfed.toml:9:19: key `defaults.cadvisor.scrape_interval`: `often` is not a duration"),
        "{}",
        errors[2]
    );
}

#[test]
fn a_section_of_the_defaults_must_be_complete_on_its_own() {
    let errors = settings("[defaults.federate]\nnamespace = \"istio-system\"\n").unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]
            .starts_with("/etc/promfed/promfed.toml:4:1: key `defaults.federate.match`: missing"),
        "{}",
        errors[0]
    );
}

#[test]
fn keys_of_one_cluster_are_refused_as_defaults() {
    let errors =
        settings("[defaults]\napi_server = \"https://h\"\ntoken_file = \"t\"\n").unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("5:1: key `defaults.api_server`: `api_server` is the cluster's API server: it cannot be a default"), "{}", errors[0]);
    assert!(
        errors[1].contains("6:1: key `defaults.token_file`"),
        "{}",
        errors[1]
    );
}

/// One cluster whose file clashes with a default: that cluster's problem,
/// shown at the default's line, naming the cluster file; the cluster's own
/// bad values still name the cluster file.
#[test]
fn a_clash_with_one_cluster_is_that_clusters_problem() {
    let d = defaults("[defaults.federate]\nservice = \"prometheus\"\nmatch = ['up']\n");
    assert!(cluster(&d, "").is_ok());
    let errors = cluster(
        &d,
        "[federate]\nurl = \"https://p.example\"\n[kubelet]\nscrape_interval = \"x\"\n",
    )
    .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with("/etc/promfed.d/a.toml:7:19: key `kubelet.scrape_interval`"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("/etc/promfed/promfed.toml:5:11: key `defaults.federate.service`: give either `url`")
            && errors[1].ends_with("(inherited from [defaults] by /etc/promfed.d/a.toml: set the key there to override it, or change the default)"),
        "{}",
        errors[1]
    );
}

/// A kept definition is read with the defaults it was applied with, not
/// with the ones in force now.
#[test]
fn the_last_good_definition_keeps_the_defaults_it_was_applied_with() {
    let state = tempfile::tempdir().unwrap();
    let last_good = LastGood::new(state.path());
    let old = defaults("[defaults.node_exporter]\nport = 9101\n");
    let applied = cluster(&old, "").unwrap();
    last_good.record(&[(&applied, CLUSTER)], &old, &[]).unwrap();
    let kept = last_good.load(&applied.name).unwrap();
    assert_eq!(kept, applied);
    assert_eq!(kept.node_exporter.port, PortRef::Number(9101));
    // Copies kept before there were defaults read as they were.
    let file = state.path().join("clusters/a.json");
    let json = format!(
        "{{\"file\": \"/etc/promfed.d/a.toml\", \"text\": {}}}",
        serde_json::to_string(CLUSTER).unwrap()
    );
    std::fs::write(&file, json).unwrap();
    let plain = last_good.load(&applied.name).unwrap();
    assert_eq!(plain.node_exporter.port, PortRef::Number(9100));
    assert_eq!(plain.source, Path::new("/etc/promfed.d/a.toml"));
}

/// Exporter tables go through `[defaults]` like any section: a preset for
/// the whole fleet, overridden key by key and turned off in one cluster.
#[test]
fn exporters_are_inherited_overridden_and_turned_off_like_any_section() {
    let d = defaults(
        "[defaults.exporter.kube-state-metrics]\n[defaults.exporter.kube-dns]\nscrape_interval = \"1m\"\n",
    );
    let jobs = |c: &Cluster| -> Vec<String> { c.exporters.iter().map(|e| e.job.clone()).collect() };
    let all = cluster(&d, "").unwrap();
    assert_eq!(jobs(&all), ["kube-dns", "kube-state-metrics"]);
    let ksm = all
        .exporters
        .iter()
        .find(|e| e.job == "kube-state-metrics")
        .unwrap();
    assert!(ksm.honor_labels, "the preset's own value");
    let mine = cluster(
        &d,
        "[exporter.kube-dns]\nscrape_interval = \"15s\"\n[exporter.kube-state-metrics]\nenabled = false\n",
    )
    .unwrap();
    assert_eq!(jobs(&mine), ["kube-dns"]);
    assert_eq!(
        mine.exporters[0]
            .scrape_interval
            .as_ref()
            .map(|i| i.to_string())
            .as_deref(),
        Some("15s")
    );
    // A mistake in an inherited exporter is promfed.toml's, with the key.
    let problems = settings(
        "[defaults.exporter.traefik]\nnamespace = \"traefik\"\nservice = \"traefik\"\nport = \"no such name!\"\n",
    )
    .unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(SETTINGS) && p.contains("defaults.exporter.traefik.port")),
        "{problems:?}"
    );
}
