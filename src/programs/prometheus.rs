//! Prometheus: reloaded by `POST /-/reload` or SIGHUP, and read back through
//! its HTTP API (runtimeinfo for the last load, the loaded configuration for
//! the jobs in force).

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use tokio::time::sleep;
use url::Url;

use super::http_api::{HttpApi, ReloadRefused};
use super::{LastLoad, Program, Reloaded, VerifyError, poll_until_loaded, process};
use crate::config::settings::{ReloadMethod, ServiceSettings};

struct PrometheusApi {
    http: HttpApi,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RuntimeInfo {
    start_time: String,
    reload_config_success: bool,
    /// Whole seconds: Prometheus reports the time of the last successful
    /// load with second resolution.
    last_config_time: Timestamp,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeInfoData {
    start_time: String,
    reload_config_success: bool,
    last_config_time: String,
}

#[derive(Deserialize)]
struct ConfigData {
    yaml: String,
}

impl PrometheusApi {
    fn new(base: &Url, timeout: Duration) -> PrometheusApi {
        PrometheusApi {
            http: HttpApi::new(base, timeout),
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, String> {
        let text = self.http.get_text(path).await?;
        let envelope: Envelope<T> =
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        Ok(envelope.data)
    }

    async fn runtime_info(&self) -> Result<RuntimeInfo, String> {
        let data: RuntimeInfoData = self.get("/api/v1/status/runtimeinfo").await?;
        let last_config_time = data
            .last_config_time
            .parse()
            .map_err(|e| format!("lastConfigTime `{}`: {e}", data.last_config_time))?;
        Ok(RuntimeInfo {
            start_time: data.start_time,
            reload_config_success: data.reload_config_success,
            last_config_time,
        })
    }

    /// The job names of the configuration in force. `/api/v1/scrape_pools`
    /// would lag a reload by the discovery batch interval (5 s) and leaves out
    /// jobs without targets; the loaded configuration does neither.
    async fn loaded_job_names(&self) -> Result<Vec<String>, String> {
        let data: ConfigData = self.get("/api/v1/status/config").await?;
        Ok(job_names(&data.yaml))
    }

    /// `POST /-/reload`: synchronous; the error text comes back on failure.
    /// No answer (a timeout, a dropped connection) says nothing of the
    /// reload: the file stays installed, unverified, and is checked again.
    async fn post_reload(&self) -> Result<(), VerifyError> {
        self.http.post_reload().await.map_err(|refused| match refused {
            ReloadRefused::Unreachable(e) => VerifyError::Unreachable("Prometheus", e),
            ReloadRefused::Status { url, status, .. } if status == reqwest::StatusCode::FORBIDDEN => VerifyError::Reload(format!(
                "{url} answered 403: Prometheus runs without --web.enable-lifecycle; add that flag or use reload = \"signal\""
            )),
            ReloadRefused::Status { url, status, body } => {
                VerifyError::Reload(format!("{url} answered {status}: {body}"))
            }
        })
    }
}

/// How long to wait so that `now` is in a later second than `last_load`:
/// at most 1.1 s, even when the clock was stepped back and `last_load` lies
/// minutes in the future.
fn wait_for_a_later_second(last_load: Timestamp, now: Timestamp) -> Duration {
    let next = Timestamp::from_second(last_load.as_second().saturating_add(1)).unwrap_or(now);
    Duration::try_from(next.duration_since(now))
        .unwrap_or_default()
        .min(Duration::from_millis(1100))
}

/// The `job_name`s of a Prometheus configuration, in order.
/// Read through its shape only: a scalar a value type cannot hold (an
/// integer beyond u128) must not hide the jobs.
fn job_names(yaml: &str) -> Vec<String> {
    crate::render::shape::scrape_job_names(yaml).unwrap_or_default()
}

pub struct Prometheus {
    api: PrometheusApi,
    method: ReloadMethod,
    timeout: Duration,
}

impl Prometheus {
    pub fn new(s: &ServiceSettings) -> Prometheus {
        Prometheus {
            api: PrometheusApi::new(&s.url, s.verify_timeout),
            method: s.reload.clone(),
            timeout: s.verify_timeout,
        }
    }
}

impl Prometheus {
    /// `prometheus_sd_file_watcher_errors_total` from its own metrics: how
    /// many file_sd watchers it could not make since it started.
    pub async fn file_sd_watcher_errors(&self) -> Result<u64, String> {
        const NAME: &str = "prometheus_sd_file_watcher_errors_total ";
        let text = self.api.http.get_text("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix(NAME))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| format!("its metrics have no {}", NAME.trim()))
    }
}

impl Program for Prometheus {
    fn name(&self) -> &'static str {
        "Prometheus"
    }

    async fn last_load(&self) -> Result<LastLoad, String> {
        let info = self.api.runtime_info().await?;
        Ok(LastLoad {
            successful: info.reload_config_success,
            success_second: info.last_config_time.as_second(),
            instance: Some(info.start_time),
        })
    }

    /// HTTP answers only once the configuration was applied; after a signal,
    /// waits for a newer successful load in runtimeinfo.
    async fn reload(&self) -> Result<Reloaded, VerifyError> {
        let before = self
            .api
            .runtime_info()
            .await
            .map_err(|e| VerifyError::Unreachable("Prometheus", e))?;
        let reloaded = || {
            Reloaded::since(
                before.last_config_time.as_second(),
                Some(before.start_time.clone()),
            )
        };
        match &self.method {
            ReloadMethod::Http => self.api.post_reload().await.map(|()| reloaded()),
            ReloadMethod::Signal(target) => {
                // A signal gets no answer: watch lastConfigTime move. It has
                // whole seconds, so signal in a later second than the last
                // load, or a new load would not show as a newer time.
                sleep(wait_for_a_later_second(
                    before.last_config_time,
                    Timestamp::now(),
                ))
                .await;
                process::send_sighup(target).map_err(VerifyError::Reload)?;
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
                .await
                .map(|()| reloaded())
            }
        }
    }

    async fn in_force(&self) -> Result<Vec<String>, String> {
        self.api.loaded_job_names().await
    }

    fn expected(&self, config: &str) -> Vec<String> {
        job_names(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_before_a_signal_is_bounded_whatever_the_clock_did() {
        let now: Timestamp = "2026-11-21T10:00:00.250Z".parse().unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            wait_for_a_later_second(at("2026-11-21T10:00:00Z"), now),
            Duration::from_millis(750)
        );
        assert_eq!(
            wait_for_a_later_second(at("2026-11-21T09:59:00Z"), now),
            Duration::ZERO
        );
        // The clock stepped back ten minutes after the last load.
        assert_eq!(
            wait_for_a_later_second(at("2026-11-21T10:10:00Z"), now),
            Duration::from_millis(1100)
        );
    }
}
