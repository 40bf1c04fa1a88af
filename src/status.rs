//! `status.json` in the state folder: what the daemon last did, per cluster.
//! The daemon writes it (atomically, only when it changed); `promfed status`
//! prints it for a person, or as it is with `--json`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apply::Definition;
use crate::apply::outcome::OutcomeKind;
use crate::config::settings::Settings;
use crate::fsutil;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub started: String,
    pub last_apply: Option<LastApply>,
    /// When Prometheus (and Alertmanager) last ran exactly what promfed rendered.
    pub last_success: Option<String>,
    /// Keyed by cluster name, or by file for a file whose name is unknown.
    pub clusters: BTreeMap<String, ClusterStatus>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// Set when the folders are polled because they cannot be watched.
    #[serde(default)]
    pub degraded: Option<String>,
    /// Bases in use that promfed adopted from the operator's own file.
    #[serde(default)]
    pub adopted: Vec<Adopted>,
    /// Prometheus's inotify budget for promfed's file_sd jobs.
    #[serde(default)]
    pub prometheus_watches: Option<PrometheusWatches>,
    /// This host's share of the clusters (`[shard]`).
    #[serde(default)]
    pub shard: Option<ShardShare>,
}

/// Which of the clusters this host scrapes, among how many hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardShare {
    #[serde(rename = "self")]
    pub me: String,
    pub members: Vec<String>,
    pub replication: usize,
    /// Clusters with a valid file, on every host alike.
    pub clusters: usize,
    /// Of those, the ones this host scrapes.
    pub scraped_here: usize,
}

/// The inotify instances Prometheus needs for promfed's jobs (one per
/// cluster), against what one user may have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrometheusWatches {
    pub needed: usize,
    /// `fs.inotify.max_user_instances`.
    pub limit: Option<u64>,
    /// Prometheus could not make some watchers of the configuration in
    /// force: those jobs no longer follow their targets.
    pub exhausted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adopted {
    pub program: String,
    /// The base in use: the original's exact bytes.
    pub base: PathBuf,
    /// The file it was adopted from, now written by promfed.
    pub from: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastApply {
    pub time: String,
    pub prometheus: OutcomeKind,
    pub alertmanager: Option<OutcomeKind>,
    /// Why it did not apply, if it did not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub file: PathBuf,
    pub definition: Definition,
    pub discovery: DiscoveryStatus,
    /// The token's JWT `exp`, RFC 3339.
    pub token_expiry: Option<String>,
    /// The client certificate's `notAfter`, RFC 3339.
    #[serde(default)]
    pub certificate_expiry: Option<String>,
}

impl ClusterStatus {
    /// Discovered, from the cluster's current file.
    pub fn is_healthy(&self) -> bool {
        self.discovery.state == DiscoveryState::Ok && self.definition == Definition::Current
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryStatus {
    pub state: DiscoveryState,
    /// When `state` last changed.
    pub since: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub nodes: usize,
    pub node_exporters: usize,
    /// When the cluster was last listed whole, RFC 3339.
    #[serde(default)]
    pub last_list: Option<String>,
    /// Each watch, and when it last heard an event or a bookmark.
    #[serde(default)]
    pub watches: Vec<WatchStatus>,
}

/// One watch's last sign of life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchStatus {
    /// `nodes`, `endpointslices`, `pods`, `pods/NAMESPACE`,
    /// `exporters/NAMESPACE`.
    pub resource: String,
    /// Its last event or bookmark (its first opening, before any), RFC 3339.
    pub last_event: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryState {
    Ok,
    Failing,
    /// Not discovered yet.
    #[default]
    Pending,
    /// Nothing to discover: the cluster's file is broken.
    None,
}

impl DiscoveryState {
    pub fn word(self) -> &'static str {
        match self {
            DiscoveryState::Ok => "ok",
            DiscoveryState::Failing => "failing",
            DiscoveryState::Pending => "pending",
            DiscoveryState::None => "none",
        }
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("status.json")
}

pub fn write(settings: &Settings, status: &Status) -> std::io::Result<()> {
    fsutil::create_dir(&settings.state_dir, 0o755)?;
    let mut json = serde_json::to_vec_pretty(status).expect("status serialises");
    json.push(b'\n');
    // Errors can carry text an API server sent (redacted, but still theirs):
    // readable by promfed's group (and root), not by every user.
    let file = path(&settings.state_dir);
    fsutil::write_if_changed(&file, &json, 0o640)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640))
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
/// something is not, 3 when the daemon is not running (LSB's "not
/// running"), with what it last did when it ran.
pub fn print(state_dir: &Path, json: bool) -> u8 {
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
    if json {
        say_raw!("{text}");
    }
    let Ok(status) = serde_json::from_str::<Status>(&text) else {
        tell!("promfed: {} is not a promfed status file", path.display());
        return 1;
    };
    let running = is_running_promfed(status.pid);
    if !json {
        if !running {
            say!(
                "promfed is not running (pid {} has ended); what it last did:",
                status.pid
            );
        }
        say_raw!("{}", human(&status));
    } else if !running {
        tell!(
            "promfed: the daemon is not running (pid {} has ended)",
            status.pid
        );
    }
    if !running {
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
        && status
            .last_apply
            .as_ref()
            .is_some_and(|a| a.error.is_none());
    if healthy { 0 } else { 1 }
}

/// What to say, and do, when Prometheus ran out of inotify instances.
pub const WATCHES_EXHAUSTED: &str = "EXHAUSTED: Prometheus could not watch some targets files (\"Error adding file watcher\" in its log), so those jobs no longer follow node changes. Raise fs.inotify.max_user_instances (the package ships /usr/lib/sysctl.d/30-promfed.conf; `sysctl --system` applies it); promfed clears this after its next reload of Prometheus.";

fn human(s: &Status) -> String {
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
    out.push('\n');
    let width = s.clusters.keys().map(String::len).max().unwrap_or(7).max(7);
    out.push_str(&format!(
        "{:width$}  {:9}  {:14}  {:>5}  {:>13}  {}\n",
        "CLUSTER", "DISCOVERY", "DEFINITION", "NODES", "NODE-EXPORTER", "DETAIL"
    ));
    for (name, c) in &s.clusters {
        let detail = match (&c.discovery.error, &c.token_expiry) {
            (Some(e), _) => e.clone(),
            (None, Some(exp)) => format!("token expires {exp}"),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "{name:width$}  {:9}  {:14}  {:>5}  {:>13}  {detail}\n",
            c.discovery.state.word(),
            c.definition.word(),
            c.discovery.nodes,
            c.discovery.node_exporters
        ));
    }
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
