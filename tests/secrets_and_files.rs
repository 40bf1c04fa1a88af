//! Secrets in what promfed reads never reach what it writes: a password in
//! any URL key is refused (78, file:line:col and key) and appears in no
//! output, state or generated file; a cluster file that is a symlink to a
//! credentials file is named, never quoted, on the terminal and in the
//! daemon's log. And a `state_dir` that is a symlink works for `status` as
//! it does for `apply` and `run`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::bad_input::{GOOD_CLUSTER, setup};
use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

/// None of `secrets` is in the outputs, nor in any file promfed writes
/// (the state folder, Prometheus's folder).
fn assert_nowhere(s: &Setup, secrets: &[&str], outputs: &[&Output]) {
    for secret in secrets {
        for out in outputs {
            for (stream, text) in [("stdout", stdout(out)), ("stderr", stderr(out))] {
                assert!(!text.contains(secret), "{secret} in {stream}:\n{text}");
            }
        }
        for dir in ["state", "prometheus"] {
            for (path, bytes) in files_under(&s.path(dir)) {
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(secret),
                    "{secret} in {}",
                    path.display()
                );
            }
        }
    }
}

/// `line:col` of the URL value that holds `secret` in `text`.
fn position_of(text: &str, secret: &str) -> String {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(secret))
        .unwrap();
    format!("{}:{}", i + 1, line.find('"').unwrap() + 1)
}

/// One URL key with a password: where it is written, and what it holds.
struct Case {
    /// The file, relative to the test's root.
    file: &'static str,
    text: String,
    /// The key as messages name it.
    key: &'static str,
    /// A word of the hint for the file-based alternative.
    hint: &'static str,
    secrets: [&'static str; 2],
}

const FEDERATE: &str = "[federate]\nmatch = ['up']\n";

fn settings_with(s: &Setup, extra: &str) -> String {
    format!("{}{extra}", s.read("etc/promfed.toml"))
}

fn cases(s: &Setup) -> Vec<Case> {
    let cluster = "etc/promfed.d/stage.toml";
    let settings = "etc/promfed.toml";
    let good_settings = s.read(settings);
    vec![
        Case {
            file: cluster,
            text: GOOD_CLUSTER.replace(
                "https://127.0.0.1:6443",
                "https://USERNAME1:PASSWORD1@127.0.0.1:6443",
            ),
            key: "api_server",
            hint: "token_file",
            secrets: ["USERNAME1", "PASSWORD1"],
        },
        Case {
            file: cluster,
            text: GOOD_CLUSTER.replace(
                "https://127.0.0.1:6443",
                "https://:PASSWORD2@127.0.0.1:6443",
            ),
            key: "api_server",
            hint: "token_file",
            secrets: ["PASSWORD2", "PASSWORD2"],
        },
        Case {
            // No scheme: parsed, it would be the scheme `USERNAME3`.
            file: cluster,
            text: GOOD_CLUSTER.replace(
                "https://127.0.0.1:6443",
                "USERNAME3:PASSWORD3@127.0.0.1:6443",
            ),
            key: "api_server",
            hint: "token_file",
            secrets: ["USERNAME3", "PASSWORD3"],
        },
        Case {
            file: cluster,
            text: format!(
                "{GOOD_CLUSTER}{FEDERATE}url = \"https://USERNAME4:PASSWORD4@prom.example:9090\"\n"
            ),
            key: "federate.url",
            hint: "token_file",
            secrets: ["USERNAME4", "PASSWORD4"],
        },
        Case {
            file: cluster,
            text: format!("{GOOD_CLUSTER}{FEDERATE}url = \"https://:PASSWORD5@prom.example\"\n"),
            key: "federate.url",
            hint: "token_file",
            secrets: ["PASSWORD5", "PASSWORD5"],
        },
        Case {
            file: settings,
            text: good_settings.replace(
                "url = \"http://127.0.0.1:1\"",
                "url = \"http://USERNAME6:PASSWORD6@127.0.0.1:1\"",
            ),
            key: "prometheus.url",
            hint: "needs none",
            secrets: ["USERNAME6", "PASSWORD6"],
        },
        Case {
            file: settings,
            text: settings_with(
                s,
                "\n[alertmanager]\nuser = \"root\"\nurl = \"http://:PASSWORD7@127.0.0.1:9093\"\n",
            ),
            key: "alertmanager.url",
            hint: "needs none",
            secrets: ["PASSWORD7", "PASSWORD7"],
        },
    ]
}

#[test]
fn a_password_in_any_url_key_is_refused_and_appears_nowhere() {
    let n = cases(&setup()).len();
    for i in 0..n {
        let s = setup();
        let case = cases(&s).remove(i);
        s.write(case.file, &case.text);
        let check = s.promfed(&["check"]);
        assert_exit(&check, 78);
        let err = stderr(&check);
        let expected = format!(
            "{}:{}: key `{}`: ",
            s.path(case.file).display(),
            position_of(&case.text, case.secrets[1]),
            case.key
        );
        assert!(err.contains(&expected), "{expected}\n{err}");
        assert!(
            err.contains("holds a user name or password") && err.contains(case.hint),
            "{err}"
        );
        let apply = s.promfed(&["apply"]);
        assert!(stderr(&apply).contains(&expected), "{}", stderr(&apply));
        let render = s.promfed(&["render"]);
        assert_nowhere(&s, &case.secrets, &[&check, &apply, &render]);
    }
}

/// The caret line stays, with the user name and password masked.
#[test]
fn the_quoted_line_of_a_url_with_a_password_is_masked() {
    let s = setup();
    s.write(
        "etc/promfed.d/stage.toml",
        &format!("{GOOD_CLUSTER}{FEDERATE}url = \"https://USERNAME:PASSWORD@prom.example:9090\"\n"),
    );
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let masked = "\"https://***@prom.example:9090\"";
    let expected = format!("6 | url = {masked}\n  |       {}", "^".repeat(masked.len()));
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert_nowhere(&s, &["USERNAME", "PASSWORD"], &[&out]);
}

/// A definition kept by a version that accepted a password in a URL can
/// never be used again: the next apply that takes drops it, password and
/// all.
#[test]
fn a_kept_definition_with_a_password_is_dropped() {
    let s = setup();
    let prometheus = s.prometheus(None);
    s.settings(&prometheus.url(), "reload = \"http\"");
    let kept = format!("{GOOD_CLUSTER}{FEDERATE}url = \"https://:PASSWORD8@prom.example\"\n");
    s.write(
        "state/last-good/clusters/stage.json",
        &serde_json::json!({
            "file": s.path("etc/promfed.d/stage.toml"),
            "text": kept,
        })
        .to_string(),
    );
    // The file is broken now: the kept definition would stand in for it.
    s.write("etc/promfed.d/stage.toml", "api_server = \n");
    let out = s.promfed(&["apply"]);
    assert!(
        stdout(&out).contains("not monitored until it is fixed"),
        "{}",
        stdout(&out)
    );
    assert!(!s.path("state/last-good/clusters/stage.json").exists());
    assert_nowhere(&s, &["PASSWORD8"], &[&out]);
}

/// Lines of credentials files, as /etc/shadow, a key and a token hold them.
const SHADOW: &str = "root:$6$SALTsalt$HASHhashHASHhashHASHhash0123456789./abcdefghijklmnopqrstuvwxyzABCDEFGHIJ:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:$y$j9T$ALICEsalt$ALICEhashALICEhashALICEhash0123456789:19500:0:99999:7:::\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7KEYMATERIAL\n-----END PRIVATE KEY-----\n";
const TOKEN: &str =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IlRPS0VOTUFURVJJQUwifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl\n";

/// Fragments of those files that must never be printed or logged. Each is
/// one that only those files hold: a bare number such as `19000` also turns
/// up in timestamps and hashes (the likeliest reason this failed CI once).
const SECRETS: [&str; 8] = [
    "SALTsalt",
    "HASHhash",
    ":19000:0:99999:",
    "ALICEsalt",
    "alice:",
    "KEYMATERIAL",
    "PRIVATE KEY",
    "eyJhbGciOi",
];

fn link_cluster_file_to(s: &Setup, content: &str) -> std::path::PathBuf {
    let target = s.path("secret-file");
    std::fs::write(&target, content).unwrap();
    let file = s.path("etc/promfed.d/stage.toml");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    file
}

#[test]
fn a_cluster_file_linked_to_a_credentials_file_is_named_never_quoted() {
    for content in [SHADOW, KEY, TOKEN] {
        let s = setup();
        let file = link_cluster_file_to(&s, content);
        let out = s.promfed(&["check"]);
        assert_exit(&out, 78);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}:1:", file.display())) && err.contains("invalid TOML"),
            "{err}"
        );
        assert!(!err.contains("1 | "), "{err}");
        assert_nowhere(&s, &SECRETS, &[&out]);
    }
    // A valid key first, then credentials: the file may be quoted, never
    // a credentials line.
    let s = setup();
    link_cluster_file_to(&s, &format!("name = \"stage\"\n{SHADOW}"));
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("stage.toml:2:"), "{}", stderr(&out));
    assert_nowhere(&s, &SECRETS, &[&out]);
}

#[test]
fn the_daemon_logs_a_cluster_file_linked_to_a_shadow_file_without_its_lines() {
    let s = setup();
    let file = link_cluster_file_to(&s, SHADOW);
    let mut daemon = s.daemon();
    let status = daemon.wait_status("the broken file in status.json", LONG, |st| {
        st["problems"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p.as_str().unwrap_or("").contains("stage.toml:1:"))
        })
    });
    let log = wait_for("the problem in the log", LONG, || {
        let log = daemon.log();
        log.contains(&format!("{}:1:", file.display()))
            .then_some(log)
    });
    let shown = s.promfed(&["status"]);
    let json = s.promfed(&["status", "--json"]);
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!status.to_string().contains(secret), "{secret}: {status}");
    }
    assert_nowhere(&s, &SECRETS, &[&shown, &json]);
}

/// An ordinary mistake keeps its caret: a syntax error after valid keys.
#[test]
fn a_syntax_error_in_a_cluster_file_is_still_quoted() {
    let s = setup();
    s.write(
        "etc/promfed.d/stage.toml",
        &format!("{GOOD_CLUSTER}labels = {{ env = \"prod\" \n"),
    );
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("4 | labels = { env = \"prod\" "),
        "{}",
        stderr(&out)
    );
}

/// `state_dir` a symlink to a folder elsewhere: the daemon works through
/// it, and so does `promfed status`.
#[test]
fn status_reads_a_state_dir_that_is_a_symlink() {
    let s = Setup::new();
    let exporter = NodeExporter::start(s.root.path());
    let stage = FakeCluster::start(s.root.path(), "stage", &["s-1"], &exporter);
    let prometheus = s.prometheus(None);
    s.settings(&prometheus.url(), "reload = \"http\"");
    s.add_cluster(&stage);
    std::fs::remove_dir(s.path("state")).unwrap();
    std::fs::create_dir_all(s.path("elsewhere/promfed-state")).unwrap();
    std::os::unix::fs::symlink("elsewhere/promfed-state", s.path("state")).unwrap();

    let mut daemon = s.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    daemon.wait_status("stage discovered", LONG, |st| {
        st["clusters"]["stage"]["discovery"]["state"] == "ok"
    });
    assert!(s.path("elsewhere/promfed-state/status.json").is_file());
    for args in [&["status"][..], &["status", "--json"]] {
        let out = s.promfed(args);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("stage"), "{}", stdout(&out));
    }
}
