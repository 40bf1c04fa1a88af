//! Watching folders, not files: editors and package managers replace files
//! by rename, which a watch on the old file would never see.
//!
//! A watch is on an inode, not a path, so three things can make one
//! quietly useless:
//! - a watched folder is replaced (`rm -rf` and `cp -a`, rsync, Ansible's
//!   `copy`, a `..data` symlink swapped): the kernel ends the watch with the
//!   old inode, and notify drops its watch on a folder (and on the folders
//!   in it) when told that folder was removed or moved. The event naming the
//!   folder re-arms the watch at once (`relinked`); a folder made anew can
//!   get the inode number just freed, so its identity alone would not tell.
//!   The check every `CHECK_INTERVAL` re-arms what no event named (a
//!   swapped symlink, a folder back where no parent is watched);
//! - no watch can be set up at all (inotify instances exhausted: Prometheus
//!   takes one per file_sd job): the folders are polled instead, promfed
//!   reports itself degraded, and it keeps trying to watch again;
//! - the kernel's event queue overflows: every watch is re-armed.
//!
//! Whatever changed between losing a watch and holding the new one told no
//! event, so each (re)armed watch is followed by a rescan: a transaction,
//! which reads every input.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::Event;

/// How often folders are checked for replacement, and polled when degraded.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A folder's identity: device, inode and birth time. A replaced folder
/// has another inode, or the same number born later.
type Identity = (u64, u64, Option<SystemTime>);

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

/// One report from the kernel, as the daemon reads it.
#[derive(Debug)]
pub struct FileEvent {
    pub path: PathBuf,
    pub change: Change,
    /// The path was created, removed or renamed: it names another inode,
    /// or none, than before.
    pub relinked: bool,
}

/// What `FolderWatch::set` did.
#[derive(Debug, Default)]
pub struct Armed {
    /// Folders that could not be watched, with why.
    pub failed: Vec<String>,
    /// Whether a watch was set up: what changed in that folder before it
    /// was (since it was read, or since its old watch was lost) told no
    /// event.
    pub any: bool,
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
    /// a watched folder (the daemon decides which ones matter), and
    /// `Event::Rescan` when the kernel lost events.
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

    /// Watches exactly `wanted` (those that exist), each as it is now: a
    /// folder whose identity changed since it was watched is watched again.
    pub fn set(&mut self, wanted: BTreeSet<PathBuf>) -> Armed {
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
        let mut armed = Armed::default();
        for folder in wanted {
            // A folder that cannot be watched keeps its identity too: it is
            // reported once, not retried (and taken for a change) each time.
            if self.folders.get(&folder) == Some(&identity(&folder)) {
                continue;
            }
            match self.rewatch(&folder) {
                Ok(now) => armed.any |= now,
                Err(e) => armed
                    .failed
                    .push(format!("cannot watch {}: {e}", folder.display())),
            }
        }
        if let Mode::Polling { snapshot, .. } = &mut self.mode {
            *snapshot = take_snapshot(self.folders.keys());
        }
        armed
    }

    /// Watches every folder again, as if new (SIGHUP, an overflow).
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
        for problem in self.set(wanted).failed {
            tracing::warn!(stage = "watch", "{problem}");
        }
    }

    /// An entry at `path` was created, removed or renamed. If it is a
    /// watched folder or holds some, their watches are gone (notify drops
    /// a folder's watch, and those of the folders in it, when told it was
    /// removed or moved) or on an inode no longer there: they are watched
    /// again at once. Returns whether there were any; what changed before
    /// the new watch then needs a rescan.
    pub fn relinked(&mut self, path: &Path) -> bool {
        // Paths order by component, so a folder's subfolders follow it.
        let affected: Vec<PathBuf> = self
            .folders
            .range(path.to_path_buf()..)
            .map(|(f, _)| f)
            .take_while(|f| f.starts_with(path))
            .cloned()
            .collect();
        for folder in &affected {
            match self.rewatch(folder) {
                Ok(true) => {
                    tracing::info!(stage = "watch", folder = %folder.display(), "folder replaced, moved or back: watching it again");
                }
                Ok(false) => {
                    tracing::debug!(stage = "watch", folder = %folder.display(), "watched folder gone");
                }
                Err(e) => {
                    tracing::warn!(stage = "watch", "cannot watch {}: {e}", folder.display());
                }
            }
        }
        !affected.is_empty()
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
        let moved: Vec<PathBuf> = self
            .folders
            .iter()
            .filter(|(folder, held)| identity(folder) != **held)
            .map(|(folder, _)| folder.clone())
            .collect();
        for folder in &moved {
            tracing::info!(stage = "watch", folder = %folder.display(), "folder replaced or back: watching it again");
            if let Err(e) = self.rewatch(folder) {
                tracing::warn!(stage = "watch", "cannot watch {}: {e}", folder.display());
            }
        }
        !moved.is_empty()
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

    /// Watches `folder` as it is now, first dropping any watch it had: that
    /// one may be on an inode no longer there. Returns whether a watch was
    /// set up (not when the folder is absent, or when polling).
    fn rewatch(&mut self, folder: &Path) -> notify::Result<bool> {
        if let Mode::Notify(w) = &mut self.mode {
            // Fails when notify dropped the watch already: nothing to drop.
            let _ = w.unwatch(folder);
        }
        // Read before watching: a folder replaced in between then differs
        // at the next check, instead of being taken for the one watched.
        let now = identity(folder);
        self.folders.insert(folder.to_path_buf(), now);
        match &mut self.mode {
            Mode::Notify(w) if now.is_some() => {
                w.watch(folder, RecursiveMode::NonRecursive).map(|()| true)
            }
            _ => Ok(false),
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

/// Whether an event says its path names another inode, or none, than
/// before: the watch on a folder there is gone or stale.
fn relinks(kind: &EventKind) -> bool {
    use notify::event::ModifyKind;
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    )
}

fn watcher(events: &UnboundedSender<Event>) -> notify::Result<RecommendedWatcher> {
    let events = events.clone();
    notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        if event.need_rescan() {
            // The kernel's queue overflowed: events, removals of watched
            // folders among them, were lost.
            let _ = events.send(Event::Rescan { rearm: true });
        }
        let relinked = relinks(&event.kind);
        for path in event.paths {
            if let Some(change) = change_of(&event.kind, &path) {
                let _ = events.send(Event::FileChanged(FileEvent {
                    path,
                    change,
                    relinked,
                }));
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

/// A folder's identity, following symlinks; `None` when it is not a folder
/// (gone, or not there yet).
fn identity(folder: &Path) -> Option<Identity> {
    std::fs::metadata(folder)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino(), m.created().ok()))
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
        assert!(
            watch
                .set(BTreeSet::from([folder.clone()]))
                .failed
                .is_empty()
        );
        assert!(!watch.check(), "nothing changed");

        std::fs::remove_dir(&folder).unwrap();
        std::fs::create_dir(dir.path().join("other")).unwrap(); // take the inode
        std::fs::create_dir(&folder).unwrap();
        assert!(watch.check(), "a replaced folder is news");
        assert!(!watch.check(), "and watched again");
        assert_eq!(watch.folders[&folder], identity(&folder));
    }

    /// The next event naming `path`, within a bound: inotify reports
    /// from a thread of its own.
    fn next_event_for(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
        path: &Path,
    ) -> Option<FileEvent> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match rx.recv().await? {
                        Event::FileChanged(e) if e.path == path => return Some(e),
                        _ => {}
                    }
                }
            })
            .await
            .ok()
            .flatten()
        })
    }

    #[test]
    fn a_folder_made_anew_is_watched_again_when_an_event_names_it() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("promfed.d");
        let inner = folder.join("prod");
        std::fs::create_dir_all(&inner).unwrap();
        let mut watch = FolderWatch::new(tx);
        let armed = watch.set(BTreeSet::from([
            dir.path().to_path_buf(),
            folder.clone(),
            inner.clone(),
        ]));
        assert!(armed.failed.is_empty() && armed.any, "{armed:?}");

        // rm -rf and mkdir: the kernel and notify drop both watches; the
        // new folders may well have the old inode numbers.
        std::fs::remove_dir_all(&folder).unwrap();
        let removed = next_event_for(&mut rx, &folder).expect("the removal is told");
        assert!(removed.relinked, "{removed:?}");
        assert!(watch.relinked(&folder), "a watched folder");
        assert_eq!(watch.folders[&folder], None, "gone");
        assert_eq!(watch.folders[&inner], None, "and what it held");
        std::fs::create_dir_all(&inner).unwrap();
        let back = next_event_for(&mut rx, &folder).expect("the creation is told");
        assert!(back.relinked, "{back:?}");
        assert!(watch.relinked(&folder));
        assert_eq!(watch.folders[&inner], identity(&inner));

        // Both are watched: what happens in them is told again.
        for file in [folder.join("prod.toml"), inner.join("token")] {
            std::fs::write(&file, "x").unwrap();
            next_event_for(&mut rx, &file).expect("watched again");
        }
        assert!(!watch.check(), "nothing left for the check to find");
    }

    #[test]
    fn only_events_naming_a_watched_folder_or_what_holds_it_rearm() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("promfed.d");
        std::fs::create_dir(&folder).unwrap();
        let mut watch = FolderWatch::new(tx);
        watch.set(BTreeSet::from([folder.clone()]));
        assert!(!watch.relinked(&folder.join("prod.toml")), "a file in it");
        assert!(
            !watch.relinked(&dir.path().join("promfed.d.bak")),
            "a sibling"
        );
        assert!(watch.relinked(dir.path()), "its parent, moved");
        assert!(watch.relinked(&folder));
    }

    #[test]
    fn set_watches_a_replaced_folder_again_and_says_so() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("promfed.d");
        std::fs::create_dir(&folder).unwrap();
        let mut watch = FolderWatch::new(tx);
        let wanted = BTreeSet::from([folder.clone(), dir.path().join("absent")]);
        assert!(watch.set(wanted.clone()).any, "first watched");
        assert!(!watch.set(wanted.clone()).any, "held already");

        // Another inode, taken while the old one still exists.
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        std::fs::remove_dir(&folder).unwrap();
        std::fs::rename(&copy, &folder).unwrap();
        let armed = watch.set(wanted.clone());
        assert!(armed.any && armed.failed.is_empty(), "{armed:?}");
        assert_eq!(watch.folders[&folder], identity(&folder));
        assert!(!watch.set(wanted).any);
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
