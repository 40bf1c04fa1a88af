//! The parts of Prometheus's HTTP API that tell whether a reload took.

use jiff::Timestamp;
use serde::Deserialize;
use url::Url;

use crate::http_api::{HttpApi, ReloadRefused};

pub struct PrometheusApi {
    http: HttpApi,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    pub reload_config_success: bool,
    /// Whole seconds: Prometheus reports the time of the last successful
    /// load with second resolution.
    pub last_config_time: Timestamp,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeInfoData {
    reload_config_success: bool,
    last_config_time: String,
}

#[derive(Deserialize)]
struct ConfigData {
    yaml: String,
}

impl PrometheusApi {
    pub fn new(base: &Url) -> PrometheusApi {
        PrometheusApi {
            http: HttpApi::new(base),
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, String> {
        let text = self.http.get_text(path).await?;
        let envelope: Envelope<T> =
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        Ok(envelope.data)
    }

    pub async fn runtime_info(&self) -> Result<RuntimeInfo, String> {
        let data: RuntimeInfoData = self.get("/api/v1/status/runtimeinfo").await?;
        let last_config_time = data
            .last_config_time
            .parse()
            .map_err(|e| format!("lastConfigTime `{}`: {e}", data.last_config_time))?;
        Ok(RuntimeInfo {
            reload_config_success: data.reload_config_success,
            last_config_time,
        })
    }

    /// The job names of the configuration in force. `/api/v1/scrape_pools`
    /// would lag a reload by the discovery batch interval (5 s) and leaves out
    /// jobs without targets; the loaded configuration does neither.
    pub async fn loaded_job_names(&self) -> Result<Vec<String>, String> {
        let data: ConfigData = self.get("/api/v1/status/config").await?;
        Ok(job_names(&data.yaml))
    }

    /// `POST /-/reload`: synchronous; the error text comes back on failure.
    pub async fn post_reload(&self) -> Result<(), String> {
        self.http.post_reload().await.map_err(|refused| match refused {
            ReloadRefused::Unreachable(e) => e,
            ReloadRefused::Status { url, status, .. } if status == reqwest::StatusCode::FORBIDDEN => format!(
                "{url} answered 403: Prometheus runs without --web.enable-lifecycle; add that flag or use reload = \"signal\""
            ),
            ReloadRefused::Status { url, status, body } => format!("{url} answered {status}: {body}"),
        })
    }
}

/// The `job_name`s of a Prometheus configuration, in order.
pub fn job_names(yaml: &str) -> Vec<String> {
    let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(yaml) else {
        return Vec::new();
    };
    doc.get("scrape_configs")
        .and_then(|v| v.as_sequence())
        .map(|jobs| {
            jobs.iter()
                .filter_map(|j| j.get("job_name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
