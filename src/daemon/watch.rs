//! Watching folders, not files: editors and package managers replace files
//! by rename, which a watch on the old file would never see.
//!
//! Two things can make a watch quietly useless, and both are checked every
//! `CHECK_INTERVAL`:
//! - a watched folder is replaced (`rm -rf` and recreate, a backup copied
//!   over it, a symlinked folder swapped): inotify watches the old inode, so
//!   the folder is watched again when its identity changes;
//! - no watch can be set up at all (inotify instances exhausted: Prometheus
//!   takes one per file_sd job): the folders are polled instead, promfed
//!   reports itself degraded, and it keeps trying to watch again.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::Event;

/// How often folders are checked for replacement, and polled when degraded.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A folder's identity: a replaced folder has another inode.
type Identity = (u64, u64);

/// What polling compares: every entry's identity, size and change time.
type Snapshot = BTreeMap<PathBuf, (u64, u64, i64, i64)>;

enum Mode {
    Notify(RecommendedWatcher),
    /// No watch could be set up; why, and what the folders held last time.
    Polling {
        why: String,
        snapshot: Snapshot,
    },
}

pub struct FolderWatch {
    events: UnboundedSender<Event>,
    mode: Mode,
    /// The folders wanted, with the identity they had when watched (`None`
    /// when absent or not watched).
    folders: BTreeMap<PathBuf, Option<Identity>>,
}

impl FolderWatch {
    /// Sends `Event::FileChanged` for every creation, change or removal in
    /// a watched folder; the daemon decides which ones matter.
    pub fn new(events: UnboundedSender<Event>) -> FolderWatch {
        let mode = match watcher(&events) {
            Ok(w) => Mode::Notify(w),
            Err(e) => polling(e),
        };
        FolderWatch {
            events,
            mode,
            folders: BTreeMap::new(),
        }
    }

    /// Why the folders are polled instead of watched, if they are.
    pub fn degraded(&self) -> Option<&str> {
        match &self.mode {
            Mode::Notify(_) => None,
            Mode::Polling { why, .. } => Some(why),
        }
    }

    /// Watches exactly `wanted` (those that exist); returns folders that
    /// could not be watched, with why.
    pub fn set(&mut self, wanted: BTreeSet<PathBuf>) -> Vec<String> {
        let gone: Vec<PathBuf> = self
            .folders
            .keys()
            .filter(|f| !wanted.contains(*f))
            .cloned()
            .collect();
        for folder in gone {
            if let (Mode::Notify(w), Some(Some(_))) = (&mut self.mode, self.folders.remove(&folder))
            {
                let _ = w.unwatch(&folder);
            }
        }
        let mut failed = Vec::new();
        for folder in wanted {
            if self.folders.get(&folder).is_some_and(Option::is_some) {
                continue;
            }
            // A folder that cannot be watched is reported once, not retried
            // (and taken for a change) at every check.
            if let Err(e) = self.watch(&folder) {
                failed.push(format!("cannot watch {}: {e}", folder.display()));
            }
            self.folders.insert(folder.clone(), identity(&folder));
        }
        if let Mode::Polling { snapshot, .. } = &mut self.mode {
            *snapshot = take_snapshot(self.folders.keys());
        }
        failed
    }

    /// Watches every folder again, as if new (SIGHUP).
    pub fn rearm(&mut self) {
        let wanted: BTreeSet<PathBuf> = self.folders.keys().cloned().collect();
        if let Mode::Notify(w) = &mut self.mode {
            for (folder, identity) in &self.folders {
                if identity.is_some() {
                    let _ = w.unwatch(folder);
                }
            }
        }
        self.folders.clear();
        for problem in self.set(wanted) {
            tracing::warn!(stage = "watch", "{problem}");
        }
    }

    /// The periodic check: watches replaced or reappeared folders again,
    /// polls when degraded, and tries to leave the degraded state. Returns
    /// whether something may have changed that no event reported.
    pub fn check(&mut self) -> bool {
        if let Mode::Polling { why, .. } = &self.mode {
            match watcher(&self.events) {
                Ok(w) => {
                    tracing::info!(
                        stage = "watch",
                        "watching folders again (was polling: {why})"
                    );
                    self.mode = Mode::Notify(w);
                    self.rearm();
                    return true; // changes while switching would be lost
                }
                Err(_) => return self.poll(),
            }
        }
        let mut changed = false;
        let folders: Vec<(PathBuf, Option<Identity>)> =
            self.folders.iter().map(|(f, i)| (f.clone(), *i)).collect();
        for (folder, watched) in folders {
            let now = identity(&folder);
            if now == watched {
                continue;
            }
            tracing::info!(stage = "watch", folder = %folder.display(), "folder replaced or back: watching it again");
            if let (Mode::Notify(w), Some(_)) = (&mut self.mode, watched) {
                let _ = w.unwatch(&folder);
            }
            if let Err(e) = self.watch(&folder) {
                tracing::warn!(stage = "watch", "cannot watch {}: {e}", folder.display());
            }
            self.folders.insert(folder, now);
            changed = true;
        }
        changed
    }

    fn poll(&mut self) -> bool {
        let now = take_snapshot(self.folders.keys());
        let Mode::Polling { snapshot, .. } = &mut self.mode else {
            return false;
        };
        let changed = *snapshot != now;
        *snapshot = now;
        changed
    }

    /// Starts watching `folder` if it is there.
    fn watch(&mut self, folder: &Path) -> notify::Result<()> {
        match &mut self.mode {
            Mode::Notify(w) if folder.is_dir() => w.watch(folder, RecursiveMode::NonRecursive),
            _ => Ok(()),
        }
    }
}

/// What a file event says about the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The change is complete: closed after writing, renamed, removed,
    /// permissions changed, a link or folder made.
    Complete,
    /// The file is being written (created or modified, not yet closed).
    Writing,
}

/// How the kernel's report on a file reads; `None` for reads (promfed's
/// own included), which change nothing.
fn change_of(kind: &EventKind, path: &Path) -> Option<Change> {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    match kind {
        // A rename is also told as its two halves, `From` and `To`.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => None,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Change::Complete),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other) => {
            Some(Change::Writing)
        }
        // A new regular file is written next; a link or a folder is whole.
        EventKind::Create(_) => Some(
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
                Change::Writing
            } else {
                Change::Complete
            },
        ),
        EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => {
            Some(Change::Complete)
        }
    }
}

fn watcher(events: &UnboundedSender<Event>) -> notify::Result<RecommendedWatcher> {
    let events = events.clone();
    notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        for path in event.paths {
            if let Some(change) = change_of(&event.kind, &path) {
                let _ = events.send(Event::FileChanged(path, change));
            }
        }
    })
}

fn polling(e: notify::Error) -> Mode {
    let why = format!("cannot watch folders ({e}); polling them every {CHECK_INTERVAL:?}");
    tracing::error!(stage = "watch", "{why}");
    Mode::Polling {
        why,
        snapshot: Snapshot::new(),
    }
}

/// A folder's device and inode, following symlinks; `None` when it is not
/// a folder (gone, or not there yet).
fn identity(folder: &Path) -> Option<Identity> {
    std::fs::metadata(folder)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

fn take_snapshot<'a>(folders: impl Iterator<Item = &'a PathBuf>) -> Snapshot {
    let mut snapshot = Snapshot::new();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Following symlinks: an edit of a linked file counts.
            if let Ok(m) = std::fs::metadata(&path).or_else(|_| std::fs::symlink_metadata(&path)) {
                snapshot.insert(path, (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
            }
        }
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_folder_is_watched_again_and_reported() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("promfed.d");
        std::fs::create_dir(&folder).unwrap();
        let mut watch = FolderWatch::new(tx);
        assert!(watch.set(BTreeSet::from([folder.clone()])).is_empty());
        assert!(!watch.check(), "nothing changed");

        std::fs::remove_dir(&folder).unwrap();
        std::fs::create_dir(dir.path().join("other")).unwrap(); // take the inode
        std::fs::create_dir(&folder).unwrap();
        assert!(watch.check(), "a replaced folder is news");
        assert!(!watch.check(), "and watched again");
        assert_eq!(watch.folders[&folder], identity(&folder));
    }

    #[test]
    fn polling_sees_new_and_changed_files_through_symlinks() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("promfed.d");
        std::fs::create_dir(&folder).unwrap();
        let elsewhere = dir.path().join("prod.toml");
        std::fs::write(&elsewhere, "a").unwrap();
        std::os::unix::fs::symlink(&elsewhere, folder.join("prod.toml")).unwrap();
        let mut watch = FolderWatch {
            events: tx,
            mode: Mode::Polling {
                why: "test".into(),
                snapshot: Snapshot::new(),
            },
            folders: BTreeMap::new(),
        };
        watch.set(BTreeSet::from([folder.clone()]));
        assert!(!watch.poll());
        std::fs::write(&elsewhere, "bb").unwrap();
        assert!(watch.poll(), "an edit of a linked file");
        std::fs::write(folder.join("stage.toml"), "x").unwrap();
        assert!(watch.poll(), "a new file");
        assert!(!watch.poll());
    }
}
