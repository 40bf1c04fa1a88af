//! What became of one managed configuration file in one transaction.

use serde::{Deserialize, Serialize};

use super::gate::GateError;
use super::rollback::RolledBack;
use super::verify::Verified;
use crate::programs::VerifyError;

#[derive(Debug)]
pub enum ConfigOutcome {
    /// Not attempted: an input (base file) is unusable.
    NotRendered,
    /// The config file is the operator's and promfed may not adopt it.
    NotOurs(String),
    Rejected(GateError),
    /// Check mode: the candidate passed the gate.
    Passed,
    Unchanged,
    Applied(Verified),
    /// Installed, but the program could not be asked to load it.
    InstalledUnverified(VerifyError),
    RolledBack(RolledBack),
    Failed(String),
}

/// The outcome in one word, for metrics, logs and `status.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Invalid,
    Refused,
    Rejected,
    Passed,
    Unchanged,
    Applied,
    Unverified,
    RolledBack,
    Failed,
}

impl OutcomeKind {
    pub fn word(self) -> &'static str {
        match self {
            OutcomeKind::Invalid => "invalid",
            OutcomeKind::Refused => "refused",
            OutcomeKind::Rejected => "rejected",
            OutcomeKind::Passed => "passed",
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::Applied => "applied",
            OutcomeKind::Unverified => "unverified",
            OutcomeKind::RolledBack => "rolled_back",
            OutcomeKind::Failed => "failed",
        }
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

impl ConfigOutcome {
    pub fn kind(&self) -> OutcomeKind {
        match self {
            ConfigOutcome::NotRendered => OutcomeKind::Invalid,
            ConfigOutcome::NotOurs(_) => OutcomeKind::Refused,
            // Only the gate's verdict on the configuration is a rejection;
            // a folder promfed may not write or a missing tool is a failure.
            ConfigOutcome::Rejected(e) if e.is_config_error() => OutcomeKind::Rejected,
            ConfigOutcome::Rejected(_) => OutcomeKind::Failed,
            ConfigOutcome::Passed => OutcomeKind::Passed,
            ConfigOutcome::Unchanged => OutcomeKind::Unchanged,
            ConfigOutcome::Applied(_) => OutcomeKind::Applied,
            ConfigOutcome::InstalledUnverified(_) => OutcomeKind::Unverified,
            ConfigOutcome::RolledBack(_) => OutcomeKind::RolledBack,
            ConfigOutcome::Failed(_) => OutcomeKind::Failed,
        }
    }

    /// Reloads done, as (successful, failed).
    pub fn reloads(&self) -> (u32, u32) {
        match self {
            ConfigOutcome::Applied(_) => (1, 0),
            ConfigOutcome::RolledBack(RolledBack {
                restore: Ok(()), ..
            }) => (1, 1),
            ConfigOutcome::RolledBack(RolledBack {
                restore: Err(_), ..
            }) => (0, 2),
            ConfigOutcome::InstalledUnverified(_) => (0, 1),
            _ => (0, 0),
        }
    }

    /// Whether the program now runs what promfed rendered.
    pub fn in_force(&self) -> bool {
        matches!(self, ConfigOutcome::Applied(_) | ConfigOutcome::Unchanged)
    }

    /// Whether trying again later may succeed where this failed.
    pub fn worth_retrying(&self) -> bool {
        match self {
            ConfigOutcome::InstalledUnverified(_)
            | ConfigOutcome::RolledBack(_)
            | ConfigOutcome::Failed(_) => true,
            ConfigOutcome::Rejected(e) => !e.is_config_error(),
            _ => false,
        }
    }

    /// Whether the operator's configuration is at fault (exit 78).
    pub fn is_config_error(&self) -> bool {
        match self {
            ConfigOutcome::NotRendered | ConfigOutcome::NotOurs(_) => true,
            ConfigOutcome::Rejected(e) => e.is_config_error(),
            _ => false,
        }
    }

    /// Why it failed, in a sentence; `None` when it did not.
    pub fn failure(&self) -> Option<String> {
        match self {
            ConfigOutcome::Rejected(e) => Some(e.to_string()),
            ConfigOutcome::InstalledUnverified(e) => {
                Some(format!("installed but not verified: {e}"))
            }
            ConfigOutcome::RolledBack(RolledBack { error, restore }) => Some(match restore {
                Ok(()) => format!("the new configuration did not take ({error}); rolled back"),
                Err(r) => {
                    format!("the new configuration did not take ({error}); rollback failed: {r}")
                }
            }),
            ConfigOutcome::Failed(e) | ConfigOutcome::NotOurs(e) => Some(e.clone()),
            ConfigOutcome::NotRendered => Some("not rendered: see the problems".into()),
            _ => None,
        }
    }
}
