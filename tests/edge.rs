//! An API server that misbehaves at the byte level (the fake's `raw`
//! cases): status lines, framing, trailers, 1xx and bodiless answers, lines
//! without end, floods, drips, and JSON of the wrong types that carries the
//! token. Each case has a well-behaved cluster beside the hostile one: the
//! hostile one fails alone, within bounds, says why in one stable word, and
//! nothing secret leaks. These describe the transport promfed must have.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// How long one `promfed apply` may take against a hostile server.
const LIMIT: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(40);

/// The line `promfed apply` printed for the cluster `evil`.
fn evil_line(out: &Output) -> String {
    stdout(out)
        .lines()
        .find(|l| l.starts_with("cluster evil ("))
        .unwrap_or_default()
        .to_string()
}

/// The word in `discovery failed (WORD)`, if the line says so.
fn failed_reason(line: &str) -> Option<String> {
    let rest = line.split_once("discovery failed (")?.1;
    Some(rest.split_once(')')?.0.to_string())
}

/// `promfed apply` with the nodes list answered by `case`: it ends within
/// the limit, with exit code 1, evil failed for one of `reasons`, and stage
/// applied beside it. Returns the output and the time it took.
fn list_fails(s: &Scene, case: &str, reasons: &[&str]) -> (Output, Duration) {
    s.raw(case, "list");
    let start = Instant::now();
    let out = s.apply_within(LIMIT);
    let took = start.elapsed();
    let line = evil_line(&out);
    let reason = failed_reason(&line);
    assert!(
        reason.as_deref().is_some_and(|r| reasons.contains(&r)),
        "{case}: expected `discovery failed (one of {reasons:?})` for evil, got {reason:?} in {line:?}\n--- stdout\n{}\n--- stderr\n{}\n(exit {:?})",
        stdout(&out),
        stderr(&out),
        out.status.code()
    );
    assert_exit(&out, 1);
    s.stage_applied(&out);
    (out, took)
}

#[test]
fn a_status_line_with_a_multibyte_character_at_byte_100_is_a_protocol_error() {
    let s = scene();
    list_fails(&s, "status_non_ascii", &["protocol"]);
}

/// Past the 16 KiB head promfed reads: a bound, named as one.
#[test]
fn a_status_line_of_100_kib_is_refused_at_a_limit() {
    let s = scene();
    list_fails(&s, "status_overlong", &["limit"]);
}

#[test]
fn trailers_without_end_are_cut_off() {
    let s = scene();
    list_fails(&s, "endless_trailers", &["limit", "protocol", "timeout"]);
}

#[test]
fn twenty_thousand_trailer_lines_are_refused() {
    let s = scene();
    list_fails(&s, "huge_trailers", &["limit", "protocol", "timeout"]);
}

#[test]
fn a_204_or_304_to_a_list_is_an_http_error_told_at_once() {
    for case in ["no_content_204", "not_modified_304"] {
        let s = scene();
        let (_, took) = list_fails(&s, case, &["http"]);
        assert!(
            took < Duration::from_secs(15),
            "{case}: apply took {took:?}: a client waited for a body that never comes"
        );
    }
}

#[test]
fn two_content_lengths_are_a_protocol_error() {
    let s = scene();
    list_fails(&s, "conflicting_length", &["protocol"]);
}

#[test]
fn transfer_encoding_notchunked_is_not_chunked() {
    let s = scene();
    list_fails(&s, "te_substring", &["protocol"]);
}

#[test]
fn informational_answers_before_the_list_are_skipped() {
    let s = scene();
    s.raw("continue_1xx", "list");
    let out = s.apply_within(LIMIT);
    let line = evil_line(&out);
    assert!(
        line.contains(", 1 node, 1 node-exporter pod"),
        "evil's line: {line:?}\n--- stdout\n{}\n--- stderr\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_exit(&out, 0);
    s.stage_applied(&out);
    s.prometheus.wait_targets_up("promfed/evil/", 4);
}

/// `promfed apply` with the nodes list's metadata of a wrong type that
/// carries the token: it never shows, and the list is a bad response.
fn list_echo(case: &str) {
    let s = scene();
    s.raw(case, "list");
    let out = s.apply_within(LIMIT);
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !shown.contains(&s.evil.token),
        "{case}: the token leaked:\n{shown}"
    );
    for (file, text) in files_below(&s.setup.path("state")) {
        assert!(
            !text.contains(&s.evil.token),
            "{case}: the token leaked into {file}"
        );
    }
    assert_eq!(
        failed_reason(&evil_line(&out)).as_deref(),
        Some("bad_response"),
        "{case}:\n{shown}"
    );
    assert_exit(&out, 1);
    s.stage_applied(&out);
}

#[test]
fn a_token_echoed_as_list_metadata_never_shows() {
    list_echo("echo_string");
}

#[test]
fn a_token_echoed_beside_a_numeric_name_never_shows() {
    list_echo("echo_number");
}

#[test]
fn a_token_echoed_as_a_name_array_never_shows() {
    list_echo("echo_array");
}

#[test]
fn a_token_echoed_inside_a_name_object_never_shows() {
    list_echo("echo_object");
}

// -- watches, with the daemon -------------------------------------------------

/// A scene whose daemon is ready (its first lists done) and whose nodes
/// watch then meets `case`; relists are rare unless `relist_often`, so what
/// happens comes from the watch. The fake ends the open watch when the
/// fault appears, and the daemon's next watch meets it.
fn watch_scene(case: &str, relist_often: bool) -> (Scene, Daemon) {
    let s = scene();
    if !relist_often {
        s.setup.relist_rarely();
    }
    let mut daemon = s.setup.daemon();
    daemon.wait_message("READY=1", LONG, |m| m.contains("READY=1"));
    wait_for("evil's nodes watch", LONG, || {
        (s.evil.requests("watch_nodes") >= 1).then_some(())
    });
    s.raw(case, "watch");
    wait_for(&format!("a watch to meet {case}"), LONG, || {
        (s.evil.requests(&format!("raw_{case}")) >= 1).then_some(())
    });
    (s, daemon)
}

/// Waits until evil's discovery fails (for whatever reason) and returns
/// the reason, with the status.
fn evil_fails(daemon: &mut Daemon, limit: Duration) -> (String, Value) {
    let status = daemon.wait_status("evil failing", limit, |st| {
        st["clusters"]["evil"]["discovery"]["state"] == "failing"
    });
    let reason = status["clusters"]["evil"]["discovery"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (reason, status)
}

fn stage_still_ok(daemon: &Daemon) {
    let status = daemon.status();
    assert_eq!(
        status["clusters"]["stage"]["discovery"]["state"], "ok",
        "{status}"
    );
}

#[test]
fn a_watch_line_of_100_mb_is_given_up_at_a_limit() {
    let (_s, mut daemon) = watch_scene("giant_line", false);
    let (reason, status) = evil_fails(&mut daemon, Duration::from_secs(60));
    assert_eq!(reason, "limit", "{status}");
    stage_still_ok(&daemon);
}

#[test]
fn a_flood_of_watch_events_is_given_up_at_a_limit() {
    let (_s, mut daemon) = watch_scene("flood", false);
    let (reason, status) = evil_fails(&mut daemon, LONG);
    assert_eq!(reason, "limit", "{status}");
    stage_still_ok(&daemon);
}

#[test]
fn a_dripped_watch_head_times_out_or_lets_the_resync_go_on() {
    // Relisting every second: a watch whose head takes 40 s to arrive must
    // not hold the cluster's relists up.
    let (s, mut daemon) = watch_scene("drip_head", true);
    let lists = s.evil.requests("list_nodes");
    let start = Instant::now();
    let window = Duration::from_secs(25);
    while start.elapsed() < window {
        daemon.drain();
        let status = daemon.status();
        if status["clusters"]["evil"]["discovery"]["reason"] == "timeout" {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let relisted = s.evil.requests("list_nodes") - lists;
    assert!(
        relisted >= 5,
        "{relisted} relists of evil in {window:?} (resync_interval 1s) and no timeout: status {}",
        daemon.status()
    );
}

#[test]
fn a_watch_that_ends_at_once_is_not_reopened_in_a_loop() {
    let (s, mut daemon) = watch_scene("immediate_end", false);
    let before = s.evil.requests("watch_nodes");
    let window = Duration::from_secs(20);
    let start = Instant::now();
    while start.elapsed() < window {
        daemon.drain();
        std::thread::sleep(Duration::from_millis(500));
    }
    let opened = s.evil.requests("watch_nodes") - before;
    // The backoff (about 1, 2, 4, 8, 16 s) and the ceiling (a burst of 3,
    // then one every 5 s) each allow at most 7 in 20 s; the old code
    // opened thousands.
    assert!(
        opened <= 7,
        "{opened} nodes watches opened in {window:?}: more than the backoff allows"
    );
    stage_still_ok(&daemon);
}

#[test]
fn informational_answers_before_a_watch_are_skipped() {
    let (s, mut daemon) = watch_scene("continue_1xx", false);
    let lists = s.evil.requests("list_nodes");
    // A node joins: the watch (behind its 100 and 103) tells it.
    let mut state = s.evil.current_state();
    state["nodes"] = serde_json::json!(["e-1", "e-2"]);
    s.evil.set_state(state);
    wait_for("e-2 in evil's targets", LONG, || {
        daemon.drain();
        std::fs::read_to_string(s.setup.path("state/targets/evil/kubelet.json"))
            .ok()?
            .contains("e-2")
            .then_some(())
    });
    assert_eq!(
        daemon.status()["clusters"]["evil"]["discovery"]["state"],
        "ok"
    );
    assert_eq!(s.evil.requests("list_nodes"), lists, "by watch, not relist");
}

/// The daemon, whose nodes watch sends an event whose metadata is of a
/// wrong type that carries the token: it never shows in status.json,
/// `promfed status` or the log, and the watch is a bad response.
fn watch_echo(case: &str) {
    let (s, mut daemon) = watch_scene(case, false);
    let (reason, _) = evil_fails(&mut daemon, LONG);
    s.assert_token_nowhere(&daemon, case);
    assert_eq!(reason, "bad_response", "{case}: {}", daemon.status());
    stage_still_ok(&daemon);
}

#[test]
fn a_token_echoed_as_watch_event_metadata_never_shows() {
    watch_echo("echo_string");
}

#[test]
fn a_token_echoed_beside_a_numeric_name_in_a_watch_never_shows() {
    watch_echo("echo_number");
}

#[test]
fn a_token_echoed_as_a_name_array_in_a_watch_never_shows() {
    watch_echo("echo_array");
}

#[test]
fn a_token_echoed_inside_a_name_object_in_a_watch_never_shows() {
    watch_echo("echo_object");
}

#[test]
fn while_a_watch_floods_a_cluster_edit_is_live_within_two_seconds_and_sigterm_ends_it() {
    let (s, mut daemon) = watch_scene("flood", false);
    s.prometheus.wait_targets_up("promfed/stage/", 4);
    std::thread::sleep(Duration::from_millis(500));
    let file = s.setup.read("etc/promfed.d/stage.toml");
    assert!(file.contains("env = \"test\""), "{file}");
    let written = Instant::now();
    s.setup.write(
        "etc/promfed.d/stage.toml",
        &file.replace("env = \"test\"", "env = \"edited\""),
    );
    wait_for("the edit in the installed config", LONG, || {
        daemon.drain();
        s.setup
            .read("prometheus/prometheus.yml")
            .contains("replacement: edited")
            .then_some(())
    });
    let took = written.elapsed();
    assert!(
        took <= Duration::from_secs(2),
        "the edit took {took:?} to be installed while evil floods"
    );
    assert!(
        s.evil.requests("raw_flood") >= 1,
        "{}",
        s.evil.request_counts()
    );

    let start = Instant::now();
    daemon.signal("TERM");
    let exit = wait_for("promfed to exit", Duration::from_secs(10), || {
        daemon.process.child.try_wait().unwrap()
    });
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "SIGTERM took {:?} while evil floods",
        start.elapsed()
    );
    assert_eq!(exit.code(), Some(0));
}
