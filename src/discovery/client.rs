//! GET requests to one API server with the cluster's credentials, and their
//! failures turned into `DiscoveryError`s.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::DiscoveryError;
use super::objects::Status;
use super::redact::redact;
use super::tls;
use crate::fsutil;

/// The largest answer read from an API server (a page of 500 full Node
/// objects is a few MiB); a larger one fails that cluster alone.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// The largest token file read.
const MAX_TOKEN_BYTES: u64 = 64 << 10;
use crate::config::cluster::Cluster;

pub struct KubeClient {
    http: reqwest::Client,
    /// The API server URL including its path prefix, without trailing `/`.
    base: String,
    token_file: Option<PathBuf>,
}

/// What a request needs permission for, to name it in a 403 message.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub verb: &'static str,
    pub resource: &'static str,
}

impl KubeClient {
    pub fn new(cluster: &Cluster, timeout: Duration) -> Result<KubeClient, DiscoveryError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls::client_config(cluster)?)
            // A redirect could take the token to another host or to http.
            .redirect(reqwest::redirect::Policy::none())
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
        let token = match &self.token_file {
            // Read on every request: a rotated token is used at once.
            Some(file) => Some(read_token(file)?),
            None => None,
        };
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(&self.base, &e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&self.base, &e))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(DiscoveryError::TooMuch {
                    what: "an answer larger than promfed reads",
                    url,
                    limit: format!("more than {} MiB", MAX_RESPONSE_BYTES >> 20),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let message = || status_message(&body, token.as_deref());
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
                message: message(),
                verb: needs.verb,
                resource: needs.resource,
            }),
            code @ 300..=399 => Err(DiscoveryError::Redirect {
                url,
                status: code,
                location: response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .map_or_else(|| "nowhere".into(), |l| redact(l, token.as_deref())),
            }),
            code => Err(DiscoveryError::Http {
                url,
                status: code,
                body: message(),
            }),
        }
    }
}

/// The token file's one line. Only a regular file of bounded size is read
/// (a FIFO would block), and a token with a line break or control character
/// inside is told as such, not as an unparsable HTTP header.
fn read_token(file: &std::path::Path) -> Result<String, DiscoveryError> {
    let failed = |detail: String| DiscoveryError::Credentials {
        key: "token_file",
        path: file.to_path_buf(),
        detail,
    };
    let bytes = fsutil::read_regular(file, MAX_TOKEN_BYTES).map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("is not UTF-8 text".into()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(failed("is empty".into()));
    }
    if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(failed(
            "holds a line break, space or control character inside the token: it must hold the token alone, on one line".into(),
        ));
    }
    Ok(token.to_string())
}

/// The `message` of a Kubernetes `Status` body (or the start of the body),
/// redacted: a server may echo the request's credentials.
fn status_message(body: &[u8], token: Option<&str>) -> String {
    let text = serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned());
    redact(&text, token)
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
