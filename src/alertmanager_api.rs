//! The parts of Alertmanager's HTTP API that tell whether a reload took.

use serde::Deserialize;
use url::Url;

use crate::http_api::{HttpApi, ReloadRefused};
use crate::render::ClusterRoute;

pub struct AlertmanagerApi {
    http: HttpApi,
}

/// From `/metrics`: the last reload's result and the time of the last
/// successful one (sub-second resolution).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReloadState {
    pub successful: bool,
    pub success_time: f64,
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
    pub fn new(base: &Url) -> AlertmanagerApi {
        AlertmanagerApi {
            http: HttpApi::new(base),
        }
    }

    pub async fn reload_state(&self) -> Result<ReloadState, String> {
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
    pub async fn loaded_routes(&self) -> Result<Vec<ClusterRoute>, String> {
        let text = self.http.get_text("/api/v2/status").await?;
        let status: Status =
            serde_json::from_str(&text).map_err(|e| format!("/api/v2/status: {e}"))?;
        Ok(routes_of(&status.config.original))
    }

    /// `POST /-/reload`: synchronous and always enabled; the error text
    /// comes back on failure.
    pub async fn post_reload(&self) -> Result<(), String> {
        self.http
            .post_reload()
            .await
            .map_err(|refused| match refused {
                ReloadRefused::Unreachable(e) => e,
                ReloadRefused::Status { url, status, body } => {
                    format!("{url} answered {status}: {body}")
                }
            })
    }
}

/// The `cluster="…"` routes of an Alertmanager configuration.
pub fn routes_of(yaml: &str) -> Vec<ClusterRoute> {
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
