//! TLS files whose content Prometheus refuses though promtool passes them
//! (a CA file without a certificate, a client key that is no key or not the
//! certificate's): Prometheus drops the jobs that use them, so promfed holds
//! back that cluster alone, naming the file, line and key. The first test
//! shows Debian's Prometheus refusing exactly these files, and taking the
//! ones promfed takes.

use base64::Engine;

use crate::bad_input::{GOOD_CLUSTER, assert_no_leftovers, installed, setup};
use crate::support::*;

/// What a case puts in the cluster's folder.
enum Files {
    Ca(Vec<u8>),
    Pair(&'static str, &'static str),
    FederateCa(Vec<u8>),
}

/// Each case: its name, its files, where promfed points and what it says.
fn cases() -> Vec<(&'static str, Files, &'static str, &'static str)> {
    let der = {
        let body: String = TEST_CA
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    vec![
        (
            "keyasca",
            Files::Ca(TEST_OTHER_KEY.into()),
            "3:11: key `ca_file`",
            "/ca.crt holds no PEM certificate (it holds: PRIVATE KEY), so Prometheus would drop the jobs that use it (\"unable to use specified CA cert\")",
        ),
        (
            "derca",
            Files::Ca(der),
            "3:11: key `ca_file`",
            "/ca.crt holds no PEM certificate (it is not PEM)",
        ),
        (
            "emptyca",
            Files::Ca(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec()),
            "3:11: key `ca_file`",
            "/ca.crt holds no PEM certificate (it holds: CERTIFICATE)",
        ),
        (
            "blankca",
            Files::Ca(b"\n".to_vec()),
            "3:11: key `ca_file`",
            "/ca.crt holds no PEM certificate (it is empty)",
        ),
        (
            "otherkey",
            Files::Pair(TEST_CLIENT_CERT, TEST_OTHER_KEY),
            "3:12: key `key_file`",
            "/client.key is not the key of the certificate in cert_file, so Prometheus would drop the jobs that use it (\"unable to use specified client cert & key\")",
        ),
        (
            "certaskey",
            Files::Pair(TEST_CLIENT_CERT, TEST_CLIENT_CERT),
            "3:12: key `key_file`",
            "/client.key holds no PEM private key (it holds: CERTIFICATE)",
        ),
        (
            "keyascert",
            Files::Pair(TEST_CLIENT_KEY, TEST_CLIENT_KEY),
            "2:13: key `cert_file`",
            "/client.crt holds no PEM certificate (it holds: PRIVATE KEY)",
        ),
        (
            "meshca",
            Files::FederateCa(b"not a certificate\n".to_vec()),
            "7:11: key `federate.ca_file`",
            "/ca.crt holds no PEM certificate (it is not PEM)",
        ),
    ]
}

/// Writes a case's files under `dir/name/` and returns its Prometheus
/// `tls_config`, for the first test.
fn write_files(dir: &std::path::Path, name: &str, files: &Files) -> String {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let put = |file: &str, bytes: &[u8]| {
        let path = folder.join(file);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    match files {
        Files::Ca(bytes) | Files::FederateCa(bytes) => {
            format!("{{ca_file: '{}'}}", put("ca.crt", bytes))
        }
        Files::Pair(cert, key) => format!(
            "{{cert_file: '{}', key_file: '{}'}}",
            put("client.crt", cert.as_bytes()),
            put("client.key", key.as_bytes())
        ),
    }
}

#[test]
fn prometheus_drops_the_jobs_whose_tls_files_promtool_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("scrape_configs:\n");
    let mut job = |name: &str, tls: &str| {
        config.push_str(&format!(
            "- job_name: {name}\n  scheme: https\n  tls_config: {tls}\n  static_configs: [{{targets: ['127.0.0.1:9']}}]\n"
        ));
    };
    // What promfed takes: a CA among text, other blocks and a block that is
    // not base64, and a pair that belongs together (a version-1
    // certificate, which Go takes too).
    let accepted = write_files(
        dir.path(),
        "accepted",
        &Files::Ca(
            format!("junk\n{TEST_OTHER_KEY}-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n{TEST_CA}")
                .into_bytes(),
        ),
    );
    job("accepted_ca", &accepted);
    let pair = write_files(
        dir.path(),
        "pair",
        &Files::Pair(TEST_CLIENT_CERT, TEST_CLIENT_KEY),
    );
    job("accepted_pair", &pair);
    for (name, files, _, _) in cases() {
        job(name, &write_files(dir.path(), name, &files));
    }
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, &config).unwrap();
    let check = std::process::Command::new(PROMTOOL)
        .args(["check", "config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_exit(&check, 0);

    let prometheus = Prometheus::start(dir.path(), &file, None);
    let pools = |prometheus: &Prometheus| -> Vec<String> {
        let mut pools: Vec<String> = prometheus.api("/api/v1/targets")["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["scrapePool"].as_str().unwrap().to_string())
            .collect();
        pools.sort();
        pools
    };
    let live = wait_for(
        "the accepted jobs' targets",
        std::time::Duration::from_secs(20),
        || {
            let now = pools(&prometheus);
            (now.len() >= 2).then_some(now)
        },
    );
    assert_eq!(live, ["accepted_ca", "accepted_pair"], "{config}");
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap();
    for (name, _, _, _) in cases() {
        assert!(
            log.lines()
                .any(|l| l.contains("error creating new scrape pool")
                    && l.contains(&format!("scrape_pool={name}"))),
            "{name}:\n{log}"
        );
    }
}

#[test]
fn tls_files_prometheus_would_refuse_hold_back_their_cluster_alone() {
    let s = setup();
    let clusters = s.path("etc/promfed.d");
    for (name, files, _, _) in cases() {
        write_files(&clusters, name, &files);
        let toml = match files {
            Files::Ca(_) => format!(
                "api_server = \"https://127.0.0.1:6443\"\ntoken_file = \"stage/token\"\nca_file = \"{name}/ca.crt\"\n"
            ),
            Files::Pair(..) => format!(
                "api_server = \"https://127.0.0.1:6443\"\ncert_file = \"{name}/client.crt\"\nkey_file = \"{name}/client.key\"\nca_file = \"stage/ca.crt\"\n"
            ),
            Files::FederateCa(_) => format!(
                "{GOOD_CLUSTER}[federate]\nurl = \"https://p.example\"\nmatch = ['up']\nca_file = \"{name}/ca.crt\"\n"
            ),
        };
        s.write(&format!("etc/promfed.d/{name}.toml"), &toml);
    }
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    for (name, _, place, why) in cases() {
        let headline = format!("error: {}/{name}.toml:{place}: ", clusters.display());
        assert!(
            err.lines()
                .any(|l| l.starts_with(&headline) && l.contains(why)),
            "{name}: no {headline}…{why} in\n{err}"
        );
    }
    assert_eq!(err.matches("error: ").count(), cases().len(), "{err}");

    let out = s.promfed(&["apply"]);
    assert_exit(&out, 78);
    let config = String::from_utf8(installed(&s)).unwrap();
    assert!(config.contains("promfed/stage/"), "{config}");
    for (name, _, _, _) in cases() {
        assert!(
            !config.contains(&format!("promfed/{name}/")),
            "{name}:\n{config}"
        );
    }
    assert_no_leftovers(&s);
}
