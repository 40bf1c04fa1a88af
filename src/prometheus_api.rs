//! The parts of Prometheus's HTTP API that tell whether a reload took.

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use url::Url;

pub struct PrometheusApi {
    http: reqwest::Client,
    base: Url,
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
        // reqwest is built without a default TLS backend; an https:// URL
        // for Prometheus uses ring, like discovery. Installing twice is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client builds");
        PrometheusApi {
            http,
            base: base.clone(),
        }
    }

    pub fn url(&self) -> &Url {
        &self.base
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, String> {
        let url = self.endpoint(path);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", describe(&e)))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let envelope: Envelope<T> = response.json().await.map_err(|e| format!("{url}: {e}"))?;
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
        let url = self.endpoint("/-/reload");
        let response = self
            .http
            .post(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", describe(&e)))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => Ok(()),
            403 => Err(format!(
                "{url} answered 403: Prometheus runs without --web.enable-lifecycle; add that flag or use reload = \"signal\""
            )),
            _ => Err(format!("{url} answered {status}: {}", body.trim())),
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
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
