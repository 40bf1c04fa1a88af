//! Stage 4, reload and verify: `Installed → Verified`. The program is asked
//! to re-read its file, then what it has in force is compared with what was
//! installed; anything but an exact match is an error.

use super::install::Installed;
use crate::programs::{Program, VerifyError};

/// Proof that a program runs exactly an installed configuration. Only this
/// stage makes one.
#[derive(Debug)]
pub struct Verified(());

pub async fn verify(
    program: &impl Program,
    installed: &Installed,
) -> Result<Verified, VerifyError> {
    reload_and_verify(program, installed.text()).await
}

/// Reloads and proves that `config` is the configuration in force; also
/// used for the file a rollback restores.
pub(super) async fn reload_and_verify(
    program: &impl Program,
    config: &str,
) -> Result<Verified, VerifyError> {
    program.reload().await?;
    let loaded = program
        .in_force()
        .await
        .map_err(|e| VerifyError::Unreachable(program.name(), e))?;
    compare(&program.expected(config), &loaded).map(|()| Verified(()))
}

/// Whether the program runs the installed file: its last load succeeded, is
/// no older than the file (in whole seconds, Prometheus's resolution), and
/// has exactly the file's jobs (routes). Equal bytes alone prove nothing.
pub async fn in_force(program: &impl Program, installed: &Installed) -> Result<bool, String> {
    let last = program.last_load().await?;
    let installed_second = std::fs::metadata(installed.target())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(i64::MAX, |d| d.as_secs() as i64);
    if !last.successful || last.success_second < installed_second {
        return Ok(false);
    }
    let loaded = program.in_force().await?;
    Ok(compare(&program.expected(installed.text()), &loaded).is_ok())
}

fn compare(expected: &[String], loaded: &[String]) -> Result<(), VerifyError> {
    let missing: Vec<String> = expected
        .iter()
        .filter(|j| !loaded.contains(j))
        .cloned()
        .collect();
    let unexpected: Vec<String> = loaded
        .iter()
        .filter(|j| !expected.contains(j))
        .cloned()
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::Differs {
            missing,
            unexpected,
        })
    }
}
