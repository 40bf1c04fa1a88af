//! The programs whose configuration promfed manages, seen through their own
//! APIs: how each is asked to re-read its file, and how to read back what it
//! has loaded. "Reloaded" is not "applied": a 200 or a sent signal proves
//! nothing, so every answer comes from the program's own status.

pub mod alertmanager;
pub mod http_api;
pub mod process;
pub mod prometheus;

use std::time::Duration;

use tokio::time::{Instant, sleep};

/// Which managed program. Here, not in `apply`, so that every stage of the
/// transaction (and the daemon) can name it without depending on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProgramKind {
    Prometheus,
    Alertmanager,
}

impl ProgramKind {
    pub fn name(self) -> &'static str {
        match self {
            ProgramKind::Prometheus => "prometheus",
            ProgramKind::Alertmanager => "alertmanager",
        }
    }
}

/// Why a reload could not be shown to have taken.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0} is not reachable: {1}")]
    Unreachable(&'static str, String),
    #[error("reload failed: {0}")]
    Reload(String),
    #[error("{0} did not load the new configuration (its last reload failed; its log says why)")]
    NotLoaded(&'static str),
    #[error("{0} did not report a new successful load within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("the configuration in force does not match: missing [{}], unexpected [{}]", .missing.join(", "), .unexpected.join(", "))]
    Differs {
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
}

/// What a program says of its last configuration load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastLoad {
    pub successful: bool,
    /// When the last successful load happened, in whole seconds since the
    /// epoch (Prometheus reports no finer).
    pub success_second: i64,
    /// Which run of the program this is (Prometheus's start time), when it
    /// says: a program reads the same file for as long as it runs.
    pub instance: Option<String>,
}

/// What is known right after a reload took: which run of the program
/// loaded the file, and the seconds its successful load lies between
/// (asking the program itself right after a reload is slow: Prometheus's
/// runtimeinfo took a second at 100 clusters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub instance: Option<String>,
    pub after: i64,
    pub until: i64,
}

impl Reloaded {
    /// A load that succeeded between `before` (a whole-second load time)
    /// and now.
    pub fn since(before: i64, instance: Option<String>) -> Reloaded {
        Reloaded {
            instance,
            after: before,
            // Load times have whole seconds; allow for the one in progress.
            until: jiff::Timestamp::now().as_second() + 1,
        }
    }
}

/// A program whose configuration promfed installs, as the apply stages need
/// it. Used on one runtime only, so the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Program {
    fn name(&self) -> &'static str;
    /// The program's last load: whether it succeeded, and when the last
    /// successful one was; an error when unreachable.
    async fn last_load(&self) -> Result<LastLoad, String>;
    /// Asks the program to re-read its file and waits until it reports a
    /// newer successful load (or a failure that is ours).
    async fn reload(&self) -> Result<Reloaded, VerifyError>;
    /// The parts of its configuration in force that promfed compares.
    async fn in_force(&self) -> Result<Vec<String>, String>;
    /// The same parts, read from a configuration text.
    fn expected(&self, config: &str) -> Vec<String>;
}

/// Polls `state` — (last load successful, newer than before) — until a newer
/// successful load shows, a new failure shows, or time runs out.
async fn poll_until_loaded<F, Fut>(
    name: &'static str,
    timeout: Duration,
    was_successful: bool,
    state: F,
) -> Result<(), VerifyError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<(bool, bool)>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match state().await {
            Some((true, true)) => return Ok(()),
            // A failure we can tell from the state before: it is ours.
            Some((false, _)) if was_successful => return Err(VerifyError::NotLoaded(name)),
            _ if Instant::now() >= deadline => return Err(VerifyError::Timeout(name, timeout)),
            _ => sleep(Duration::from_millis(50)).await,
        }
    }
}
