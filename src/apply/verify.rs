//! Stage 4, reload and verify: `Installed → Verified`. The program is asked
//! to re-read its file, then what it has in force is compared with what was
//! installed; anything but an exact match is an error.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    reload_and_verify(program, installed.target(), installed.text()).await
}

/// When a file was last written, in whole seconds since the epoch.
fn modified_second(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    i64::try_from(modified.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// Reloads and proves that `config` is the configuration in force; also
/// used for the file a rollback restores.
pub(super) async fn reload_and_verify(
    program: &impl Program,
    target: &Path,
    config: &str,
) -> Result<Verified, VerifyError> {
    // Load times have whole seconds: load in a later second than the file
    // was written, so that `in_force` can tell a load before it from one
    // after it. A bounded wait: a clock stepped back must not stall us.
    if let Some(written) = modified_second(target) {
        let now = SystemTime::now();
        let next = UNIX_EPOCH + Duration::from_secs(u64::try_from(written + 1).unwrap_or(0));
        if let Ok(wait) = next.duration_since(now) {
            tokio::time::sleep(wait.min(Duration::from_millis(1100))).await;
        }
    }
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
    let installed_second = modified_second(installed.target()).unwrap_or(i64::MAX);
    // Strictly later: a reload is always made in a later second than the
    // install (below), so a load in the install's own second came before it.
    if !last.successful || last.success_second <= installed_second {
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
