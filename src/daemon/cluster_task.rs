//! One task per cluster keeps its targets current: `discovery::follow`
//! lists, then watches, and every new set of targets is written to the
//! file_sd files (Prometheus picks them up without a reload) and reported to
//! the daemon. The last targets stay in place while discovery fails.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Event;
use crate::apply::write_targets;
use crate::config::cluster::Cluster;
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
    handle: JoinHandle<()>,
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

impl ClusterTask {
    /// Starts following the cluster, watching on from `listed` when the
    /// transaction just listed it; `resync` is the safety-net relist.
    pub fn start(
        definition: Cluster,
        listed: Option<discovery::Resume>,
        targets_dir: std::path::PathBuf,
        resync: Duration,
        limits: Limits,
        events: UnboundedSender<Event>,
    ) -> ClusterTask {
        let poke = Arc::new(Notify::new());
        let health = Arc::new(Health::of(&definition));
        let definition = Arc::new(definition);
        let cluster = definition.clone();
        let heard = health.clone();
        let relist = poke.clone();
        let handle = tokio::spawn(async move {
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
        });
        ClusterTask {
            credentials: credential_stamps(&definition),
            definition,
            health,
            poke,
            handle,
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
        self.handle.abort();
    }
}
