//! Watching folders, not files: editors and package managers replace files
//! by rename, which a watch on the old file would never see.

use std::collections::BTreeSet;
use std::path::PathBuf;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::Event;

pub struct FolderWatch {
    watcher: RecommendedWatcher,
    folders: BTreeSet<PathBuf>,
}

impl FolderWatch {
    /// Sends `Event::FileChanged` for every creation, change or removal in
    /// a watched folder; the daemon decides which ones matter.
    pub fn new(events: UnboundedSender<Event>) -> notify::Result<FolderWatch> {
        let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            let Ok(event) = result else { return };
            if !matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
            ) {
                return;
            }
            for path in event.paths {
                let _ = events.send(Event::FileChanged(path));
            }
        })?;
        Ok(FolderWatch {
            watcher,
            folders: BTreeSet::new(),
        })
    }

    /// Watches exactly `wanted` (those that exist); returns folders that
    /// could not be watched, with why.
    pub fn set(&mut self, wanted: BTreeSet<PathBuf>) -> Vec<String> {
        let wanted: BTreeSet<PathBuf> = wanted.into_iter().filter(|f| f.is_dir()).collect();
        for gone in self.folders.difference(&wanted) {
            let _ = self.watcher.unwatch(gone);
        }
        let mut failed = Vec::new();
        for new in wanted.difference(&self.folders) {
            if let Err(e) = self.watcher.watch(new, RecursiveMode::NonRecursive) {
                failed.push(format!("cannot watch {}: {e}", new.display()));
            }
        }
        self.folders = wanted;
        failed
    }
}
