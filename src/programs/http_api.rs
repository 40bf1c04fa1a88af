//! The HTTP plumbing shared by the Prometheus and Alertmanager API clients:
//! one base URL, short timeouts, errors as readable text.

use std::time::Duration;

use url::Url;

pub struct HttpApi {
    http: reqwest::Client,
    base: Url,
}

/// A `POST /-/reload` that did not answer 200.
pub enum ReloadRefused {
    Unreachable(String),
    Status {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
}

impl HttpApi {
    /// `timeout` bounds every request, a reload included: Prometheus answers
    /// `/-/reload` when the new configuration is applied, which takes seconds
    /// at a thousand clusters (3.4 s on two idle cores).
    pub fn new(base: &Url, timeout: Duration) -> HttpApi {
        // reqwest is built without a default TLS backend; an https:// URL
        // uses ring, like discovery. Installing twice is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .build()
            .expect("a plain HTTP client builds");
        HttpApi {
            http,
            base: base.clone(),
        }
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// GETs `path`; any answer but 2xx is an error naming the URL.
    pub async fn get_text(&self, path: &str) -> Result<String, String> {
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
        response
            .text()
            .await
            .map_err(|e| format!("{url}: {}", describe(&e)))
    }

    /// `POST /-/reload`, synchronous in both programs.
    pub async fn post_reload(&self) -> Result<(), ReloadRefused> {
        let url = self.endpoint("/-/reload");
        let response = self
            .http
            .post(&url)
            .send()
            .await
            .map_err(|e| ReloadRefused::Unreachable(format!("{url}: {}", describe(&e))))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(ReloadRefused::Status {
                url,
                status,
                body: body.trim().to_string(),
            })
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
