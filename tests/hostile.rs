//! API servers that are broken or compromised (the fake's `faults`), and
//! credential files that are not what they seem. Each case has a
//! well-behaved cluster beside the hostile one: the hostile one fails alone,
//! within bounds, and says why; nothing secret leaks.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn a_token_echoed_by_the_api_server_never_shows() {
    let s = scene();
    let mut state = s.evil.current_state();
    state["faults"] = json!({"echo_auth": true});
    state["tokens"][&s.evil.token]["deny"] = json!(["list nodes"]);
    s.evil.set_state(state);

    let out = s.apply_within(Duration::from_secs(60));
    assert_exit(&out, 1);
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert!(shown.contains("403 Forbidden"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(!shown.contains(&s.evil.token), "the token leaked:\n{shown}");
    s.stage_applied(&out);

    // The daemon: status.json, promfed status and the log.
    let mut daemon = s.setup.daemon();
    daemon.wait_message("READY=1", Duration::from_secs(40), |m| {
        m.contains("READY=1")
    });
    daemon.wait_status("evil failing", Duration::from_secs(40), |st| {
        st["clusters"]["evil"]["discovery"]["state"] == "failing"
    });
    s.assert_token_nowhere(&daemon, "403");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.setup.path("state/status.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "status.json may carry server text");
}

#[test]
fn endless_pagination_huge_answers_and_redirects_fail_that_cluster_alone() {
    let s = scene();
    for (faults, expected) in [
        (
            json!({"endless_continue": true}),
            "endless pagination of nodes",
        ),
        (
            json!({"huge_list_mb": 80}),
            "an answer larger than promfed reads",
        ),
        (
            json!({"redirect": "http://127.0.0.1:1"}),
            "promfed does not follow redirects from an API server",
        ),
    ] {
        s.fault(faults.clone());
        let out = s.apply_within(Duration::from_secs(90));
        assert_exit(&out, 1);
        assert!(
            stdout(&out).contains(expected),
            "{faults}: expected {expected:?} in\n{}",
            stdout(&out)
        );
        assert!(
            stdout(&out).contains("its last targets stay in place"),
            "{}",
            stdout(&out)
        );
        s.stage_applied(&out);
    }
}

#[test]
fn names_that_are_not_kubernetes_names_never_reach_a_proxy_path() {
    let s = scene();
    let mut state = s.evil.current_state();
    state["nodes"] = json!([
        "e-1",
        "../../../api/v1/namespaces/kube-system/secrets",
        "",
        "E-2"
    ]);
    s.evil.set_state(state);
    let out = s.apply_within(Duration::from_secs(60));
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("3 names left out, not being Kubernetes names"),
        "{}",
        stdout(&out)
    );
    let kubelet = s.setup.read("state/targets/evil/kubelet.json");
    assert!(
        kubelet.contains("/api/v1/nodes/e-1/proxy/metrics"),
        "{kubelet}"
    );
    assert!(
        !kubelet.contains("secrets") && !kubelet.contains("E-2"),
        "{kubelet}"
    );
    assert!(!kubelet.contains("/api/v1/nodes//proxy"), "{kubelet}");
}

#[test]
fn a_token_file_that_is_a_fifo_or_holds_two_lines_is_told_not_waited_on() {
    let s = scene();
    let token = s.setup.path("etc/promfed.d/evil/token");

    std::fs::write(&token, "first-half\nsecond-half\n").unwrap();
    let out = s.apply_within(Duration::from_secs(60));
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("holds a line break, space or control character inside the token"),
        "{}",
        stdout(&out)
    );
    s.stage_applied(&out);

    std::fs::remove_file(&token).unwrap();
    let made = Command::new("mkfifo").arg(&token).status().unwrap();
    assert!(made.success());
    for command in ["check", "apply"] {
        let out = run_within(
            Command::new(env!("CARGO_BIN_EXE_promfed"))
                .arg("--config")
                .arg(s.setup.path("etc/promfed.toml"))
                .arg(command),
            Duration::from_secs(30),
        );
        assert_exit(&out, 78);
        assert!(
            stderr(&out).contains("token_file") && stderr(&out).contains("is not a regular file"),
            "{command}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_token_echoed_in_a_watch_error_never_shows() {
    let s = scene();
    let settings = s
        .setup
        .read("etc/promfed.toml")
        .replace("resync_interval = \"1s\"", "resync_interval = \"10m\"");
    s.setup.write("etc/promfed.toml", &settings);
    let mut daemon = s.setup.daemon();
    daemon.wait_message("READY=1", Duration::from_secs(40), |m| {
        m.contains("READY=1")
    });
    s.fault(json!({"fail_watches": true, "echo_auth": true}));
    let status = daemon.wait_status("the watch error", Duration::from_secs(40), |st| {
        st["clusters"]["evil"]["discovery"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("the watch ended with an error"))
    });
    let shown = format!("{status}{}", daemon.log());
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(!shown.contains(&s.evil.token), "the token leaked:\n{shown}");
}
