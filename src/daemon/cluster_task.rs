//! One task per cluster keeps its targets current: `discovery::follow`
//! lists, then watches, and every new set of targets is written to the
//! file_sd files (Prometheus picks them up without a reload) and reported to
//! the daemon. The last targets stay in place while discovery fails. Beside
//! it, a cluster with `[exec]` or `[token_request]` has its credential kept
//! renewed; in `kubernetes_sd` mode that is all its task does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Event;
use crate::apply::write_targets;
use crate::config::cluster::Cluster;
use crate::credentials::renewal::{self, Issuer};
use crate::credentials::{CredentialError, Issued, Issuing};
use crate::discovery::health::Health;
use crate::discovery::{self, Limits};
use crate::targets::RefreshError;

pub struct ClusterTask {
    /// Shared with the task: one copy per cluster, not three.
    pub definition: Arc<Cluster>,
    /// When it was last listed and each watch last heard, written by the
    /// task, read when the daemon publishes.
    pub health: Arc<Health>,
    /// The credential files as last seen, to tell a rotation.
    credentials: Vec<Option<FileStamp>>,
    poke: Arc<Notify>,
    /// Discovery's task; none in `kubernetes_sd` mode.
    handle: Option<JoinHandle<()>>,
    /// `[exec]` or `[token_request]`: the task that keeps it renewed, and
    /// how to ask it for a new credential at once (after a 401).
    renewal: Option<(Arc<Notify>, JoinHandle<()>)>,
}

/// What tells one version of a file from the next: a rotation replaces the
/// file (a new inode) or rewrites it (a new change time or size).
type FileStamp = (u64, u64, i64, i64, u64);

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.ctime(), m.ctime_nsec(), m.size()))
}

fn credential_stamps(cluster: &Cluster) -> Vec<Option<FileStamp>> {
    cluster
        .credential_files()
        .into_iter()
        .map(|(_, file)| stamp(file))
        .collect()
}

/// How a task discovers; none in `kubernetes_sd` mode, where Prometheus
/// does and the task only keeps the credential renewed.
pub struct Following {
    /// The list the transaction just made, to watch on from.
    pub listed: Option<discovery::Resume>,
    pub targets_dir: std::path::PathBuf,
    /// The safety-net relist.
    pub resync: Duration,
    pub limits: Limits,
}

impl ClusterTask {
    /// Starts following the cluster (with `following`) and renewing its
    /// credential (with `[exec]` or `[token_request]`).
    pub fn start(
        definition: Cluster,
        following: Option<Following>,
        events: UnboundedSender<Event>,
        issuing: &Issuing,
    ) -> ClusterTask {
        let poke = Arc::new(Notify::new());
        let health = Arc::new(Health::of(&definition));
        let definition = Arc::new(definition);
        let renewal = definition
            .auth
            .source
            .is_some()
            .then(|| start_renewal(definition.clone(), issuing.clone(), events.clone()));
        let handle = following
            .map(|f| start_following(definition.clone(), f, health.clone(), poke.clone(), events));
        ClusterTask {
            credentials: credential_stamps(&definition),
            definition,
            health,
            poke,
            handle,
            renewal,
        }
    }

    /// Whether the task discovers (file_sd mode) or only renews.
    pub fn follows(&self) -> bool {
        self.handle.is_some()
    }

    /// A request got 401: renew the credential now (within the bounds of
    /// `renewal::on_unauthorized`).
    pub fn unauthorized(&self) {
        if let Some((now, _)) = &self.renewal {
            now.notify_one();
        }
    }

    /// List and watch again now (a SIGHUP asks for everything anew).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Lists and watches again if a credential file changed since last
    /// time: the watches run on the old token or certificate until they end.
    /// Costs a few `stat`s, so an unrelated change costs this cluster nothing.
    pub fn poke_if_rotated(&mut self) {
        let now = credential_stamps(&self.definition);
        if now != self.credentials {
            self.credentials = now;
            self.poke();
        }
    }
}

impl Drop for ClusterTask {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
        if let Some((_, handle)) = &self.renewal {
            handle.abort();
        }
    }
}

/// Lists, then watches, for ever; each new set of targets is written and
/// reported.
fn start_following(
    cluster: Arc<Cluster>,
    following: Following,
    heard: Arc<Health>,
    relist: Arc<Notify>,
    events: UnboundedSender<Event>,
) -> JoinHandle<()> {
    let Following {
        listed,
        targets_dir,
        resync,
        limits,
    } = following;
    tokio::spawn(async move {
        let name = cluster.name.to_string();
        let written = cluster.clone();
        discovery::follow(
            cluster,
            heard,
            limits,
            resync,
            relist,
            listed,
            move |found| {
                let result = found
                    .map_err(RefreshError::from)
                    .and_then(|found| write_targets(&targets_dir, &written, found));
                // A closed channel: the daemon is stopping and aborts us.
                let _ = events.send(Event::Discovered {
                    cluster: name.clone(),
                    result,
                });
            },
        )
        .await;
    })
}

/// The daemon's issuer: the cluster's plugin or API server, and its files.
struct Renewing {
    cluster: Arc<Cluster>,
    issuing: Issuing,
}

impl Issuer for Renewing {
    async fn issue(&mut self) -> Result<Issued, CredentialError> {
        crate::credentials::obtain(&self.cluster, self.issuing.request_timeout)
            .await
            .unwrap_or_else(|| {
                Err(CredentialError::Answer {
                    account: self.cluster.name.to_string(),
                    detail: "no [exec] or [token_request]".into(),
                })
            })
    }

    fn store(&mut self, issued: &Issued) -> Result<bool, CredentialError> {
        let files = self.issuing.files(&self.cluster);
        files
            .write(issued, self.issuing.group)
            .map_err(|e| CredentialError::Write {
                path: files.dir.clone(),
                detail: e.to_string(),
            })
    }
}

/// Renews the cluster's credential on a task of its own: a plugin that
/// hangs holds up no one else (and is killed at its timeout, or when the
/// task is aborted: `kill_on_drop`).
fn start_renewal(
    cluster: Arc<Cluster>,
    issuing: Issuing,
    events: UnboundedSender<Event>,
) -> (Arc<Notify>, JoinHandle<()>) {
    let now = Arc::new(Notify::new());
    let first = tokio::time::Instant::now() + issuing.due_in(&cluster);
    let name = cluster.name.to_string();
    let issuer = Renewing { cluster, issuing };
    let handle = tokio::spawn(renewal::keep_renewed(
        issuer,
        first,
        now.clone(),
        move |attempt| {
            let _ = events.send(Event::Credential {
                cluster: name.clone(),
                attempt,
            });
        },
    ));
    (now, handle)
}
