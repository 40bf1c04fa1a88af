//! A transaction's step between discovery and render: each cluster with
//! `[monitors]` gets the jobs of the monitors its discovery last saw
//! (kept in the state folder), so that a monitor added at runtime becomes
//! a job at the next transaction, which the daemon starts when the jobs
//! change.

use crate::config::inventory::{Entry, Inventory};
use crate::config::settings::{DiscoveryMode, Settings};
use crate::discovery;
use crate::targets;

pub fn attach(settings: &Settings, inventory: &mut Inventory, warnings: &mut Vec<String>) {
    let targets_dir = settings.targets_dir();
    for entry in &mut inventory.entries {
        let (Entry::Current(cluster, _) | Entry::KeptLastGood(cluster)) = entry else {
            continue;
        };
        let Some(wanted) = &cluster.monitors else {
            continue;
        };
        if settings.discovery != DiscoveryMode::FileSd {
            warnings.push(format!(
                "cluster {}: [monitors] works with discovery = \"file_sd\" only (its jobs' targets are promfed's); no monitor jobs",
                cluster.name
            ));
            continue;
        }
        let path = targets::monitors_state_path(&targets_dir, &cluster.name);
        let text = match crate::fsutil::read_regular(&path, STATE_LIMIT) {
            Ok(text) => text,
            // Not discovered yet: no monitor jobs until it is.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                warnings.push(format!(
                    "cannot read {}: {e}; no monitor jobs for {}",
                    path.display(),
                    cluster.name
                ));
                continue;
            }
        };
        match discovery::monitor_jobs_of_state(wanted, &text) {
            Ok(jobs) => cluster.monitor_jobs = jobs,
            Err(e) => warnings.push(format!(
                "{} does not decode ({e}); no monitor jobs for {}",
                path.display(),
                cluster.name
            )),
        }
    }
}

/// The state file holds at most `MAX_MONITORS` monitors' definitions.
const STATE_LIMIT: u64 = 64 << 20;
