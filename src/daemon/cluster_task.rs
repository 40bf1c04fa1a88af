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
use crate::discovery::{self, Limits};
use crate::targets::RefreshError;

pub struct ClusterTask {
    pub definition: Cluster,
    poke: Arc<Notify>,
    handle: JoinHandle<()>,
}

impl ClusterTask {
    /// Starts following the cluster; `resync` is the safety-net relist.
    pub fn start(
        definition: Cluster,
        targets_dir: std::path::PathBuf,
        resync: Duration,
        limits: Limits,
        events: UnboundedSender<Event>,
    ) -> ClusterTask {
        let poke = Arc::new(Notify::new());
        let cluster = definition.clone();
        let relist = poke.clone();
        let handle = tokio::spawn(async move {
            let name = cluster.name.to_string();
            let written = cluster.clone();
            discovery::follow(cluster, limits, resync, relist, move |found| {
                let result = found
                    .map_err(RefreshError::from)
                    .and_then(|found| write_targets(&targets_dir, &written, found));
                // A closed channel: the daemon is stopping and aborts us.
                let _ = events.send(Event::Discovered {
                    cluster: name.clone(),
                    result,
                });
            })
            .await;
        });
        ClusterTask {
            definition,
            poke,
            handle,
        }
    }

    /// List again now (credentials may have rotated).
    pub fn poke(&self) {
        self.poke.notify_one();
    }
}

impl Drop for ClusterTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
