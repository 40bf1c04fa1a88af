//! `promfed status`: what the daemon last did (status.json) and what
//! Prometheus says of the targets now, one line per cluster, or all of it
//! as JSON with `--json`. Health and its thresholds are `cluster_health`'s.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cluster_health::{self, Health, Level};
use crate::status::{DiscoveryState, Status, WATCHES_EXHAUSTED, path};
use crate::target_health::{self, ClusterUp, Target};

/// Where to ask for the targets, asked only when the daemon runs.
pub struct Prometheus<'a> {
    pub url: &'a str,
    pub ask: Box<dyn FnOnce() -> Result<Vec<Target>, String> + 'a>,
}

/// Whether `pid` is a running promfed: a pid file outlives its process, and
/// the number may since belong to another program.
fn is_running_promfed(pid: u32) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let exe = std::fs::read_link(proc.join("exe")).ok();
    let exe_name = exe
        .as_ref()
        .and_then(|e| e.file_name())
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(" (deleted)").to_string());
    let comm = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
    exe_name.as_deref() == Some("promfed") || comm.trim_end() == "promfed"
}

/// `promfed status`: 0 when the daemon runs and everything is fine, 1 when
/// something is not (a cluster red included), 3 when the daemon is not
/// running (LSB's "not running"), with what it last did when it ran.
pub fn print(state_dir: &Path, json: bool, prometheus: Option<Prometheus>) -> u8 {
    let path = path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tell!(
                "promfed: cannot read {}: run as root or as a member of group promfed",
                path.display()
            );
            return 4;
        }
        Err(_) => {
            tell!(
                "promfed: no status at {}: has `promfed run` started?",
                path.display()
            );
            return 3;
        }
    };
    let Ok(status) = serde_json::from_str::<Status>(&text) else {
        if json {
            say_raw!("{text}");
        }
        tell!("promfed: {} is not a promfed status file", path.display());
        return 1;
    };
    let running = is_running_promfed(status.pid);
    let targets = prometheus.filter(|_| running).map(|p| (p.url, (p.ask)()));
    let now = jiff::Timestamp::now().as_second();
    let health = assess_all(&status, targets.as_ref().map(|(_, t)| t), now);
    if json {
        say_raw!("{}", with_health(&text, &health, targets.as_ref()));
    } else {
        if !running {
            say!(
                "promfed is not running (pid {} has ended); what it last did:",
                status.pid
            );
        }
        say_raw!("{}", human(&status, &health));
        if let Some((url, targets)) = &targets {
            say_raw!("{}", target_health::section(url, targets));
        }
    }
    if !running {
        if json {
            tell!(
                "promfed: the daemon is not running (pid {} has ended)",
                status.pid
            );
        }
        return 3;
    }
    let healthy = status.problems.is_empty()
        && status.degraded.is_none()
        && !status
            .prometheus_watches
            .as_ref()
            .is_some_and(|w| w.exhausted)
        && status
            .clusters
            .values()
            .all(|c| c.discovery.state == DiscoveryState::Ok)
        && health.values().all(|h| h.level != Level::Red)
        && status
            .last_apply
            .as_ref()
            .is_some_and(|a| a.error.is_none());
    if healthy { 0 } else { 1 }
}

/// Each cluster's health; `targets` is `None` when Prometheus was not asked.
fn assess_all(
    status: &Status,
    targets: Option<&Result<Vec<Target>, String>>,
    now: i64,
) -> BTreeMap<String, Health> {
    let up = targets
        .and_then(|t| t.as_ref().ok())
        .map(|t| target_health::by_cluster(t));
    let none = ClusterUp::default();
    status
        .clusters
        .iter()
        .map(|(name, c)| {
            let targets = up.as_ref().map(|up| up.get(name).unwrap_or(&none));
            (name.clone(), cluster_health::assess(c, targets, now))
        })
        .collect()
}

/// status.json as the daemon wrote it, with each cluster's `health` and,
/// when Prometheus was asked, `prometheus_targets` (its URL, and why it did
/// not answer).
fn with_health(
    text: &str,
    health: &BTreeMap<String, Health>,
    targets: Option<&(&str, Result<Vec<Target>, String>)>,
) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    for (name, h) in health {
        if let Some(cluster) = value["clusters"].get_mut(name.as_str()) {
            cluster["health"] = serde_json::to_value(h).unwrap_or_default();
        }
    }
    if let Some((url, answer)) = targets {
        value["prometheus_targets"] = serde_json::json!({
            "url": url,
            "error": answer.as_ref().err(),
        });
    }
    let mut out = serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_string());
    out.push('\n');
    out
}

fn human(s: &Status, health: &BTreeMap<String, Health>) -> String {
    let mut out = header(s);
    out.push('\n');
    out.push_str(&cluster_lines(s, health));
    out.push_str(&footer(s));
    out
}

fn header(s: &Status) -> String {
    let mut out = format!(
        "promfed {} (pid {}), running since {}\n",
        s.version, s.pid, s.started
    );
    match &s.last_apply {
        Some(a) => {
            out.push_str(&format!(
                "last apply {}: prometheus {}",
                a.time, a.prometheus
            ));
            if let Some(am) = &a.alertmanager {
                out.push_str(&format!(", alertmanager {am}"));
            }
            out.push('\n');
            if let Some(e) = &a.error {
                out.push_str(&format!("  error: {e}\n"));
            }
        }
        None => out.push_str("no apply yet\n"),
    }
    out.push_str(&format!(
        "last success: {}\n",
        s.last_success.as_deref().unwrap_or("never")
    ));
    for a in &s.adopted {
        out.push_str(&format!(
            "{} base: {} (adopted from your {}; copy it to the configured base file to edit it)\n",
            a.program,
            a.base.display(),
            a.from.display()
        ));
    }
    if let Some(why) = &s.degraded {
        out.push_str(&format!("degraded: polling: {why}\n"));
    }
    if let Some(share) = &s.shard {
        out.push_str(&format!(
            "shard: this host is {} of {} members ({}), each cluster scraped by {}: {} of {} clusters scraped here\n",
            share.me,
            share.members.len(),
            share.members.join(", "),
            share.replication,
            share.scraped_here,
            share.clusters
        ));
    }
    if let Some(w) = &s.prometheus_watches {
        let limit = w.limit.map_or("?".into(), |l| l.to_string());
        out.push_str(&format!(
            "Prometheus file watches: {} needed, {limit} per user (fs.inotify.max_user_instances)\n",
            w.needed
        ));
        if w.exhausted {
            out.push_str(&format!("  {WATCHES_EXHAUSTED}\n"));
        }
    }
    out
}

/// One line per cluster: discovery, targets up of all, the credential that
/// ends first, the oldest watch's last event, health and its causes.
fn cluster_lines(s: &Status, health: &BTreeMap<String, Health>) -> String {
    let mut rows = vec![
        [
            "CLUSTER",
            "DISCOVERY",
            "TARGETS",
            "CREDENTIAL",
            "WATCH",
            "HEALTH",
            "CAUSE",
        ]
        .map(String::from),
    ];
    for (name, c) in &s.clusters {
        let Some(h) = health.get(name) else {
            continue;
        };
        let targets = match (&h.targets, c.discovery.state) {
            (_, DiscoveryState::None) => "-".into(),
            (Some(t), _) => format!("{}/{}", t.up, t.total),
            (None, _) => "?".into(),
        };
        let credential = h.credential.as_ref().map_or("-".into(), |c| {
            if c.seconds_left <= 0 {
                format!("{} ended", c.credential)
            } else {
                format!("{} {}", c.credential, cluster_health::span(c.seconds_left))
            }
        });
        let watch = h.oldest_watch.as_ref().map_or("-".into(), |w| {
            format!("{} {}", w.resource, cluster_health::span(w.age_seconds))
        });
        rows.push([
            name.clone(),
            c.discovery.state.word().into(),
            targets,
            credential,
            watch,
            h.level.word().into(),
            h.causes.join("; "),
        ]);
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn footer(s: &Status) -> String {
    let mut out = String::new();
    for p in &s.problems {
        out.push_str(&format!("\nerror: {p}"));
    }
    for w in &s.warnings {
        out.push_str(&format!("\nwarning: {w}"));
    }
    if !s.problems.is_empty() || !s.warnings.is_empty() {
        out.push('\n');
    }
    out
}
