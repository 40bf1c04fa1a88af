//! Writing files so that a reader never sees half of one: a temporary file in
//! the same folder, fsync, rename over the target, fsync the folder.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` to a hidden temporary file beside `target`, with the
/// owner and mode of the current target when there is one, and returns its
/// path. The caller renames it into place or removes it.
pub fn write_beside(target: &Path, bytes: &[u8], default_mode: u32) -> io::Result<PathBuf> {
    let dir = parent(target);
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    let path = dir.join(format!(".{name}.promfed-{}", std::process::id()));
    let existing = fs::metadata(target).ok();
    let mode = existing
        .as_ref()
        .map_or(default_mode, |m| m.mode() & 0o7777);
    let _ = fs::remove_file(&path);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        // The umask must not decide who may read it: Prometheus runs as
        // another user, and a 600 config or target file stops it.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some(m) = existing {
            // Only root can give a file away; as another user, keep our own.
            let _ = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()));
        }
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match written {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Renames a file written by `write_beside` over `target` and makes the
/// rename durable.
pub fn rename_into_place(written: &Path, target: &Path) -> io::Result<()> {
    fs::rename(written, target)?;
    sync_dir(parent(target))
}

/// Creates `dir` and its missing parents with `mode`, whatever the umask.
/// Folders that exist are left as they are.
pub fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes what `write_beside` left beside `target` in runs that were
/// killed before they could clean up: files of processes that are gone.
pub fn remove_stale_beside(target: &Path) {
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let prefix = format!(".{name}.promfed-");
    let Ok(entries) = fs::read_dir(parent(target)) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        if !alive {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The largest cluster or settings file promfed reads (a real one is a few
/// hundred bytes; 2 MiB of TOML parses in about half a second).
pub const MAX_TOML_FILE: u64 = 2 << 20;
/// The largest base file (4 MiB of YAML, thousands of static jobs, parses
/// in about half a second).
pub const MAX_BASE_FILE: u64 = 4 << 20;
/// The largest configuration file promfed reads back (its own or one it
/// adopts): a generated file is about 7 KB per cluster, 7 MB at 1000.
pub const MAX_CONFIG_FILE: u64 = 64 << 20;

/// Opens a file for reading only if it is a regular file, without blocking
/// on the way (a FIFO in its place would block a plain open).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    Ok(file)
}

/// Reads a file that must be a regular file of at most `max` bytes. It is
/// opened without blocking, so a FIFO put in its place cannot hang promfed.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular(path)?;
    let meta = file.metadata()?;
    if meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {max} bytes"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// For a write refused beside `target`: the one-time step that lets
/// promfed write there (README, "Installing the package"); else nothing.
pub fn denied_hint(target: &Path, e: &io::Error) -> String {
    if e.kind() != io::ErrorKind::PermissionDenied {
        return String::new();
    }
    let dir = parent(target).display();
    format!(
        " — promfed may not write in {dir}; the one-time step after installing is `chgrp promfed {dir} && chmod g+w {dir}` (README, Installing the package)"
    )
}

/// Atomically replaces `target` with `bytes`.
pub fn write_atomic(target: &Path, bytes: &[u8], default_mode: u32) -> io::Result<()> {
    let written = write_beside(target, bytes, default_mode)?;
    rename_into_place(&written, target).inspect_err(|_| {
        let _ = fs::remove_file(&written);
    })
}

/// Atomically replaces `target` unless it already holds exactly `bytes`.
/// Returns whether it wrote.
pub fn write_if_changed(target: &Path, bytes: &[u8], default_mode: u32) -> io::Result<bool> {
    if fs::read(target).is_ok_and(|current| current == bytes) {
        return Ok(false);
    }
    write_atomic(target, bytes, default_mode)?;
    Ok(true)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_keeping_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("prometheus.yml");
        fs::write(&target, "old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(write_if_changed(&target, b"new", 0o644).unwrap());
        assert!(!write_if_changed(&target, b"new", 0o644).unwrap());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_runs_are_removed_and_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("prometheus.yml");
        let dead = dir.path().join(".prometheus.yml.promfed-999999999");
        let live = dir
            .path()
            .join(format!(".prometheus.yml.promfed-{}", std::process::id()));
        let other = dir.path().join(".other.yml.promfed-999999999");
        for f in [&dead, &live, &other] {
            fs::write(f, "x").unwrap();
        }
        remove_stale_beside(&target);
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }
}
