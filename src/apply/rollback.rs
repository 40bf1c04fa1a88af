//! Stage 5, when verification fails: `Installed → RolledBack`. The file the
//! install replaced goes back in place and is reloaded and verified in turn.

use std::path::Path;

use super::install::{Installed, Previous};
use super::verify::reload_and_verify;
use crate::fsutil;
use crate::programs::{Program, VerifyError};

/// A configuration that did not take, and what became of the previous one.
#[derive(Debug)]
pub struct RolledBack {
    /// Why the new configuration was refused.
    pub error: VerifyError,
    /// Whether the previous one is in force again.
    pub restore: Result<(), String>,
}

pub async fn roll_back(
    program: &impl Program,
    installed: Installed,
    error: VerifyError,
    proof: &Path,
) -> RolledBack {
    let target = installed.target().to_path_buf();
    let restore = match installed.into_previous() {
        Previous::Replaced(previous) => {
            async {
                fsutil::write_atomic(&target, &previous, 0o644)
                    .map_err(|e| format!("cannot restore {}: {e}", target.display()))?;
                reload_and_verify(program, &String::from_utf8_lossy(&previous), proof)
                    .await
                    .map(drop)
                    .map_err(|e| format!("restored {}, but: {e}", target.display()))
            }
            .await
        }
        Previous::Absent => Err("there was no previous configuration to restore".into()),
        Previous::Same => Err("the configuration was already in place; nothing to restore".into()),
    };
    RolledBack { error, restore }
}
