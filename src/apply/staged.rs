//! A candidate written beside its target and not yet renamed into it. The
//! gate stages the candidate it checks, so that the bytes promtool judged are
//! the bytes installed; the file is removed when dropped unless installed,
//! so an interrupted run never leaves a stray candidate behind.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;

#[derive(Debug)]
pub(super) struct StagedFile {
    path: PathBuf,
    target: PathBuf,
    installed: bool,
}

impl StagedFile {
    pub(super) fn write(target: &Path, bytes: &[u8], default_mode: u32) -> io::Result<StagedFile> {
        Ok(StagedFile {
            path: fsutil::write_beside(target, bytes, default_mode)?,
            target: target.to_path_buf(),
            installed: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the staged file over its target, durably.
    pub(super) fn install(mut self) -> io::Result<()> {
        fsutil::rename_into_place(&self.path, &self.target)?;
        self.installed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_stage_is_removed_and_an_installed_one_replaces_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.yml");
        let staged = StagedFile::write(&target, b"candidate", 0o644).unwrap();
        assert!(staged.path().exists());
        drop(staged);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        StagedFile::write(&target, b"new", 0o644)
            .unwrap()
            .install()
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
