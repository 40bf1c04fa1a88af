//! Reload Prometheus and prove the new configuration is the one in force.
//! "Reloaded" is not "applied": a 200 or a sent signal proves nothing, so
//! the answer comes from Prometheus's own status.

use std::time::Duration;

use jiff::Timestamp;
use tokio::time::{Instant, sleep};

use crate::prometheus_api::PrometheusApi;
use crate::reload::reload;
use crate::settings::ReloadMethod;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("Prometheus is not reachable: {0}")]
    Unreachable(String),
    #[error("reload failed: {0}")]
    Reload(String),
    #[error(
        "Prometheus did not load the new configuration (reloadConfigSuccess is false; its log says why)"
    )]
    NotLoaded,
    #[error("Prometheus did not report a new successful load within {0:?}")]
    Timeout(Duration),
    #[error("the configuration in force does not match: missing jobs [{}], unexpected jobs [{}]", .missing.join(", "), .unexpected.join(", "))]
    JobsDiffer {
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
}

/// Reloads and waits until Prometheus reports a successful load newer than
/// the one before, then checks that its jobs are exactly `expected_jobs`.
pub async fn reload_and_verify(
    method: &ReloadMethod,
    api: &PrometheusApi,
    expected_jobs: &[String],
    timeout: Duration,
) -> Result<(), VerifyError> {
    let before = api.runtime_info().await.map_err(VerifyError::Unreachable)?;
    // lastConfigTime has whole seconds: reload in a later second than the
    // last load, so that a newer load is visible as a newer time.
    let next_second = before.last_config_time.as_second() + 1;
    let now = Timestamp::now();
    if now.as_second() < next_second {
        let wait = Timestamp::from_second(next_second)
            .expect("valid time")
            .duration_since(now);
        sleep(Duration::try_from(wait).unwrap_or_default()).await;
    }
    reload(method, api).await.map_err(VerifyError::Reload)?;

    let deadline = Instant::now() + timeout;
    loop {
        match api.runtime_info().await {
            Ok(info)
                if info.reload_config_success
                    && info.last_config_time > before.last_config_time =>
            {
                break;
            }
            // A failure we can tell from the one before: it is ours.
            Ok(info) if !info.reload_config_success && before.reload_config_success => {
                return Err(VerifyError::NotLoaded);
            }
            Ok(_) | Err(_) if Instant::now() >= deadline => {
                return Err(VerifyError::Timeout(timeout));
            }
            _ => sleep(Duration::from_millis(50)).await,
        }
    }

    let loaded = api
        .loaded_job_names()
        .await
        .map_err(VerifyError::Unreachable)?;
    let missing: Vec<String> = expected_jobs
        .iter()
        .filter(|j| !loaded.contains(j))
        .cloned()
        .collect();
    let unexpected: Vec<String> = loaded
        .iter()
        .filter(|j| !expected_jobs.contains(j))
        .cloned()
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::JobsDiffer {
            missing,
            unexpected,
        })
    }
}
