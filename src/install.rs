//! Install a checked candidate, reload, verify, and roll back when the new
//! configuration does not take — for Prometheus and Alertmanager alike.

use std::path::Path;

use crate::fsutil;
use crate::gate::{Checked, GateError};
use crate::verify::{Service, VerifyError};

/// What became of one managed configuration file.
#[derive(Debug)]
pub enum ConfigOutcome {
    /// Not attempted: an input (base file) is unusable.
    NotRendered,
    Rejected(GateError),
    /// Check mode: the candidate passed the gate.
    Passed,
    Unchanged,
    Applied,
    /// Installed, but the program could not be asked to load it.
    InstalledUnverified(VerifyError),
    RolledBack {
        error: VerifyError,
        restore: Result<(), String>,
    },
    Failed(String),
}

impl ConfigOutcome {
    /// Reloads done, as (successful, failed).
    pub fn reloads(&self) -> (u32, u32) {
        match self {
            ConfigOutcome::Applied => (1, 0),
            ConfigOutcome::RolledBack {
                restore: Ok(()), ..
            } => (1, 1),
            ConfigOutcome::RolledBack {
                restore: Err(_), ..
            } => (0, 2),
            ConfigOutcome::InstalledUnverified(_) => (0, 1),
            _ => (0, 0),
        }
    }

    /// A short word for metrics and status.
    pub fn word(&self) -> &'static str {
        match self {
            ConfigOutcome::NotRendered => "invalid",
            ConfigOutcome::Rejected(_) => "rejected",
            ConfigOutcome::Passed => "passed",
            ConfigOutcome::Unchanged => "unchanged",
            ConfigOutcome::Applied => "applied",
            ConfigOutcome::InstalledUnverified(_) => "unverified",
            ConfigOutcome::RolledBack { .. } => "rolled_back",
            ConfigOutcome::Failed(_) => "failed",
        }
    }

    /// Whether the program now runs what promfed rendered.
    pub fn in_force(&self) -> bool {
        matches!(self, ConfigOutcome::Applied | ConfigOutcome::Unchanged)
    }

    /// Whether trying again later may succeed where this failed.
    pub fn worth_retrying(&self) -> bool {
        match self {
            ConfigOutcome::InstalledUnverified(_)
            | ConfigOutcome::RolledBack { .. }
            | ConfigOutcome::Failed(_) => true,
            ConfigOutcome::Rejected(e) => !e.is_config_error(),
            _ => false,
        }
    }

    /// Whether the operator's configuration is at fault (exit 78).
    pub fn is_config_error(&self) -> bool {
        match self {
            ConfigOutcome::NotRendered => true,
            ConfigOutcome::Rejected(e) => e.is_config_error(),
            _ => false,
        }
    }
}

/// Installs `checked` over `target` (keeping the previous file at
/// `previous_copy`), reloads and verifies; restores the previous file on a
/// failed verification. With the same bytes already installed, it reloads
/// only when `force_reload` or when the program's last load failed.
pub async fn install_and_verify(
    service: &impl Service,
    target: &Path,
    previous_copy: &Path,
    checked: Checked,
    force_reload: bool,
) -> ConfigOutcome {
    let previous = std::fs::read(target).ok();
    let candidate = String::from_utf8_lossy(&checked.bytes).into_owned();

    if previous.as_deref() == Some(checked.bytes.as_slice()) {
        // Someone may have reverted a bad file by hand: then load it again.
        let reload = force_reload || service.last_load_failed().await.unwrap_or(false);
        if !reload {
            return ConfigOutcome::Unchanged;
        }
        return match service.reload_and_verify(&candidate).await {
            Ok(()) => ConfigOutcome::Applied,
            Err(e) => ConfigOutcome::InstalledUnverified(e),
        };
    }

    if let Some(previous) = &previous {
        let saved = previous_copy
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| fsutil::write_atomic(previous_copy, previous, 0o644));
        if let Err(e) = saved {
            return ConfigOutcome::Failed(format!(
                "cannot keep the previous configuration in {}: {e}",
                previous_copy.display()
            ));
        }
    }
    if let Err(e) = checked.staged.install() {
        return ConfigOutcome::Failed(format!("cannot install {}: {e}", target.display()));
    }

    match service.reload_and_verify(&candidate).await {
        Ok(()) => ConfigOutcome::Applied,
        Err(error @ VerifyError::Unreachable(..)) => ConfigOutcome::InstalledUnverified(error),
        Err(error) => {
            let restore = match previous {
                Some(previous) => restore(service, target, &previous).await,
                None => Err("there was no previous configuration to restore".into()),
            };
            ConfigOutcome::RolledBack { error, restore }
        }
    }
}

async fn restore(service: &impl Service, target: &Path, previous: &[u8]) -> Result<(), String> {
    fsutil::write_atomic(target, previous, 0o644)
        .map_err(|e| format!("cannot restore {}: {e}", target.display()))?;
    service
        .reload_and_verify(&String::from_utf8_lossy(previous))
        .await
        .map_err(|e| format!("restored {}, but: {e}", target.display()))
}
