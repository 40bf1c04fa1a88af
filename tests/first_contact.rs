//! What a new operator meets first: messages that say what was meant and
//! where a key belongs, a permission problem told as one (with the one-time
//! step), an empty clusters folder noticed, and no false alarm for a token
//! kept as the README says.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::bad_input::setup;
use crate::support::*;

#[test]
fn a_misspelt_key_names_the_key_meant_and_a_missing_one_no_false_line() {
    let s = setup();
    s.write(
        "etc/promfed.d/stage.toml",
        "# production, eu-west\napi_server = \"https://127.0.0.1:6443\"\ntoken_file = \"stage/token\"\nca_fle = \"stage/ca.crt\"\n",
    );
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(
        err.contains("stage.toml:4:1: key `ca_fle`: unknown key; did you mean `ca_file`?"),
        "{err}"
    );
    // The missing ca_file has no line: line 1 is a comment.
    assert!(
        err.contains("stage.toml: key `ca_file`: missing: the CA")
            && err.contains("add it at the top level, above the first [table]"),
        "{err}"
    );
    assert!(!err.contains("stage.toml:1:1"), "{err}");
}

#[test]
fn a_top_level_key_appended_below_a_table_says_why_it_landed_there() {
    let s = setup();
    // As `echo 'max_targets = 100' >> promfed.toml` does: the file ends in
    // [prometheus], so the key joins it.
    s.append("etc/promfed.toml", "max_targets = 100\n");
    let out = s.promfed(&["check"]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(
        err.contains("key `prometheus.max_targets`: `max_targets` is a top-level key, but it is written after a [table] header, so TOML puts it in that table: move it above the first [table]"),
        "{err}"
    );
}

#[test]
fn check_with_no_clusters_says_it_found_none() {
    let s = setup();
    std::fs::remove_file(s.path("etc/promfed.d/stage.toml")).unwrap();
    s.write("etc/promfed.d/example.toml.example", "api_server = \"x\"\n");
    let out = s.promfed(&["check"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("no cluster files in")
            && stdout(&out).contains("promfed add-cluster"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_token_in_a_folder_others_cannot_enter_is_not_called_world_readable() {
    let s = setup();
    let token = s.path("etc/promfed.d/stage/token");
    let folder = s.path("etc/promfed.d/stage");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The README's layout: a 0750 folder.
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = s.promfed(&["check"]);
    assert!(
        !stderr(&out).contains("readable by every user"),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    for dir in [s.root.path(), &s.path("etc"), &s.path("etc/promfed.d")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = s.promfed(&["check"]);
    assert!(
        stderr(&out).contains("token_file") && stderr(&out).contains("readable by every user"),
        "{}",
        stderr(&out)
    );
}

/// promfed as its own user, before the one-time step that lets it write
/// Prometheus's folder: a failure that says so, not a "rejected" config.
#[test]
fn a_folder_promfed_may_not_write_is_told_with_the_one_time_step() {
    let s = setup();
    let user = test_user("promfed-fc");
    for dir in [
        s.root.path().to_path_buf(),
        s.path("etc"),
        s.path("prometheus"),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let chown = Command::new("chown")
        .args(["-R", &user])
        .arg(s.path("etc"))
        .arg(s.path("state"))
        .status()
        .unwrap();
    assert!(chown.success());
    let out = Command::new("setpriv")
        .args(["--reuid", &user, "--regid", &user, "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_promfed"))
        .arg("--config")
        .arg(s.path("etc/promfed.toml"))
        .arg("check")
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let (err, said) = (stderr(&out), stdout(&out));
    let folder = s.path("prometheus");
    assert!(
        err.contains("Permission denied")
            && err.contains(&format!(
                "promfed may not write in {0}; the one-time step after installing is `chgrp promfed {0} && chmod g+w {0}`",
                folder.display()
            )),
        "{err}"
    );
    assert!(!said.contains("rejected"), "{said}");
    assert!(
        said.contains("the candidate could not be checked"),
        "{said}"
    );
}

/// The journal's default output shows a message's text, not its fields:
/// the retry says when and why, and a status file that cannot be written
/// says which file.
#[test]
fn the_daemons_messages_carry_their_causes_in_their_text() {
    let s = setup();
    // Prometheus is not there: every apply fails and is retried.
    // status.json cannot be written: a folder stands in its place.
    std::fs::create_dir_all(s.path("state/status.json")).unwrap();
    let daemon = s.daemon();
    let status_file = s.path("state/status.json");
    let log = wait_for("both messages", std::time::Duration::from_secs(20), || {
        let log = daemon.log();
        (log.contains("will try again") && log.contains("cannot write status or metrics"))
            .then_some(log)
    });
    // The message itself, before the fields the journal keeps apart.
    let message = |start: &str| {
        log.lines()
            .find_map(|l| {
                l.split_once(start)
                    .map(|(_, rest)| format!("{start}{rest}"))
            })
            .unwrap()
    };
    let retry = message("will try again");
    assert!(
        retry.starts_with("will try again in ")
            && retry.contains(" s: prometheus: ")
            && retry.contains("127.0.0.1:1"),
        "{retry}"
    );
    let status = message("cannot write status or metrics");
    assert!(
        status.contains(&format!("{}: ", status_file.display())),
        "{status}"
    );
}
