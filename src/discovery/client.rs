//! GET requests to one API server with the cluster's credentials, and their
//! failures turned into `DiscoveryError`s.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::DiscoveryError;
use super::objects::Status;
use super::tls;
use crate::config::cluster::Cluster;

pub struct KubeClient {
    http: reqwest::Client,
    /// The API server URL including its path prefix, without trailing `/`.
    base: String,
    token_file: Option<PathBuf>,
}

/// What a request needs permission for, to name it in a 403 message.
pub struct Permission {
    pub verb: &'static str,
    pub resource: &'static str,
}

impl KubeClient {
    pub fn new(cluster: &Cluster, timeout: Duration) -> Result<KubeClient, DiscoveryError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls::client_config(cluster)?)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("promfed/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DiscoveryError::BadResponse {
                url: cluster.api_server.url.to_string(),
                detail: format!("cannot set up the HTTP client: {e}"),
            })?;
        Ok(KubeClient {
            http,
            base: cluster
                .api_server
                .url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            token_file: cluster.auth.token_file.clone(),
        })
    }

    /// GETs `path` (which starts with `/`) and decodes the JSON answer.
    /// `None` for a 404.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        needs: Permission,
    ) -> Result<Option<T>, DiscoveryError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url).header("Accept", "application/json");
        if let Some(token_file) = &self.token_file {
            // Read on every request: a rotated token is used at once.
            let token =
                std::fs::read_to_string(token_file).map_err(|e| DiscoveryError::Credentials {
                    key: "token_file",
                    path: token_file.clone(),
                    detail: e.to_string(),
                })?;
            request = request.bearer_auth(token.trim());
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&self.base, &e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&self.base, &e))?;
        match status.as_u16() {
            200 => {
                serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|e| DiscoveryError::BadResponse {
                        url: url.clone(),
                        detail: format!("not the JSON expected: {e}"),
                    })
            }
            404 => Ok(None),
            401 => Err(DiscoveryError::Unauthorized {
                url: self.base.clone(),
            }),
            403 => Err(DiscoveryError::Forbidden {
                message: status_message(&body),
                verb: needs.verb,
                resource: needs.resource,
            }),
            code => Err(DiscoveryError::Http {
                url,
                status: code,
                body: status_message(&body),
            }),
        }
    }
}

/// The `message` of a Kubernetes `Status` body, or the start of the body.
fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.message)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string()
        })
}

/// Tells a TLS failure (wrong CA, wrong name) apart from an unreachable host.
fn transport_error(url: &str, e: &reqwest::Error) -> DiscoveryError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut chain = Vec::new();
    while let Some(err) = source {
        if let Some(tls) = find_rustls_error(err) {
            return DiscoveryError::Tls {
                url: url.to_string(),
                detail: tls.to_string(),
            };
        }
        let text = err.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        source = err.source();
    }
    let detail = if e.is_timeout() {
        "timed out".to_string()
    } else {
        chain.into_iter().skip(1).collect::<Vec<_>>().join(": ")
    };
    DiscoveryError::Unreachable {
        url: url.to_string(),
        detail,
    }
}

/// io::Error hides its payload from `source()`, and hyper wraps io::Errors
/// in io::Errors: look inside each layer.
fn find_rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let payload = err.downcast_ref::<std::io::Error>()?.get_ref()?;
    find_rustls_error(payload)
}
