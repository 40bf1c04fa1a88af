//! `[exec]` and `[token_request]`: credentials promfed obtains and renews
//! itself, written under the state folder for Prometheus. The fake API
//! server accepts only the latest token, so a target that stays up after a
//! renewal is scraped with the new one. The exec renewal test runs on
//! Prometheus 2.42, 2.53 and 3.5.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);
/// The fake plugin's tokens last this long: renewal comes at 80 %.
const LIFETIME: u64 = 4;
/// A renewal is due within this of the last: three lifetimes.
const RENEWAL_WAIT: Duration = Duration::from_secs(LIFETIME * 3);

/// Writes a fake exec plugin for `name` beside its cluster file. Each run
/// issues `exec-NAME-N-…` from a counter and tells the fake API server
/// (`latest`) that this token alone is valid; `FAKE_MODE` (the stanza's
/// env) makes it fail, hang, print garbage or too much, or leak its token
/// on stderr.
fn plugin(setup: &Setup, name: &str, api_version: &str, latest: &Path) {
    let script = format!(
        r#"#!/usr/bin/env python3
import json, os, sys, time
mode = os.environ.get("FAKE_MODE", "ok")
here = os.path.dirname(os.path.abspath(__file__))
counter = os.path.join(here, "{name}.count")
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
if "NOTIFY_SOCKET" in os.environ or "PROMFED_LOG" in os.environ:
    print("promfed's own environment leaked into the plugin", file=sys.stderr); sys.exit(9)
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
if info["spec"]["interactive"] is not False or sys.stdin.isatty():
    sys.exit(8)
if mode == "fail":
    print("Unable to locate credentials", file=sys.stderr); sys.exit(3)
if mode == "hang":
    time.sleep(3600)
if mode == "garbage":
    print("<html>not an ExecCredential</html>"); sys.exit(0)
if mode == "huge":
    sys.stdout.write("x" * (4 << 20)); sys.exit(0)
token = "exec-{name}-%d-%s" % (n, "k" * 24)
expiry = time.time() + {LIFETIME}
if mode == "leak" and n % 2 == 0:
    print("debug: refused after issuing " + token, file=sys.stderr); sys.exit(1)
tmp = "{latest}.tmp"
open(tmp, "w").write("%s %f" % (token, expiry))
os.rename(tmp, "{latest}")
if mode == "leak":
    print("debug: issued " + token, file=sys.stderr)
stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
print(json.dumps({{"apiVersion": "{api_version}", "kind": "ExecCredential",
                  "status": {{"token": token, "expirationTimestamp": stamp}}}}))
"#,
        latest = latest.display()
    );
    let rel = format!("etc/promfed.d/{name}-plugin.py");
    setup.write(&rel, &script);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(setup.path(&rel), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A cluster file for `fake` whose credential comes from its plugin.
fn exec_cluster(setup: &Setup, fake: &FakeCluster, api_version: &str, mode: &str, timeout: &str) {
    let name = &fake.name;
    std::fs::copy(
        fake.ca(),
        setup.path(&format!("etc/promfed.d/{name}.ca.crt")),
    )
    .unwrap();
    setup.write(
        &format!("etc/promfed.d/{name}.toml"),
        &format!(
            "api_server = \"{}\"\nca_file = \"{name}.ca.crt\"\n[exec]\napi_version = \"{api_version}\"\ncommand = \"./{name}-plugin.py\"\nargs = [\"--cluster-name\", \"{name}\"]\nenv = {{ FAKE_MODE = \"{mode}\" }}\ninteractive_mode = \"Never\"\nprovide_cluster_info = true\ntimeout = \"{timeout}\"\n",
            fake.url()
        ),
    );
}

/// The fake accepts only what the plugin last issued.
fn latest_only(fake: &FakeCluster) -> std::path::PathBuf {
    let latest = fake.dir.join("latest-token");
    let mut state = fake.current_state();
    state["tokens"] = json!({});
    state["latest_token_file"] = json!(latest.display().to_string());
    fake.set_state(state);
    latest
}

fn issued(setup: &Setup, name: &str) -> u64 {
    std::fs::read_to_string(setup.path(&format!("etc/promfed.d/{name}.count")))
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Every target of `prefix` up, each scraped after `since` (Prometheus's
/// clock, RFC 3339 with sub-seconds).
fn up_after(prometheus: &Prometheus, prefix: &str, count: usize, since: jiff::Timestamp) {
    wait_for(
        &format!("{count} targets of {prefix} up after {since}"),
        LONG,
        || {
            let targets: Vec<_> = prometheus
                .active_targets()
                .into_iter()
                .filter(|t| t["scrapePool"].as_str().unwrap_or("").starts_with(prefix))
                .collect();
            let fresh = targets.iter().all(|t| {
                t["health"] == "up"
                    && t["lastScrape"]
                        .as_str()
                        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|at| at > since)
            });
            (targets.len() == count && fresh).then_some(())
        },
    );
}

/// `count` renewals, as `renewed` counts them from the start, each within
/// `within` of the last and followed by every target of `prefix` (4)
/// scraped again and up: the fake
/// refuses every token but the newest, so each such scrape used the new one.
fn renewals_keep_targets_up(
    daemon: &mut Daemon,
    prometheus: &Prometheus,
    prefix: &str,
    count: u64,
    within: Duration,
    renewed: impl Fn() -> u64,
) {
    for renewal in 1..=count {
        wait_for(&format!("renewal {renewal}"), within, || {
            daemon.drain();
            (renewed() >= renewal).then_some(())
        });
        up_after(prometheus, prefix, 4, jiff::Timestamp::now());
    }
}

#[test]
fn exec_tokens_are_renewed_before_they_expire_and_prometheus_keeps_scraping() {
    exec_tokens_renewed(Release::Bookworm);
}

#[test]
fn exec_tokens_are_renewed_and_prometheus_2_53_keeps_scraping() {
    exec_tokens_renewed(Release::Trixie);
}

// Prometheus 3.5 as Debian builds it (on prometheus/common 0.69) reads a
// `credentials_file` once per scrape loop: each new token is a new file
// and a reload (`token_files = "auto"`).
#[test]
fn exec_tokens_are_renewed_and_prometheus_3_5_keeps_scraping() {
    exec_tokens_renewed(Release::Sid);
}

/// On each Prometheus release: 2.x reads the renewed token file again at
/// every scrape, with no reload; 3.5 is given each token as a new file.
fn exec_tokens_renewed(release: Release) {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let latest = latest_only(&prod);
    let prometheus = setup.prometheus_of(release, "reload = \"http\"");
    let v1 = "client.authentication.k8s.io/v1";
    plugin(&setup, "prod", v1, &latest);
    exec_cluster(&setup, &prod, v1, "ok", "5s");
    let mut daemon = setup.daemon();
    daemon.wait_status("prod discovered", LONG, |s| {
        s["clusters"]["prod"]["discovery"]["state"] == "ok"
    });
    prometheus.wait_targets_up("promfed/prod/", 4);

    // Three renewals: the fake refuses every token but the newest, so each
    // target that is scraped again after a renewal used the new token.
    let first = issued(&setup, "prod");
    renewals_keep_targets_up(
        &mut daemon,
        &prometheus,
        "promfed/prod/",
        3,
        RENEWAL_WAIT,
        || issued(&setup, "prod") - first,
    );
    // Renewal at about 80 % of 4 s: not once per scrape, not late.
    let renewals = issued(&setup, "prod") - first;
    assert!((3..=5).contains(&renewals), "{renewals} renewals");

    let config = setup.read("prometheus/prometheus.yml");
    let token_file = setup.path("state/credentials/prod/token");
    let named = if release == Release::Sid {
        // A copy per token: the last one, named after three renewals.
        let copies = setup.path("state/credentials/prod/prometheus");
        let newest = newest_copy(&copies);
        assert!(newest >= 4, "copy {newest}");
        assert_eq!(
            std::fs::read_to_string(&token_file).unwrap(),
            std::fs::read_to_string(copies.join(format!("token.{newest}"))).unwrap()
        );
        copies.join(format!("token.{newest}"))
    } else {
        token_file.clone()
    };
    assert!(
        config.contains(&format!("credentials_file: {}", named.display())),
        "{config}"
    );
    assert!(
        !config.contains("exec-prod-"),
        "a token in the configuration"
    );
    assert_eq!(
        config.contains("fallback_scrape_protocol"),
        release == Release::Sid,
        "rendered for its own promtool"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().mode() & 0o777,
        0o640
    );
    let status = daemon.status();
    let c = &status["clusters"]["prod"];
    assert_eq!(c["credential"]["source"], "exec", "{status}");
    assert_eq!(
        c["credential"]["error"],
        serde_json::Value::Null,
        "{status}"
    );
    let expiry: jiff::Timestamp = c["token_expiry"].as_str().unwrap().parse().unwrap();
    assert!(
        expiry > jiff::Timestamp::now() - Duration::from_secs(LIFETIME),
        "{status}"
    );
    let metrics = setup.read("state/promfed.prom");
    assert!(
        metrics.contains("promfed_cluster_token_expiry_timestamp_seconds{cluster=\"prod\"} "),
        "{metrics}"
    );
}

/// The highest `token.N` in `dir`.
fn newest_copy(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("token.")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_failing_hanging_or_garbled_plugin_is_that_clusters_error_alone() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let evil = FakeCluster::start(setup.root.path(), "evil", &["e-1"], &exporter);
    let latest = latest_only(&evil);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    let beta = "client.authentication.k8s.io/v1beta1";
    plugin(&setup, "evil", beta, &latest);
    let cases = [
        (
            "fail",
            "exit status: 3; 29 bytes on stderr, the first line: \"Unable to locate credentials\"",
        ),
        (
            "hang",
            "still running after 2s ([exec] timeout): it was killed",
        ),
        ("garbage", "its output is not JSON"),
        (
            "huge",
            "printed more than 1024 KiB on stdout: it was killed",
        ),
    ];
    for (mode, why) in cases {
        exec_cluster(&setup, &evil, beta, mode, "2s");
        let started = Instant::now();
        let out = run_within(
            std::process::Command::new(env!("CARGO_BIN_EXE_promfed"))
                .arg("--config")
                .arg(setup.path("etc/promfed.toml"))
                .arg("apply"),
            Duration::from_secs(30),
        );
        let text = stdout(&out) + &stderr(&out);
        assert!(
            text.contains("cluster evil: no new credential: exec plugin") && text.contains(why),
            "{mode}: wanted {why}\n{text}"
        );
        assert!(
            stdout(&out).contains("cluster stage (")
                && stdout(&out).contains("1 node, 1 node-exporter pod"),
            "{mode}: stage must be applied\n{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
        // The hang costs its timeout, not more.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{mode}: {:?}",
            started.elapsed()
        );
        prometheus.wait_targets_up("promfed/stage/", 4);
    }
}

#[test]
fn a_plugin_that_prints_its_token_on_stderr_leaks_it_nowhere() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let leaky = FakeCluster::start(setup.root.path(), "leaky", &["l-1"], &exporter);
    let latest = latest_only(&leaky);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    let v1 = "client.authentication.k8s.io/v1";
    plugin(&setup, "leaky", v1, &latest);
    exec_cluster(&setup, &leaky, v1, "leak", "5s");
    let mut daemon = setup.daemon();
    // Every other run fails with its token on stderr, which is then told.
    daemon.wait_status("a failed renewal in status", LONG, |s| {
        s["clusters"]["leaky"]["credential"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("exit status: 1"))
    });
    wait_for("a few more runs", LONG, || {
        (issued(&setup, "leaky") >= 4).then_some(())
    });
    let log = daemon.log();
    assert!(
        log.contains(
            "bytes on stderr, the first line: \"debug: refused after issuing [redacted]\""
        ),
        "{log}"
    );
    let token_file = setup.path("state/credentials/leaky/token");
    let mut shown = vec![
        ("the log".to_string(), log),
        (
            "promfed status".to_string(),
            stdout(&setup.promfed(&["status"])),
        ),
        (
            "the configuration".to_string(),
            setup.read("prometheus/prometheus.yml"),
        ),
    ];
    shown.extend(
        files_below(&setup.path("state"))
            .into_iter()
            .filter(|(path, _)| Path::new(path) != token_file),
    );
    for (what, text) in shown {
        assert!(!text.contains("exec-leaky-"), "a token in {what}:\n{text}");
    }
    assert!(
        std::fs::read_to_string(&token_file)
            .unwrap()
            .starts_with("exec-leaky-")
    );
}

/// A base token allowed to mint for monitoring/promfed, and a cluster file
/// with [token_request].
fn token_request_cluster(setup: &Setup, fake: &FakeCluster, mint: bool) {
    let mut state = fake.current_state();
    let user = "system:serviceaccount:kube-system:minter";
    state["tokens"] = json!({ &fake.token: { "user": user, "mint": if mint { vec!["monitoring/promfed"] } else { vec![] } } });
    state["token_request_lifetime"] = json!(LIFETIME);
    fake.set_state(state);
    setup.add_cluster(fake);
    setup.append(
        &format!("etc/promfed.d/{}.toml", fake.name),
        "[token_request]\nnamespace = \"monitoring\"\nservice_account = \"promfed\"\nexpiration = \"10m\"\n",
    );
}

#[test]
fn token_request_mints_the_token_prometheus_then_uses_and_renews_it() {
    token_request_renewed(Release::Bookworm);
}

/// The fake keeps only the newest minted token valid: 3.5 must be given
/// each one as a new file.
#[test]
fn token_request_tokens_are_renewed_and_prometheus_3_5_keeps_scraping() {
    token_request_renewed(Release::Sid);
}

fn token_request_renewed(release: Release) {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let mint = FakeCluster::start(setup.root.path(), "mint", &["m-1"], &exporter);
    let prometheus = setup.prometheus_of(release, "reload = \"http\"");
    token_request_cluster(&setup, &mint, true);
    let mut daemon = setup.daemon();
    daemon.wait_status("mint discovered", LONG, |s| {
        s["clusters"]["mint"]["discovery"]["state"] == "ok"
    });
    let token_file = setup.path("state/credentials/mint/token");
    let first = mint.requests("token_request");
    renewals_keep_targets_up(&mut daemon, &prometheus, "promfed/mint/", 3, LONG, || {
        mint.requests("token_request") - first
    });
    assert!(
        std::fs::read_to_string(&token_file)
            .unwrap()
            .starts_with("minted-promfed-")
    );
    assert_eq!(mint.requests("token_request_forbidden"), 0);
    let config = setup.read("prometheus/prometheus.yml");
    let named = match release {
        Release::Sid => {
            let copies = setup.path("state/credentials/mint/prometheus");
            copies.join(format!("token.{}", newest_copy(&copies)))
        }
        _ => token_file.clone(),
    };
    assert!(
        config.contains(&format!("credentials_file: {}", named.display())),
        "{config}"
    );
    assert!(
        !config.contains("promfed.d/mint/token"),
        "the base token is promfed's alone:\n{config}"
    );
}

/// A new [token_request] cluster passes `promfed check` before any apply
/// has minted its token, and check writes no placeholder token (`apply`
/// does) and leaves no candidate behind.
#[test]
fn a_new_token_request_cluster_passes_check_before_any_apply() {
    let setup = Setup::new();
    setup.settings("http://127.0.0.1:1", "reload = \"http\"");
    setup.write("etc/promfed.d/mint/minter", "base-token-of-the-minter\n");
    setup.write(
        "etc/promfed.d/mint.toml",
        "api_server = \"https://127.0.0.1:1\"\ninsecure_skip_verify = true\ntoken_file = \"mint/minter\"\n[token_request]\nnamespace = \"monitoring\"\nservice_account = \"promfed\"\n",
    );
    let out = setup.promfed(&["check"]);
    assert_exit(&out, 0);
    let text = stdout(&out) + &stderr(&out);
    assert!(!text.contains("base-token-of-the-minter"), "{text}");
    let names = |dir: &str| -> Vec<_> {
        std::fs::read_dir(setup.path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    // Only the cache of promtool's version, which any run may keep.
    assert_eq!(names("state"), ["promtool-version"]);
    assert_eq!(names("prometheus"), ["prometheus.yml"]);
    assert!(
        setup
            .read("prometheus/prometheus.yml")
            .contains("the test's first file")
    );
    // The configuration apply will write names the minted token's file.
    let out = setup.promfed(&["render"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("credentials/mint/token") && !stdout(&out).contains("promfed-check-"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_refused_token_request_names_the_missing_permission() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let nope = FakeCluster::start(setup.root.path(), "nope", &["n-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    token_request_cluster(&setup, &nope, false);
    let out = setup.promfed(&["apply"]);
    let text = stdout(&out) + &stderr(&out);
    assert!(
        text.contains(
            "cluster nope: no new credential: TokenRequest for monitoring/promfed: 403 Forbidden"
        ) && text.contains("promfed needs `create` on `serviceaccounts/token`"),
        "{text}"
    );
    assert!(!text.contains(&nope.token), "{text}");
    assert_eq!(nope.requests("token_request_forbidden"), 1);
    prometheus.wait_targets_up("promfed/stage/", 4);
}

/// The manifests `rbac` printed, as YAML documents (comments and empty
/// documents left out).
fn rbac_docs(manifests: &str) -> Vec<serde_json::Value> {
    serde_norway::Deserializer::from_str(manifests)
        .map(|doc| <serde_json::Value as serde::Deserialize>::deserialize(doc).expect("valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// `rbac` for a cluster file with `[token_request]`: the section's service
/// account, a Role in its namespace that may create that account's tokens
/// and nothing else, bound to the base identity (`--base-user`), and no
/// long-lived token Secret; the scrape roles are the account's.
/// `--token-request` gives the same for the defaults.
#[test]
fn rbac_for_token_request_prints_the_account_and_its_token_role_and_no_secret() {
    let setup = Setup::new();
    setup.settings("http://127.0.0.1:1", "reload = \"http\"");
    setup.write(
        "etc/promfed.d/mint.toml",
        "api_server = \"https://127.0.0.1:1\"\nca_file = \"ca.crt\"\ntoken_file = \"minter\"\n[token_request]\nnamespace = \"observability\"\nservice_account = \"prom-scraper\"\n",
    );
    let out = setup.promfed(&["rbac", "--base-user", "promfed-minter", "mint"]);
    assert_exit(&out, 0);
    let docs = rbac_docs(&stdout(&out));
    assert!(of_kind(&docs, "Secret").is_empty(), "{}", stdout(&out));
    let accounts = of_kind(&docs, "ServiceAccount");
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["metadata"]["name"], "prom-scraper");
    assert_eq!(accounts[0]["metadata"]["namespace"], "observability");

    // Exactly one rule anywhere reaches serviceaccounts/token: create, for
    // this account alone, in its namespace.
    let token_roles: Vec<&serde_json::Value> = of_kind(&docs, "Role")
        .into_iter()
        .chain(of_kind(&docs, "ClusterRole"))
        .filter(|r| {
            r["rules"].as_array().unwrap().iter().any(|rule| {
                rule["resources"]
                    .as_array()
                    .is_some_and(|rs| rs.iter().any(|o| o == "serviceaccounts/token"))
            })
        })
        .collect();
    assert_eq!(token_roles.len(), 1, "{}", stdout(&out));
    let role = token_roles[0];
    assert_eq!(role["kind"], "Role");
    assert_eq!(role["metadata"]["namespace"], "observability");
    assert_eq!(
        role["rules"],
        json!([{
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": ["prom-scraper"],
            "verbs": ["create"],
        }])
    );
    let role_name = role["metadata"]["name"].as_str().unwrap();

    // Its binding names the base identity; every other binding names the
    // service account, which holds the scrape permissions.
    let bindings: Vec<&serde_json::Value> = of_kind(&docs, "RoleBinding")
        .into_iter()
        .chain(of_kind(&docs, "ClusterRoleBinding"))
        .collect();
    let (minting, scraping): (Vec<_>, Vec<_>) = bindings
        .into_iter()
        .partition(|b| b["roleRef"]["name"] == role_name);
    assert_eq!(minting.len(), 1);
    assert_eq!(minting[0]["metadata"]["namespace"], "observability");
    assert_eq!(minting[0]["roleRef"]["kind"], "Role");
    assert_eq!(
        minting[0]["subjects"],
        json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "promfed-minter"}])
    );
    assert!(!scraping.is_empty());
    for b in scraping {
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "prom-scraper", "namespace": "observability"}])
        );
    }
    assert!(
        of_kind(&docs, "ClusterRole").iter().any(|r| r["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| rule["resources"] == json!(["nodes/proxy"]))),
        "the scrape rules are there"
    );

    // --token-request for the defaults; a service account as the base.
    let out = setup.promfed(&[
        "rbac",
        "--token-request",
        "--base-user",
        "system:serviceaccount:kube-system:minter",
    ]);
    assert_exit(&out, 0);
    let docs = rbac_docs(&stdout(&out));
    assert!(of_kind(&docs, "Secret").is_empty());
    assert_eq!(
        of_kind(&docs, "ServiceAccount")[0]["metadata"],
        json!({"name": "promfed", "namespace": "monitoring"})
    );
    let binding = of_kind(&docs, "RoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["name"] == "promfed-token-request")
        .unwrap();
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "minter", "namespace": "kube-system"}])
    );

    // Without either: the long-lived token Secret, as before.
    let docs = rbac_docs(&stdout(&setup.promfed(&["rbac"])));
    assert_eq!(of_kind(&docs, "Secret").len(), 1);
    assert!(
        !docs
            .iter()
            .any(|d| d.to_string().contains("serviceaccounts/token"))
    );

    // A base identity that cannot be named is a usage error.
    for bad in ["", "min\nter"] {
        let out = setup.promfed(&["rbac", "--token-request", "--base-user", bad]);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("--base-user"), "{}", stderr(&out));
    }
}

/// The operator's own token file, rotated, on Prometheus 3.5 as Debian
/// builds it: Prometheus is given a copy of each token (a new file, then a
/// reload), and every target stays up on the new one.
#[test]
fn a_rotated_token_file_reaches_prometheus_3_5() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let prometheus = setup.prometheus_of(Release::Sid, "reload = \"http\"");
    setup.add_cluster(&prod);
    let mut daemon = setup.daemon();
    prometheus.wait_targets_up("promfed/prod/", 4);
    let copies = setup.path("state/credentials/prod/prometheus");
    let first = newest_copy(&copies);
    let loaded = prometheus.last_reload();

    // Only the new token is accepted from now on.
    let mut state = prod.current_state();
    state["tokens"] =
        json!({ "token-prod-2": { "user": "system:serviceaccount:monitoring:prometheus" } });
    prod.set_state(state);
    setup.write("etc/promfed.d/prod/token", "token-prod-2\n");
    up_after(&prometheus, "promfed/prod/", 4, jiff::Timestamp::now());
    daemon.drain();
    assert!(newest_copy(&copies) > first, "no copy of the new token");
    assert_ne!(
        prometheus.last_reload(),
        loaded,
        "a new file needs a reload"
    );
    let config = setup.read("prometheus/prometheus.yml");
    let named = copies.join(format!("token.{}", newest_copy(&copies)));
    assert!(
        config.contains(&format!("credentials_file: {}", named.display())),
        "{config}"
    );
    assert!(
        !config.contains("token-prod-"),
        "a token in the configuration"
    );
    assert_eq!(std::fs::read_to_string(&named).unwrap(), "token-prod-2\n");
}

/// In `kubernetes_sd` mode Prometheus discovers by itself, but the daemon
/// still obtains and renews `[exec]` credentials: Prometheus 3.5's own
/// discovery and scrapes keep working across renewals.
#[test]
fn exec_tokens_are_renewed_in_kubernetes_sd_mode_on_prometheus_3_5() {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let prod = FakeCluster::start(setup.root.path(), "prod", &["p-1"], &exporter);
    let latest = latest_only(&prod);
    let prometheus = Prometheus::start_sid(
        setup.root.path(),
        &setup.path("prometheus/prometheus.yml"),
        None,
    );
    setup.sid_kubernetes_sd_settings(&prometheus.url());
    let v1 = "client.authentication.k8s.io/v1";
    plugin(&setup, "prod", v1, &latest);
    exec_cluster(&setup, &prod, v1, "ok", "5s");
    let mut daemon = setup.daemon();
    prometheus.wait_targets_up("promfed/prod/", 4);
    let first = issued(&setup, "prod");
    renewals_keep_targets_up(
        &mut daemon,
        &prometheus,
        "promfed/prod/",
        2,
        RENEWAL_WAIT,
        || issued(&setup, "prod") - first,
    );
    let config = setup.read("prometheus/prometheus.yml");
    assert!(config.contains("kubernetes_sd_configs"), "{config}");
    assert!(
        !config.contains("exec-prod-"),
        "a token in the configuration"
    );
}
