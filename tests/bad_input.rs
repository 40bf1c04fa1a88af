//! Bad input: every case asserts the message (file, line, key) and the exit
//! code, and that nothing was installed. Real promtool; no Prometheus needed,
//! because nothing here gets as far as a reload.

use std::process::Command;

use crate::support::*;

pub const GOOD_CLUSTER: &str = "api_server = \"https://127.0.0.1:6443\"\ntoken_file = \"stage/token\"\nca_file = \"stage/ca.crt\"\n";

/// A setup with one valid cluster `stage` whose API server is not there.
pub fn setup() -> Setup {
    let s = Setup::new();
    s.settings("http://127.0.0.1:1", "reload = \"http\"");
    s.write("etc/promfed.d/stage/token", "secret-token-value\n");
    s.write("etc/promfed.d/stage/ca.crt", TEST_CA);
    s.write("etc/promfed.d/stage.toml", GOOD_CLUSTER);
    s
}

pub fn installed(s: &Setup) -> Vec<u8> {
    std::fs::read(s.path("prometheus/prometheus.yml")).unwrap()
}

/// No candidate or temporary file is left beside the Prometheus config.
pub fn assert_no_leftovers(s: &Setup) {
    let names: Vec<String> = std::fs::read_dir(s.path("prometheus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["prometheus.yml"]);
}

#[test]
fn an_unknown_key_names_file_line_and_key() {
    let s = setup();
    s.write(
        "etc/promfed.d/stage.toml",
        &format!("{GOOD_CLUSTER}colour = \"blue\"\n"),
    );
    let before = installed(&s);
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let file = s.path("etc/promfed.d/stage.toml");
    assert!(
        stderr(&out).contains(&format!(
            "error: {}:4:1: key `colour`: unknown key (allowed here: api_server,",
            file.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("4 | colour = \"blue\"\n  | ^^^^^^"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("not monitored until it is fixed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(installed(&s), before);
}

#[test]
fn all_problems_of_all_files_are_reported_at_once() {
    let s = setup();
    s.write("etc/promfed.d/a.toml", "api_server = \"not a url\"\ntoken_file = \"stage/token\"\nca_file = \"stage/ca.crt\"\nscrape = 1\n");
    s.write("etc/promfed.d/b.toml", "api_server = \"https://10.0.0.1\"\ntoken_file = \"stage/token\"\nca_file = \"stage/ca.crt\"\nlabels = { \"0bad\" = \"x\" }\n[kubelet]\nscrape_interval = \"often\"\n");
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    for expected in [
        "a.toml:1:14: key `api_server`: `not a url` is not a valid URL: relative URL without a base",
        "a.toml:4:1: key `scrape`: unknown key",
        "b.toml:4:12: key `labels.0bad`: `0bad` is not a valid label name",
        "b.toml:6:19: key `kubelet.scrape_interval`: `often` is not a duration",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    // The valid cluster is still rendered and gated.
    assert!(
        stdout(&out).contains("candidate passes the gate"),
        "{}",
        stdout(&out)
    );
}

/// `[federate]` and `[pods]` mistakes: each named with file, line, column and key, and
/// the valid cluster is still rendered and gated.
#[test]
fn federation_mistakes_name_file_line_and_key_and_the_rest_goes_on() {
    let s = setup();
    let cases = [
        (
            "empty",
            "[federate]\nmatch = []\n",
            "empty.toml:5:9: key `federate.match`: must hold at least one selector",
        ),
        (
            "notpromql",
            "[federate]\nmatch = ['{job=\"a\"', 'rate(up[5m])']\n",
            "notpromql.toml:5:10: key `federate.match[0]`: `{job=\"a\"` is not a series selector: `{` is never closed",
        ),
        (
            "both",
            "[federate]\nmatch = ['up']\nurl = \"https://p.example\"\nservice = \"prometheus\"\n",
            "both.toml:7:11: key `federate.service`: give either `url`",
        ),
        (
            "unknown",
            "[federate]\nmatch = ['up']\nmatchers = ['up']\n",
            "unknown.toml:6:1: key `federate.matchers`: unknown key",
        ),
        (
            "everything",
            "[federate]\nmatch = ['{job=~\".*\"}']\n",
            "everything.toml:5:10: key `federate.match[0]`: `{job=~\".*\"}` is not a series selector: at least one matcher must not match the empty string",
        ),
        (
            "nokey",
            "[federate]\nurl = \"https://p.example\"\nmatch = ['up']\ncert_file = \"stage/ca.crt\"\n",
            "nokey.toml:7:13: key `federate.key_file`: cert_file is set, so key_file is needed too",
        ),
        (
            "noca",
            "[federate]\nurl = \"https://p.example\"\nmatch = ['up']\nca_file = \"mesh/missing.crt\"\n",
            "noca.toml:7:11: key `federate.ca_file`:",
        ),
        (
            "podsns",
            "[pods]\nenabled = true\nnamespaces = ['bookinfo', 'Istio_System']\n",
            "podsns.toml:6:27: key `pods.namespaces[1]`: `Istio_System` is not a Kubernetes namespace name",
        ),
        (
            "podsmax",
            "[pods]\nenabled = true\nmax_targets = 0\n",
            "podsmax.toml:6:15: key `pods.max_targets`: 0 is not a number of targets",
        ),
        (
            "podskey",
            "[pods]\nenable = true\n",
            "podskey.toml:5:1: key `pods.enable`: unknown key; did you mean `enabled`? (allowed here: body_size_limit, enabled, max_targets, namespaces, sample_limit, scrape_timeout)",
        ),
    ];
    for (name, federate, _) in &cases {
        s.write(
            &format!("etc/promfed.d/{name}.toml"),
            &format!("{GOOD_CLUSTER}{federate}"),
        );
    }
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    for (_, _, expected) in cases {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        stdout(&out).contains("candidate passes the gate"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn duplicate_cluster_names_are_refused_in_the_second_file() {
    let s = setup();
    s.write(
        "etc/promfed.d/zz-copy.toml",
        &format!("name = \"stage\"\n{GOOD_CLUSTER}"),
    );
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let expected = format!(
        "{}:1:8: key `name`: cluster name `stage` is already used by {}",
        s.path("etc/promfed.d/zz-copy.toml").display(),
        s.path("etc/promfed.d/stage.toml").display()
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
}

#[test]
fn a_missing_ca_is_caught_before_promtool() {
    let s = setup();
    std::fs::remove_file(s.path("etc/promfed.d/stage/ca.crt")).unwrap();
    let out = s.promfed(&["apply"]);
    assert_exit(&out, 78);
    let expected = format!(
        "{}:3:11: key `ca_file`: {} does not exist",
        s.path("etc/promfed.d/stage.toml").display(),
        s.path("etc/promfed.d/stage/ca.crt").display()
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(!stderr(&out).contains("promtool"), "{}", stderr(&out));
    // Prometheus never gets a job whose CA is missing (it would drop the
    // job's targets on reload).
    let config = String::from_utf8(installed(&s)).unwrap();
    assert!(!config.contains("promfed/stage/"), "{config}");
}

#[test]
fn a_missing_ca_in_the_operators_own_job_is_caught_though_promtool_accepts_it() {
    let s = setup();
    let base = "scrape_configs:\n  - job_name: legacy\n    scheme: https\n    tls_config:\n      ca_file: /nonexistent/ca.crt\n    static_configs:\n      - targets: ['127.0.0.1:9999']\n";
    s.write("etc/prometheus.base.yml", base);
    // promtool alone would let it through.
    s.write("prometheus/probe.yml", base);
    let probe = Command::new(PROMTOOL)
        .args(["check", "config"])
        .arg(s.path("prometheus/probe.yml"))
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "promtool was expected to skip ca_file: {}",
        stderr(&probe)
    );
    std::fs::remove_file(s.path("prometheus/probe.yml")).unwrap();

    let before = installed(&s);
    let out = s.promfed(&["apply"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("the configuration names files Prometheus cannot read:\n  job `legacy`: ca_file: /nonexistent/ca.crt does not exist"),
        "{}",
        stderr(&out)
    );
    assert_eq!(installed(&s), before);
    assert_no_leftovers(&s);
}

#[test]
fn a_base_file_that_promtool_rejects_installs_nothing() {
    let s = setup();
    s.write(
        "etc/prometheus.base.yml",
        "scrape_configs:\n  - job_name: mine\n    static_configs: [{targets: ['127.0.0.1:9999']}]\n    relabel_configs:\n      - source_labels: [a]\n        regex: '(unclosed'\n        target_label: b\n",
    );
    let before = installed(&s);
    let out = s.promfed(&["apply"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(
        err.contains("error: promtool rejected the candidate configuration:"),
        "{err}"
    );
    assert!(
        err.contains("error parsing regexp: missing closing ): `^(?:(unclosed)$`"),
        "promtool's own words: {err}"
    );
    assert!(
        stdout(&out).contains("candidate rejected"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        installed(&s),
        before,
        "the installed file is unchanged, byte for byte"
    );
    assert_no_leftovers(&s);
}

#[test]
fn a_job_name_collision_with_the_base_file_is_an_error() {
    let s = setup();
    s.write(
        "etc/prometheus.base.yml",
        "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: promfed/stage/kubelet\n    static_configs: [{targets: ['127.0.0.1:9999']}]\n",
    );
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let expected = format!(
        "{}:4:15: key `scrape_configs.job_name`: job name `promfed/stage/kubelet` collides with promfed's generated jobs",
        s.path("etc/prometheus.base.yml").display()
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
}

#[test]
fn invalid_settings_stop_everything_with_exit_78() {
    let s = setup();
    s.write(
        "etc/promfed.toml",
        "scrape_interval = \"fast\"\n[prometheus]\nuser = \"root\"\nreload = \"kill\"\n",
    );
    let out = s.promfed(&["apply"]);
    assert_exit(&out, 78);
    let settings = s.path("etc/promfed.toml");
    assert!(
        stderr(&out).contains(&format!(
            "{}:1:19: key `scrape_interval`: `fast` is not a duration",
            settings.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "{}:4:10: key `prometheus.reload`: `kill` is not one of: signal, http",
            settings.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_settings_file_is_a_configuration_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .args(["--config", "/nonexistent/promfed.toml", "check"])
        .output()
        .unwrap();
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains(
            "/nonexistent/promfed.toml: cannot read the settings file: No such file or directory"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2_and_version_works() {
    let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("--version")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out),
        format!("promfed {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn render_never_shows_a_token() {
    let s = setup();
    let out = s.promfed(&["render"]);
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("secret-token-value"));
    assert!(stdout(&out).contains(&format!(
        "credentials_file: {}",
        s.path("etc/promfed.d/stage/token").display()
    )));
}

#[test]
fn a_folder_promfed_cannot_write_is_a_run_time_failure_not_a_config_error() {
    let s = setup();
    let settings = s.read("etc/promfed.toml").replace(
        "config_file = \"../prometheus/prometheus.yml\"",
        "config_file = \"/nonexistent/prometheus/prometheus.yml\"",
    );
    s.write("etc/promfed.toml", &settings);
    let out = s.promfed(&["check"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("cannot write the candidate beside /nonexistent/prometheus/prometheus.yml: No such file or directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn files_get_their_modes_whatever_the_umask_and_stale_candidates_go() {
    // Root's umask 077 must not make the config or targets unreadable for
    // Prometheus; candidates left by killed runs are cleaned up.
    use std::os::unix::fs::PermissionsExt;
    let s = setup();
    let stale = s.path("prometheus/.prometheus.yml.promfed-999999999");
    std::fs::write(&stale, "half a candidate").unwrap();
    std::fs::remove_file(s.path("prometheus/prometheus.yml")).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077; exec {} --config {} check",
            env!("CARGO_BIN_EXE_promfed"),
            s.path("etc/promfed.toml").display()
        ))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(!stale.exists(), "a dead run's candidate is removed");
    // `apply` writes the files; no Prometheus here, so it ends unverified.
    let applied = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077; exec {} --config {} apply",
            env!("CARGO_BIN_EXE_promfed"),
            s.path("etc/promfed.toml").display()
        ))
        .output()
        .unwrap();
    assert_exit(&applied, 1);
    let mode = |rel: &str| std::fs::metadata(s.path(rel)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("prometheus/prometheus.yml"), 0o644);
    assert_eq!(mode("state"), 0o755);
    assert_eq!(mode("state/targets/stage"), 0o755);
    assert_eq!(mode("state/targets/stage/kubelet.json"), 0o644);
}

#[test]
fn one_transaction_at_a_time_a_second_one_waits_for_the_first() {
    // Another transaction holds the lock (flock(1) stands in for it) for
    // two seconds: `apply` says it waits, then runs.
    let s = setup();
    std::fs::create_dir_all(s.path("state")).unwrap();
    let lock = s.path("state/lock");
    std::fs::write(&lock, "4242\n").unwrap();
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "2"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let start = std::time::Instant::now();
    let out = s.promfed(&["apply"]);
    let waited = start.elapsed();
    holder.wait().unwrap();
    assert!(
        stderr(&out).contains("waiting for another promfed transaction (process 4242) to end"),
        "{}",
        stderr(&out)
    );
    assert!(
        waited >= std::time::Duration::from_millis(1500),
        "{waited:?}"
    );
    // It ran after the wait: the config is written (unverified: no Prometheus).
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("installed but not verified"),
        "{}",
        stdout(&out)
    );
    // And `check` needs no lock.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "3"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_exit(&s.promfed(&["check"]), 0);
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn the_operators_own_file_beside_a_customised_base_is_refused_naming_both() {
    let s = setup();
    let theirs = "# hand-written\nglobal:\n  scrape_interval: 15s\n";
    s.write("prometheus/prometheus.yml", theirs);
    for command in ["check", "apply", "render"] {
        let out = s.promfed(&[command]);
        assert_exit(&out, 78);
        let err = stderr(&out);
        for named in [
            s.path("prometheus/prometheus.yml"),
            s.path("etc/prometheus.base.yml"),
        ] {
            assert!(
                err.contains(&named.display().to_string()),
                "{command}: {err}"
            );
        }
        assert!(
            err.contains("was not written by promfed"),
            "{command}: {err}"
        );
        assert!(
            err.contains("`cp "),
            "{command}: the command that resolves it: {err}"
        );
        assert_eq!(s.read("prometheus/prometheus.yml"), theirs, "{command}");
        assert!(!s.path("state/adopted").exists(), "{command}");
    }
}

#[test]
fn hostile_files_never_panic_and_their_reports_are_bounded() {
    let s = setup();
    // A BOM (promtool accepts it) with an error at its very start.
    s.write("etc/prometheus.base.yml", "\u{feff}- not a mapping\n");
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("prometheus.base.yml:1:1: the base file must be a YAML mapping"),
        "{}",
        stderr(&out)
    );
    // A BOM on a valid base is fine.
    s.write(
        "etc/prometheus.base.yml",
        "\u{feff}global:\n  scrape_interval: 15s\n",
    );
    assert_exit(&s.promfed(&["check"]), 0);

    // 100,000-deep brackets: refused at once, not scanned for half a minute.
    s.write(
        "etc/prometheus.base.yml",
        &format!("a: {}\n", "[".repeat(100_000)),
    );
    let out = s.promfed(&["render"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("nest more than 64 levels deep"),
        "{}",
        stderr(&out)
    );
    s.write("etc/prometheus.base.yml", "global: {}\n");

    // 100,000 unknown keys: the first 50 shown, the rest counted.
    let mut many = String::from(GOOD_CLUSTER);
    for i in 0..100_000 {
        many.push_str(&format!("k{i} = 1\n"));
    }
    s.write("etc/promfed.d/stage.toml", &many);
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert_eq!(
        err.matches(": unknown key (allowed here:").count(),
        50,
        "{}",
        &err[..2000.min(err.len())]
    );
    assert!(
        err.contains("… and 99950 more problems in this file"),
        "{}",
        &err[err.len().saturating_sub(500)..]
    );
    assert!(err.len() < 64 * 1024, "{} bytes of errors", err.len());
}

#[test]
fn output_that_cannot_be_written_is_a_failure_not_a_panic_or_a_success() {
    let s = setup();
    for command in ["render", "check", "status"] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec {} --config {} {command} > /dev/full",
                env!("CARGO_BIN_EXE_promfed"),
                s.path("etc/promfed.toml").display()
            ))
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(
            code == Some(1) || (command == "status" && code == Some(3)),
            "{command}: exit {code:?}: {}",
            stderr(&out)
        );
        if command != "status" {
            assert!(
                stderr(&out).contains("cannot write to standard output"),
                "{command}: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn a_fifo_in_the_configs_place_never_blocks_promfed() {
    let s = setup();
    let target = s.path("prometheus/prometheus.yml");
    std::fs::remove_file(&target).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(&target)
            .status()
            .unwrap()
            .success()
    );
    for command in ["check", "render"] {
        let out = Command::new("timeout")
            .arg("30")
            .arg(env!("CARGO_BIN_EXE_promfed"))
            .arg("--config")
            .arg(s.path("etc/promfed.toml"))
            .arg(command)
            .output()
            .unwrap();
        assert_ne!(
            out.status.code(),
            Some(124),
            "{command} blocked on the FIFO"
        );
        assert_exit(&out, 0);
    }
}

/// Exporter mistakes, each in a file of its own: all reported at once
/// with file, line, column and key, and the good cluster still gated.
#[test]
fn exporter_mistakes_name_file_line_and_key_and_the_rest_goes_on() {
    let s = setup();
    let cases = [
        (
            "twice",
            "[exporter.kube-dns]\n[exporter.kube-dns]\nper = \"service\"\n",
            "twice.toml:5:11: key `exporter.kube-dns`: [exporter.kube-dns] is written twice",
        ),
        (
            "builtin",
            "[exporter.node-exporter]\nnamespace = \"monitoring\"\nservice = \"ne\"\nport = 9100\n",
            "builtin.toml:4:11: key `exporter.node-exporter`: `node-exporter` is the name of one of promfed's own jobs",
        ),
        (
            "both",
            "[exporter.traefik]\nnamespace = \"traefik\"\nservice = \"traefik\"\nselector = { app = \"traefik\" }\nport = \"metrics\"\n",
            "both.toml:7:14: key `exporter.traefik.selector`: give either `service` (the Service's name) or `selector` (its labels), not both",
        ),
        (
            "portname",
            "[exporter.kube-dns]\nport = \"Metrics_9153\"\n",
            "portname.toml:5:8: key `exporter.kube-dns.port`: `Metrics_9153` is not a port number or a Kubernetes port name",
        ),
        (
            "nopreset",
            "[exporter.kube-state-metric]\n",
            "nopreset.toml:4:11: key `exporter.kube-state-metric`: `kube-state-metric` is no preset (presets: kube-dns, kube-state-metrics)",
        ),
        (
            "selector",
            "[exporter.traefik]\nnamespace = \"traefik\"\nselector = \"app.kubernetes.io/name in (traefik)\"\nport = \"metrics\"\n",
            "selector.toml:6:12: key `exporter.traefik.selector`: `app.kubernetes.io/name in (traefik)`: only `label=value` terms are taken",
        ),
    ];
    for (name, tables, _) in &cases {
        s.write(
            &format!("etc/promfed.d/{name}.toml"),
            &format!("{GOOD_CLUSTER}{tables}"),
        );
    }
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    for (_, _, expected) in cases {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    // The good cluster still goes through the gate.
    assert!(
        stdout(&out).contains("candidate passes the gate"),
        "{}",
        stdout(&out)
    );
}
