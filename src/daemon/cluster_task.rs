//! One task per cluster keeps its targets current: list nodes and endpoints,
//! write the file_sd files when they change (Prometheus picks them up without
//! a reload), then wait for the resync interval — or retry a failure with
//! exponential backoff. The last targets stay in place while it fails.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Event;
use crate::apply::write_targets;
use crate::config::cluster::Cluster;
use crate::discovery;
use crate::discovery::Limits;
use crate::targets::RefreshError;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);

pub struct ClusterTask {
    pub definition: Cluster,
    poke: Arc<Notify>,
    handle: JoinHandle<()>,
}

impl ClusterTask {
    /// Starts the loop. `discovered_just_now` skips the first discovery when
    /// the transaction that introduced the cluster already did it.
    pub fn start(
        definition: Cluster,
        targets_dir: std::path::PathBuf,
        resync: Duration,
        limits: Limits,
        events: UnboundedSender<Event>,
        discovered_just_now: bool,
    ) -> ClusterTask {
        let poke = Arc::new(Notify::new());
        let cluster = definition.clone();
        let woken = poke.clone();
        let handle = tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            let mut wait = if discovered_just_now {
                resync
            } else {
                Duration::ZERO
            };
            loop {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = woken.notified() => {}
                }
                let result = discovery::discover(&cluster, limits)
                    .await
                    .map_err(RefreshError::from)
                    .and_then(|found| write_targets(&targets_dir, &cluster, found));
                wait = if result.is_ok() {
                    backoff = FIRST_BACKOFF;
                    resync
                } else {
                    let w = backoff;
                    backoff = (backoff * 2).min(resync.max(FIRST_BACKOFF));
                    w
                };
                let name = cluster.name.to_string();
                if events
                    .send(Event::Discovered {
                        cluster: name,
                        result,
                    })
                    .is_err()
                {
                    return; // the daemon is stopping
                }
            }
        });
        ClusterTask {
            definition,
            poke,
            handle,
        }
    }

    /// Discover again now (credentials may have rotated).
    pub fn poke(&self) {
        self.poke.notify_one();
    }
}

impl Drop for ClusterTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
