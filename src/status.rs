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
    /// When the token expires, RFC 3339: its JWT `exp`, or what the exec
    /// plugin or TokenRequest said.
    pub token_expiry: Option<String>,
    /// The client certificate's `notAfter`, RFC 3339.
    #[serde(default)]
    pub certificate_expiry: Option<String>,
    /// `[exec]` or `[token_request]`: the last renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialStatus>,
}

/// A credential promfed renews itself. Times are RFC 3339.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialStatus {
    /// `exec` or `token_request`.
    pub source: String,
    pub renewed: Option<String>,
    pub next_renewal: Option<String>,
    /// Why the last renewal failed (the last credential stays in use while
    /// it is valid).
    pub error: Option<String>,
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
    /// `[monitors]`: how many monitor jobs, and what was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitors: Option<MonitorsStatus>,
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorsStatus {
    pub jobs: usize,
    /// Each monitor or endpoint skipped, and why.
    pub skipped: Vec<String>,
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

/// What to say, and do, when Prometheus ran out of inotify instances.
pub const WATCHES_EXHAUSTED: &str = "EXHAUSTED: Prometheus could not watch some targets files (\"Error adding file watcher\" in its log), so those jobs no longer follow node changes. Raise fs.inotify.max_user_instances (the package ships /usr/lib/sysctl.d/30-promfed.conf; `sysctl --system` applies it); promfed clears this after its next reload of Prometheus.";
