//! Stage 3, install: `Checked → Installed { previous }`. The checked file is
//! renamed over the target (atomically, durably); the file it replaces is
//! kept, in memory for a rollback and in the state folder for the operator.
//! When the bytes are already in place nothing is written.

use std::path::{Path, PathBuf};

use super::gate::Checked;
use crate::fsutil;

/// What the target held before the install.
#[derive(Debug)]
pub enum Previous {
    /// Exactly the checked bytes: nothing was written.
    Same,
    /// Other bytes, now replaced.
    Replaced(Vec<u8>),
    /// No file at all.
    Absent,
}

/// A checked configuration in place. Only `install` makes one.
#[derive(Debug)]
pub struct Installed {
    target: PathBuf,
    text: String,
    previous: Previous,
}

impl Installed {
    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this install wrote anything.
    pub fn changed(&self) -> bool {
        !matches!(self.previous, Previous::Same)
    }

    pub(super) fn into_previous(self) -> Previous {
        self.previous
    }
}

/// Installs `checked` over `target`, keeping a copy of the file it replaces
/// at `previous_copy`.
pub fn install(checked: Checked, target: &Path, previous_copy: &Path) -> Result<Installed, String> {
    let (staged, text) = checked.into_parts();
    let installed = |previous| Installed {
        target: target.to_path_buf(),
        text: text.clone(),
        previous,
    };
    // Generated files are bounded by the base's limit plus the jobs; the
    // read never blocks (a FIFO in the target's place counts as absent).
    let previous = match fsutil::read_regular(target, fsutil::MAX_CONFIG_FILE) {
        Ok(bytes) if bytes == text.as_bytes() => return Ok(installed(Previous::Same)),
        Ok(bytes) => Previous::Replaced(bytes),
        Err(_) => Previous::Absent,
    };
    if let Previous::Replaced(bytes) = &previous {
        previous_copy
            .parent()
            .map_or(Ok(()), |dir| fsutil::create_dir(dir, 0o750))
            .and_then(|()| fsutil::write_atomic(previous_copy, bytes, 0o644))
            .map_err(|e| {
                format!(
                    "cannot keep the previous configuration in {}: {e}",
                    previous_copy.display()
                )
            })?;
    }
    staged.install().map_err(|e| {
        format!(
            "cannot install {}: {e}{}",
            target.display(),
            fsutil::denied_hint(target, &e)
        )
    })?;
    Ok(installed(previous))
}
