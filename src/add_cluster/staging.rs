//! A staging folder beside the cluster files, on the same filesystem, where
//! a new cluster is written whole and checked before any of it is renamed
//! into the clusters folder. Its name starts with `.promfed-`, which the
//! daemon ignores. Dropped without `commit`, it leaves the clusters folder
//! as it was: the staging folder goes, and so does a credentials folder
//! already renamed in for a cluster file that never followed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use nix::unistd::Gid;

/// The start of a staging folder's name, before the cluster's name.
const PREFIX: &str = ".promfed-add-";

pub struct Staging {
    clusters_dir: PathBuf,
    root: PathBuf,
    group: Gid,
    /// A credentials folder renamed into the clusters folder, until the
    /// cluster file that names it is in place too.
    installed: Option<PathBuf>,
    committed: bool,
}

impl Staging {
    /// Makes `<clusters_dir>/.promfed-add-NAME-PID`, readable by `group`
    /// (Prometheus's), so that what is checked in it is checked as
    /// Prometheus will read it.
    pub fn create(clusters_dir: &Path, name: &str, group: Gid) -> io::Result<Staging> {
        remove_stale(clusters_dir, name);
        let root = clusters_dir.join(format!("{PREFIX}{name}-{}", std::process::id()));
        fs::DirBuilder::new().mode(0o700).create(&root)?;
        // From here on, a failure drops the folder.
        let staging = Staging {
            clusters_dir: clusters_dir.to_path_buf(),
            root,
            group,
            installed: None,
            committed: false,
        };
        own_dir(&staging.root, 0o750, group)?;
        Ok(staging)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the folder `name` in the staging folder.
    pub fn make_dir(&self, name: &str, mode: u32) -> io::Result<()> {
        make_dir(&self.root.join(name), mode, self.group)
    }

    /// Writes the new file `relative` (inside the staging folder) with
    /// `mode` and Prometheus's group.
    pub fn write(&self, relative: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.root.join(relative))?;
        // Through the open file, never the path: nothing a path could be
        // switched for gets this mode or group.
        std::os::unix::fs::fchown(&file, None, Some(self.group.as_raw()))?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    /// Renames the credentials folder `credentials` in (it must not exist
    /// there), then the cluster file `cluster_file` (over the old one only
    /// with `replace`). The old cluster file names its own folder, which
    /// this leaves alone, so no cluster file ever names credentials it was
    /// not checked with.
    pub fn commit(
        &mut self,
        credentials: &str,
        cluster_file: &str,
        replace: bool,
    ) -> io::Result<()> {
        sync_dir(&self.root.join(credentials))?;
        sync_dir(&self.root)?;
        let target = self.clusters_dir.join(credentials);
        rename(&self.root.join(credentials), &target, false)?;
        self.installed = Some(target);
        rename(
            &self.root.join(cluster_file),
            &self.clusters_dir.join(cluster_file),
            replace,
        )?;
        self.committed = true;
        sync_dir(&self.clusters_dir)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            if let Some(installed) = self.installed.take() {
                let _ = fs::remove_dir_all(installed);
            }
        }
        // remove_dir_all does not follow symlinks: it removes only what is
        // inside the staging folder.
        let _ = fs::remove_dir_all(&self.root);
        let _ = sync_dir(&self.clusters_dir);
    }
}

/// Makes `dir` (which must not exist) with `mode` and `group`, whatever the
/// umask, setting both through the folder opened without following a link.
fn make_dir(dir: &Path, mode: u32, group: Gid) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o700).create(dir)?;
    own_dir(dir, mode, group)
}

fn own_dir(dir: &Path, mode: u32, group: Gid) -> io::Result<()> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(dir)?;
    std::os::unix::fs::fchown(&opened, None, Some(group.as_raw()))?;
    opened.set_permissions(fs::Permissions::from_mode(mode))
}

/// `rename`, refusing to replace anything unless `replace`.
fn rename(from: &Path, to: &Path, replace: bool) -> io::Result<()> {
    let flags = if replace {
        RenameFlags::empty()
    } else {
        RenameFlags::RENAME_NOREPLACE
    };
    renameat2(AT_FDCWD, from, AT_FDCWD, to, flags).map_err(io::Error::from)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes the staging folders of runs for `name` that were killed before
/// they could clean up (their process is gone).
fn remove_stale(clusters_dir: &Path, name: &str) {
    let prefix = format!("{PREFIX}{name}-");
    let Ok(entries) = fs::read_dir(clusters_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let gone = pid
            .parse::<u32>()
            .is_ok_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
        if gone {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
