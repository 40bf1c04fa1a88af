//! Reload a managed program and prove the new configuration is the one in
//! force. "Reloaded" is not "applied": a 200 or a sent signal proves nothing,
//! so the answer comes from the program's own status.

use std::time::Duration;

use jiff::Timestamp;
use tokio::time::{Instant, sleep};

use crate::alertmanager_api::{self, AlertmanagerApi};
use crate::prometheus_api::{self, PrometheusApi};
use crate::reload::send_sighup;
use crate::settings::{ReloadMethod, ServiceSettings};

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

/// A program whose configuration promfed installs. Used only inside promfed,
/// on one runtime, so the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Service {
    /// Whether the program's last load failed; an error when unreachable.
    async fn last_load_failed(&self) -> Result<bool, String>;
    /// Reloads and proves that `config` is the configuration in force.
    async fn reload_and_verify(&self, config: &str) -> Result<(), VerifyError>;
}

pub struct Prometheus {
    api: PrometheusApi,
    method: ReloadMethod,
    timeout: Duration,
}

impl Prometheus {
    pub fn new(s: &ServiceSettings) -> Prometheus {
        Prometheus {
            api: PrometheusApi::new(&s.url),
            method: s.reload.clone(),
            timeout: s.verify_timeout,
        }
    }
}

impl Service for Prometheus {
    async fn last_load_failed(&self) -> Result<bool, String> {
        Ok(!self.api.runtime_info().await?.reload_config_success)
    }

    /// Reloads (HTTP answers when done; after a signal, waits for a newer
    /// successful load in runtimeinfo), then checks that the jobs in force
    /// are exactly the config's.
    async fn reload_and_verify(&self, config: &str) -> Result<(), VerifyError> {
        let unreachable = |e| VerifyError::Unreachable("Prometheus", e);
        let before = self.api.runtime_info().await.map_err(unreachable)?;
        match &self.method {
            // Synchronous: 200 only once the configuration was applied.
            ReloadMethod::Http => self.api.post_reload().await.map_err(VerifyError::Reload)?,
            ReloadMethod::Signal(process) => {
                // A signal gets no answer: watch lastConfigTime move. It has
                // whole seconds, so signal in a later second than the last
                // load, or a new load would not show as a newer time.
                let next_second = before.last_config_time.as_second() + 1;
                let now = Timestamp::now();
                if now.as_second() < next_second {
                    let wait = Timestamp::from_second(next_second)
                        .expect("valid time")
                        .duration_since(now);
                    sleep(Duration::try_from(wait).unwrap_or_default()).await;
                }
                send_sighup(process).map_err(VerifyError::Reload)?;
                poll_until_loaded(
                    "Prometheus",
                    self.timeout,
                    before.reload_config_success,
                    || async {
                        let info = self.api.runtime_info().await.ok()?;
                        Some((
                            info.reload_config_success,
                            info.last_config_time > before.last_config_time,
                        ))
                    },
                )
                .await?;
            }
        }
        let loaded = self.api.loaded_job_names().await.map_err(unreachable)?;
        compare(&prometheus_api::job_names(config), &loaded)
    }
}

pub struct Alertmanager {
    api: AlertmanagerApi,
    method: ReloadMethod,
    timeout: Duration,
}

impl Alertmanager {
    pub fn new(s: &ServiceSettings) -> Alertmanager {
        Alertmanager {
            api: AlertmanagerApi::new(&s.url),
            method: s.reload.clone(),
            timeout: s.verify_timeout,
        }
    }
}

impl Service for Alertmanager {
    async fn last_load_failed(&self) -> Result<bool, String> {
        Ok(!self.api.reload_state().await?.successful)
    }

    /// Waits for a newer successful load (its metrics, sub-second), then
    /// checks that the cluster routes in force are exactly the config's.
    async fn reload_and_verify(&self, config: &str) -> Result<(), VerifyError> {
        let unreachable = |e| VerifyError::Unreachable("Alertmanager", e);
        let before = self.api.reload_state().await.map_err(unreachable)?;
        match &self.method {
            ReloadMethod::Http => self.api.post_reload().await.map_err(VerifyError::Reload)?,
            ReloadMethod::Signal(process) => send_sighup(process).map_err(VerifyError::Reload)?,
        }
        poll_until_loaded("Alertmanager", self.timeout, before.successful, || async {
            let state = self.api.reload_state().await.ok()?;
            Some((state.successful, state.success_time > before.success_time))
        })
        .await?;
        let loaded = self.api.loaded_routes().await.map_err(unreachable)?;
        let show = |routes: Vec<crate::render::ClusterRoute>| -> Vec<String> {
            routes
                .into_iter()
                .map(|r| format!("{} → {}", r.matcher(), r.receiver))
                .collect()
        };
        compare(&show(alertmanager_api::routes_of(config)), &show(loaded))
    }
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
