//! promfed's shipped alerting rules and Grafana dashboard
//! (share/rules/promfed.rules.yml, share/dashboards/promfed.json): the rules
//! pass `promtool check rules` and the cases of tests/rules/ under promtool
//! 2.42, 2.53 and 3.5, every alert has a case where it fires (an alert whose
//! expression never fires fails them) and one where it does not; every
//! dashboard panel's expression answers a real Prometheus that scrapes a
//! running promfed's metrics through node-exporter's textfile collector.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const PROMTOOLS: [&str; 3] = [PROMTOOL, TRIXIE_PROMTOOL, SID_PROMTOOL];

fn promtool(tool: &str, args: &[&str], file: &Path) -> Result<String, String> {
    let out = Command::new(tool).args(args).arg(file).output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn yaml(path: &Path) -> serde_norway::Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every alert name of the rules file, once each.
fn alert_names() -> Vec<String> {
    let rules = yaml(&repo("share/rules/promfed.rules.yml"));
    let mut names: Vec<String> = rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect();
    names.dedup();
    names
}

#[test]
fn the_rules_pass_promtool_check_and_their_tests_on_2_42_2_53_and_3_5() {
    let rules = repo("share/rules/promfed.rules.yml");
    let cases = repo("tests/rules/promfed.rules.test.yml");
    for tool in PROMTOOLS {
        require(tool);
        let checked = promtool(tool, &["check", "rules"], &rules)
            .unwrap_or_else(|e| panic!("{tool} check rules: {e}"));
        assert!(
            checked.contains("SUCCESS: 12 rules found"),
            "{tool}: {checked}"
        );
        promtool(tool, &["test", "rules"], &cases)
            .unwrap_or_else(|e| panic!("{tool} test rules: {e}"));
    }
}

#[test]
fn every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() {
    let cases = yaml(&repo("tests/rules/promfed.rules.test.yml"));
    let evals: Vec<&serde_norway::Value> = cases["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
        .collect();
    for name in alert_names() {
        let of_it = || {
            evals
                .iter()
                .filter(|e| e["alertname"].as_str() == Some(&name))
        };
        let fires = of_it().any(|e| !e["exp_alerts"].as_sequence().unwrap().is_empty());
        let quiet = of_it().any(|e| e["exp_alerts"].as_sequence().unwrap().is_empty());
        assert!(
            fires && quiet,
            "{name}: fires in a case: {fires}, quiet in one: {quiet}"
        );
    }
}

/// Each alert's expression replaced by one that never fires: the cases
/// must fail, so each alert's firing is really tested.
#[test]
fn the_rule_tests_fail_when_any_alert_can_no_longer_fire() {
    require(PROMTOOL);
    let dir = tempfile::tempdir().unwrap();
    let cases = std::fs::read_to_string(repo("tests/rules/promfed.rules.test.yml"))
        .unwrap()
        .replace("../../share/rules/promfed.rules.yml", "promfed.rules.yml");
    std::fs::write(dir.path().join("cases.yml"), cases).unwrap();
    for name in alert_names() {
        let mut rules = yaml(&repo("share/rules/promfed.rules.yml"));
        for rule in rules["groups"][0]["rules"].as_sequence_mut().unwrap() {
            if rule["alert"].as_str() == Some(&name) {
                rule["expr"] = serde_norway::Value::from("vector(1) == 0");
            }
        }
        std::fs::write(
            dir.path().join("promfed.rules.yml"),
            serde_norway::to_string(&rules).unwrap(),
        )
        .unwrap();
        let out = promtool(PROMTOOL, &["test", "rules"], &dir.path().join("cases.yml"));
        let failure = out.expect_err(&format!("{name} muted, yet the cases pass"));
        assert!(failure.contains(&format!("alertname: {name}")), "{failure}");
    }
}

/// The dashboard's structure: a datasource variable, a cluster variable
/// fed from promfed's series, and panels whose targets have expressions
/// and use the datasource variable.
fn dashboard_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("share/dashboards/promfed.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned();
    let ds = var("datasource").expect("a datasource variable");
    assert_eq!(
        (&ds["type"], &ds["query"]),
        (&"datasource".into(), &"prometheus".into())
    );
    let cluster = var("cluster").expect("a cluster variable");
    assert_eq!(cluster["type"], "query");
    assert!(
        cluster["definition"]
            .as_str()
            .unwrap()
            .contains("promfed_cluster_config_valid"),
        "{cluster}"
    );
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut exprs = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap().to_string();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no targets");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            exprs.push((title.clone(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    for needed in [
        "promfed_cluster_discovery_errors_total",
        "promfed_cluster_token_expiry_timestamp_seconds",
        "promfed_cluster_certificate_expiry_timestamp_seconds",
        "promfed_applies_total",
        "promfed_reloads_total",
        "up{",
    ] {
        assert!(
            exprs.iter().any(|(_, e)| e.contains(needed)),
            "no panel reads {needed}"
        );
    }
    exprs
}

/// A service-account token shaped as a JWT, expiring `seconds` from now.
fn jwt_expiring_in(seconds: u64) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds;
    format!(
        "{}.{}.signature",
        b64(r#"{"alg":"RS256","kid":"k"}"#),
        b64(&format!(
            r#"{{"sub":"system:serviceaccount:monitoring:prometheus","exp":{exp}}}"#
        ))
    )
}

/// An instant query's whole answer.
fn query(prometheus: &Prometheus, promql: &str) -> Value {
    let out = Command::new("curl")
        .args([
            "-s",
            "-G",
            &format!("{}/api/v1/query", prometheus.url()),
            "--data-urlencode",
        ])
        .arg(format!("query={promql}"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn every_dashboard_panel_answers_a_prometheus_that_scrapes_promfed_and_the_rules_load() {
    let exprs = dashboard_expressions();
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), "fleet", &["node-a"], &exporter);
    // node-exporter's textfile collector reads promfed's metrics file.
    let textfiles = setup.path("state/textfile");
    std::fs::create_dir_all(&textfiles).unwrap();
    let port = free_port();
    let _textfile = Process::spawn(
        "node-exporter-textfile",
        Command::new(NODE_EXPORTER).args([
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--collector.disable-defaults",
            "--collector.textfile",
            &format!("--collector.textfile.directory={}", textfiles.display()),
        ]),
        &setup.path("node-exporter-textfile.log"),
    );
    setup.write(
        "etc/prometheus.base.yml",
        &format!(
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            repo("share/rules/promfed.rules.yml").display()
        ),
    );
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let settings = setup.read("etc/promfed.toml").replace(
        "metrics_file = \"../state/promfed.prom\"",
        "metrics_file = \"../state/textfile/promfed.prom\"",
    );
    setup.write("etc/promfed.toml", &settings);
    setup.add_cluster(&fake);
    // A token with an expiry (a JWT), for the credential panel.
    let token = jwt_expiring_in(30 * 86400);
    let mut state = fake.current_state();
    state["tokens"][&token] = state["tokens"][&fake.token].clone();
    fake.set_state(state);
    setup.write("etc/promfed.d/fleet/token", &format!("{token}\n"));
    // A cluster whose API server is gone: discovery errors to count.
    setup.write(
        "etc/promfed.d/gone.toml",
        &format!(
            "api_server = \"https://127.0.0.1:{}\"\ntoken_file = \"fleet/token\"\nca_file = \"fleet/ca.crt\"\n",
            free_port()
        ),
    );
    let _daemon = setup.daemon();

    // promfed's series and the cluster's own targets, through Prometheus.
    wait_for(
        "promfed's series and the cluster's targets",
        Duration::from_secs(60),
        || {
            let healthy =
                prometheus.query("promfed_cluster_discovery_healthy{cluster=\"fleet\"} == 1");
            let up = prometheus.query("up{cluster=\"fleet\"} == 1");
            let applied = prometheus.query("promfed_last_apply_success_timestamp_seconds");
            let token = prometheus.query("promfed_cluster_token_expiry_timestamp_seconds");
            let errors =
                prometheus.query("promfed_cluster_discovery_errors_total{cluster=\"gone\"}");
            let beat =
                prometheus.query("node_textfile_mtime_seconds{file=~\"(.*/)?promfed\\\\.prom\"}");
            [healthy, up, applied, token, errors, beat]
                .iter()
                .all(|r| !r.is_empty())
                .then_some(())
        },
    );
    let rules = prometheus.api("/api/v1/rules");
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(loaded, 12, "{rules}");

    // Each expression is valid PromQL, and each series it reads exists
    // (a panel may rightly be empty: no target down, no error yet).
    let series = regex::Regex::new(
        r"\b(promfed_[a-z_]+|up|scrape_duration_seconds|scrape_samples_scraped|node_textfile_mtime_seconds)\b",
    )
    .unwrap();
    let mut failures = Vec::new();
    for (title, expr) in &exprs {
        let promql = expr
            .replace("$cluster", ".+")
            .replace("$__rate_interval", "1m");
        let answer = query(&prometheus, &promql);
        if answer["status"] != "success" {
            failures.push(format!("{title}: {promql}\n  {answer}"));
        }
        for name in series.find_iter(expr).map(|m| m.as_str()) {
            // The certificate metric comes with client certificates, which
            // this cluster (a token) has none of.
            if name == "promfed_cluster_certificate_expiry_timestamp_seconds" {
                continue;
            }
            if prometheus.query(&format!("count({name})")).is_empty() {
                failures.push(format!("{title}: no series {name}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
