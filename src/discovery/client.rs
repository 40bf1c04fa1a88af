//! GET requests to one API server with the cluster's credentials, and their
//! failures turned into `DiscoveryError`s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::DiscoveryError;
use super::h1;
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

/// Every request, a list's or a watch's, goes on a connection of its own
/// (see `h1`): lists are rare and a kept connection would hold its buffers
/// for nothing.
pub struct KubeClient {
    /// Shared with every cluster that trusts and presents the same (see
    /// `tls::client_config`).
    tls: Arc<rustls::ClientConfig>,
    url: url::Url,
    connect_timeout: Duration,
    /// The whole of one list request.
    timeout: Duration,
    /// The API server URL including its path prefix, without trailing `/`.
    base: String,
    token_file: Option<PathBuf>,
}

/// How many list requests run at once, across all clusters. A thousand at
/// start-up would hold a thousand answers in memory together, and leave the
/// allocator holding that peak; this bounds it to a few MiB. A request
/// waits for its turn before its own timeout starts.
static LISTS_AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

/// What a request needs permission for, to name it in a 403 message.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub verb: &'static str,
    pub resource: &'static str,
}

impl KubeClient {
    pub fn new(cluster: &Cluster, timeout: Duration) -> Result<KubeClient, DiscoveryError> {
        Ok(KubeClient {
            tls: tls::client_config(cluster)?,
            url: cluster.api_server.url.clone(),
            connect_timeout: timeout.min(Duration::from_secs(5)),
            timeout,
            base: cluster
                .api_server
                .url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            token_file: cluster.auth.token_file.clone(),
        })
    }

    /// Server text made safe to show, the token's own text included.
    pub fn redact(&self, text: &str) -> String {
        let token = self.token_file.as_deref().and_then(|f| read_token(f).ok());
        redact(text, token.as_deref())
    }

    /// The API server's URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `path` (which starts with `/`) as `accept` and decodes the JSON
    /// answer. `None` for a 404.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        accept: &str,
        needs: Permission,
    ) -> Result<Option<T>, DiscoveryError> {
        let (status, body) = self.exchange("GET", path, accept, &[]).await?;
        self.decoded(status, path, &body, needs)
    }

    /// POSTs `body` (JSON) to `path` and decodes the JSON answer (201 or
    /// 200). `None` for a 404: the API is not served.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        needs: Permission,
    ) -> Result<Option<T>, DiscoveryError> {
        let json = serde_json::to_vec(body).expect("JSON serialises");
        let (status, answer) = self
            .exchange("POST", path, "application/json", &json)
            .await?;
        let status = if status == 201 { 200 } else { status };
        self.decoded(status, path, &answer, needs)
    }

    /// GETs `path` and returns the status and the body as they are, for a
    /// sample scrape through a proxy path.
    pub async fn fetch(&self, path: &str, accept: &str) -> Result<(u16, Vec<u8>), DiscoveryError> {
        self.exchange("GET", path, accept, &[]).await
    }

    /// What an answer other than a 200 means: a 404 is `None`, the rest
    /// are errors naming the permission `needs`.
    fn decoded<T: DeserializeOwned>(
        &self,
        status: u16,
        path: &str,
        body: &[u8],
        needs: Permission,
    ) -> Result<Option<T>, DiscoveryError> {
        let url = format!("{}{path}", self.base);
        match status {
            200 => {
                serde_json::from_slice(body)
                    .map(Some)
                    .map_err(|e| DiscoveryError::BadResponse {
                        url: url.clone(),
                        detail: format!("not the JSON expected: {e}"),
                    })
            }
            404 => Ok(None),
            _ => {
                let token = self.token().ok().flatten();
                Err(self.refusal(status, url, body, token.as_deref(), needs))
            }
        }
    }

    /// One request and its whole answer, within the request timeout.
    async fn exchange(
        &self,
        method: &'static str,
        path: &str,
        accept: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), DiscoveryError> {
        let url = format!("{}{path}", self.base);
        let token = self.token()?;
        let _permit = LISTS_AT_ONCE.acquire().await.expect("never closed");
        let exchange = async {
            let (head, mut answer) = self
                .open(method, path, accept, body, token.as_deref(), self.timeout)
                .await?;
            let text = read_capped(&mut answer, &self.base, &url).await?;
            Ok::<_, DiscoveryError>((head.status, with_location(text, &head)))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DiscoveryError::Unreachable {
                url: self.base.clone(),
                detail: format!("timed out (no whole answer within {:?})", self.timeout),
            })?
    }

    /// Starts a watch (`path` has `watch=true`); its events come from the
    /// returned stream until the server ends it.
    pub async fn watch(
        &self,
        path: &str,
        accept: &str,
        needs: Permission,
    ) -> Result<EventStream, DiscoveryError> {
        let url = format!("{}{path}", self.base);
        let token = self.token()?;
        let (head, mut body) = self
            .open("GET", path, accept, &[], token.as_deref(), WATCH_SILENCE)
            .await?;
        if head.status == 200 {
            return Ok(EventStream {
                body,
                base: self.base.clone(),
                buffer: Vec::new(),
            });
        }
        // A refusal's body: a Status, small; a redirect's: where it points.
        let mut text = Vec::new();
        while let Some(piece) = body.next().await.map_err(|f| h1_error(&self.base, f))? {
            text.extend_from_slice(&piece);
            if text.len() > 1 << 20 {
                break;
            }
        }
        text = with_location(text, &head);
        Err(self.refusal(head.status, url, &text, token.as_deref(), needs))
    }

    /// Sends the request on a new connection and reads the answer's head.
    async fn open(
        &self,
        method: &'static str,
        path: &str,
        accept: &str,
        body: &[u8],
        token: Option<&str>,
        silence: Duration,
    ) -> Result<(h1::Head, h1::Body), DiscoveryError> {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Accept", accept)];
        if let Some(a) = &authorization {
            headers.push(("Authorization", a.as_str()));
        }
        let prefix = self.url.path().trim_end_matches('/');
        h1::send(
            self.tls.clone(),
            &self.url,
            h1::Request {
                method,
                path: &format!("{prefix}{path}"),
                headers: &headers,
                body,
            },
            self.connect_timeout,
            silence,
        )
        .await
        .map_err(|f| h1_error(&self.base, f))
    }

    /// The token, read now: a rotated one is used at once.
    fn token(&self) -> Result<Option<String>, DiscoveryError> {
        self.token_file.as_deref().map(read_token).transpose()
    }

    /// The error for an answer other than 200 (or 404 to a GET).
    fn refusal(
        &self,
        status: u16,
        url: String,
        body: &[u8],
        token: Option<&str>,
        needs: Permission,
    ) -> DiscoveryError {
        match status {
            401 => DiscoveryError::Unauthorized {
                url: self.base.clone(),
            },
            403 => DiscoveryError::Forbidden {
                message: status_message(body, token),
                verb: needs.verb,
                resource: needs.resource,
            },
            410 => DiscoveryError::Gone { url },
            code @ 300..=399 => DiscoveryError::Redirect {
                url,
                status: code,
                location: status_message(body, token),
            },
            code => DiscoveryError::Http {
                url,
                status: code,
                body: status_message(body, token),
            },
        }
    }
}

/// The longest a watch may stay silent: servers send bookmarks well within.
const WATCH_SILENCE: Duration = Duration::from_secs(330);

/// A response body, read in chunks up to `MAX_RESPONSE_BYTES`.
async fn read_capped(
    body: &mut h1::Body,
    base: &str,
    url: &str,
) -> Result<Vec<u8>, DiscoveryError> {
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await.map_err(|f| h1_error(base, f))? {
        if text.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(DiscoveryError::TooMuch {
                what: "an answer larger than promfed reads",
                url: url.to_string(),
                limit: format!("more than {} MiB", MAX_RESPONSE_BYTES >> 20),
            });
        }
        text.extend_from_slice(&chunk);
    }
    Ok(text)
}

/// A redirect's body is empty: say where it pointed instead (redacted: a
/// Location may carry credentials).
fn with_location(body: Vec<u8>, head: &h1::Head) -> Vec<u8> {
    match &head.location {
        Some(location) if body.is_empty() => pointing_to(&redact(location, None)),
        _ => body,
    }
}

/// A Status body whose message is where a redirect pointed.
fn pointing_to(location: &str) -> Vec<u8> {
    format!(
        "{{\"message\":{}}}",
        serde_json::Value::String(location.to_string())
    )
    .into_bytes()
}

/// One event of a watch: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or
/// `ERROR`, and its object, decoded by the caller.
#[derive(Debug, serde::Deserialize)]
pub struct RawEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub object: serde_json::Value,
}

/// The events of one watch, one JSON object per line.
pub struct EventStream {
    body: h1::Body,
    base: String,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the server ended the watch.
    pub async fn next(&mut self) -> Result<Option<RawEvent>, DiscoveryError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if self.buffer.is_empty() {
                    // Keep no room between events (see `h1`).
                    self.buffer = Vec::new();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line).map(Some).map_err(|e| {
                    DiscoveryError::BadResponse {
                        url: self.base.clone(),
                        detail: format!("a watch event that is not JSON: {e}"),
                    }
                });
            }
            if self.buffer.len() > MAX_RESPONSE_BYTES {
                return Err(DiscoveryError::TooMuch {
                    what: "a watch event larger than promfed reads",
                    url: self.base.clone(),
                    limit: format!("more than {} MiB", MAX_RESPONSE_BYTES >> 20),
                });
            }
            match self.body.next().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(f) => return Err(h1_error(&self.base, f)),
            }
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

/// A watch connection's failure, told as the same errors as a list's.
fn h1_error(url: &str, failure: h1::Failure) -> DiscoveryError {
    match failure {
        h1::Failure::Io(e) => match find_rustls_error(&e) {
            Some(tls) => DiscoveryError::Tls {
                url: url.to_string(),
                detail: tls.to_string(),
            },
            None => DiscoveryError::Unreachable {
                url: url.to_string(),
                detail: e.to_string(),
            },
        },
        h1::Failure::Silent(after) => DiscoveryError::Unreachable {
            url: url.to_string(),
            detail: format!("timed out (nothing for {after:?})"),
        },
        h1::Failure::Protocol(detail) => DiscoveryError::BadResponse {
            url: url.to_string(),
            detail,
        },
    }
}

/// io::Error hides its payload from `source()`, and may wrap io::Errors in
/// io::Errors: look inside each layer.
fn find_rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let payload = err.downcast_ref::<std::io::Error>()?.get_ref()?;
    find_rustls_error(payload)
}
