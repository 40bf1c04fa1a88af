//! Alertmanager: reloaded by `POST /-/reload` (always enabled) or SIGHUP,
//! and read back through its metrics (last load, sub-second) and
//! `/api/v2/status` (the routes in force).

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::http_api::{HttpApi, ReloadRefused};
use super::{LastLoad, Program, Reloaded, VerifyError, poll_until_loaded, process};
use crate::config::settings::{ReloadMethod, ServiceSettings};
use crate::render::ClusterRoute;

struct AlertmanagerApi {
    http: HttpApi,
}

/// From `/metrics`: the last reload's result and the time of the last
/// successful one (sub-second resolution).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ReloadState {
    successful: bool,
    success_time: f64,
}

#[derive(Deserialize)]
struct Status {
    config: StatusConfig,
}

#[derive(Deserialize)]
struct StatusConfig {
    original: String,
}

impl AlertmanagerApi {
    fn new(base: &Url, timeout: std::time::Duration) -> AlertmanagerApi {
        AlertmanagerApi {
            http: HttpApi::new(base, timeout),
        }
    }

    async fn reload_state(&self) -> Result<ReloadState, String> {
        let text = self.http.get_text("/metrics").await?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(name)?
                        .strip_prefix(' ')?
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .ok_or_else(|| format!("{name} is missing from Alertmanager's metrics"))
        };
        Ok(ReloadState {
            successful: value("alertmanager_config_last_reload_successful")? == 1.0,
            success_time: value("alertmanager_config_last_reload_success_timestamp_seconds")?,
        })
    }

    /// The cluster routes present at the top of the configuration in force.
    async fn loaded_routes(&self) -> Result<Vec<ClusterRoute>, String> {
        let text = self.http.get_text("/api/v2/status").await?;
        let status: Status =
            serde_json::from_str(&text).map_err(|e| format!("/api/v2/status: {e}"))?;
        Ok(routes_of(&status.config.original))
    }

    /// `POST /-/reload`: synchronous and always enabled; the error text
    /// comes back on failure.
    /// No answer says nothing of the reload (see Prometheus's).
    async fn post_reload(&self) -> Result<(), VerifyError> {
        self.http
            .post_reload()
            .await
            .map_err(|refused| match refused {
                ReloadRefused::Unreachable(e) => VerifyError::Unreachable("Alertmanager", e),
                ReloadRefused::Status { url, status, body } => {
                    VerifyError::Reload(format!("{url} answered {status}: {body}"))
                }
            })
    }
}

/// The `cluster="…"` routes of an Alertmanager configuration.
fn routes_of(yaml: &str) -> Vec<ClusterRoute> {
    let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(yaml) else {
        return Vec::new();
    };
    let Some(routes) = doc
        .get("route")
        .and_then(|r| r.get("routes"))
        .and_then(|r| r.as_sequence())
    else {
        return Vec::new();
    };
    routes
        .iter()
        .filter_map(|r| {
            let receiver = r.get("receiver")?.as_str()?.to_string();
            let matchers = r.get("matchers")?.as_sequence()?;
            let [matcher] = matchers.as_slice() else {
                return None;
            };
            let cluster = matcher
                .as_str()?
                .strip_prefix("cluster=\"")?
                .strip_suffix('"')?;
            Some(ClusterRoute {
                cluster: cluster.to_string(),
                receiver,
            })
        })
        .collect()
}

pub struct Alertmanager {
    api: AlertmanagerApi,
    method: ReloadMethod,
    timeout: Duration,
}

impl Alertmanager {
    pub fn new(s: &ServiceSettings) -> Alertmanager {
        Alertmanager {
            api: AlertmanagerApi::new(&s.url, s.verify_timeout),
            method: s.reload.clone(),
            timeout: s.verify_timeout,
        }
    }
}

/// Routes as compared and shown: `cluster="x" → receiver`.
fn show(routes: Vec<ClusterRoute>) -> Vec<String> {
    routes
        .into_iter()
        .map(|r| format!("{} → {}", r.matcher(), r.receiver))
        .collect()
}

impl Program for Alertmanager {
    fn name(&self) -> &'static str {
        "Alertmanager"
    }

    async fn last_load(&self) -> Result<LastLoad, String> {
        let state = self.api.reload_state().await?;
        Ok(LastLoad {
            successful: state.successful,
            success_second: state.success_time.floor() as i64,
            instance: None,
        })
    }

    /// Waits for a newer successful load in its metrics, whichever way it
    /// was asked.
    async fn reload(&self) -> Result<Reloaded, VerifyError> {
        let before = self
            .api
            .reload_state()
            .await
            .map_err(|e| VerifyError::Unreachable("Alertmanager", e))?;
        match &self.method {
            ReloadMethod::Http => self.api.post_reload().await?,
            ReloadMethod::Signal(target) => {
                process::send_sighup(target).map_err(VerifyError::Reload)?
            }
        }
        poll_until_loaded("Alertmanager", self.timeout, before.successful, || async {
            let state = self.api.reload_state().await.ok()?;
            Some((state.successful, state.success_time > before.success_time))
        })
        .await?;
        Ok(Reloaded::since(before.success_time.floor() as i64, None))
    }

    async fn in_force(&self) -> Result<Vec<String>, String> {
        self.api.loaded_routes().await.map(show)
    }

    fn expected(&self, config: &str) -> Vec<String> {
        show(routes_of(config))
    }
}
