//! Requests to one API server with the cluster's credentials, and their
//! failures turned into `DiscoveryError`s. The bytes go through
//! `transport`; this is what they mean.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::DiscoveryError;
use super::decode;
use super::objects::Status;
use super::redact::redact;
use super::tls;
use super::transport::{self, Failure, Reading, Times};
use crate::config::cluster::Cluster;
use crate::fsutil;

/// The largest answer read from an API server (a page of 500 full Node
/// objects is a few MiB); a larger one fails that cluster alone.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// The largest watch event: one object (an EndpointSlice of 1000
/// endpoints is about 300 KiB).
pub const MAX_EVENT_BYTES: usize = 16 << 20;
/// The largest token file read.
const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// The longest a watch may stay silent: servers send bookmarks well within.
pub const WATCH_SILENCE: Duration = Duration::from_secs(330);
/// A watch that sends more than this in `FLOOD_WINDOW` is given up on: no
/// cluster changes that fast, and decoding it would take a core from
/// every other cluster.
const FLOOD_EVENTS: u32 = 5_000;
const FLOOD_BYTES: usize = 256 << 20;
const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// How many requests run at once, across all clusters: a thousand at
/// start-up would otherwise open a thousand connections together. A
/// request waits for its turn before its own timeout starts.
static REQUESTS_AT_ONCE: Semaphore = Semaphore::const_new(64);
/// Answers held in memory at once, across all clusters, in KiB: a list's
/// body is held whole until it is decoded, and 64 requests of 64 MiB each
/// must not hold 4 GiB. An answer waits for room within its own timeout.
static ANSWER_KIB: Semaphore = Semaphore::const_new(256 << 10);

/// A client for one cluster; every request goes on a connection of its
/// own (see `transport`).
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

/// What a request needs permission for, to name it in a 403 message.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub verb: &'static str,
    pub resource: &'static str,
}

/// A whole answer, and the room it holds in `ANSWER_KIB` until dropped.
struct Whole {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
    _room: Option<SemaphorePermit<'static>>,
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
        let whole = self.exchange("GET", path, accept, Vec::new()).await?;
        self.decoded(whole, path, needs)
    }

    /// POSTs `body` (JSON) to `path` and decodes the JSON answer (201 or
    /// 200). `None` for a 404: the API is not served.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        needs: Permission,
    ) -> Result<Option<T>, DiscoveryError> {
        let json = body.to_string().into_bytes();
        let mut whole = self
            .exchange("POST", path, "application/json", json)
            .await?;
        if whole.status == 201 {
            whole.status = 200;
        }
        self.decoded(whole, path, needs)
    }

    /// GETs `path` and returns the status and the body as they are, for a
    /// sample scrape through a proxy path.
    pub async fn fetch(&self, path: &str, accept: &str) -> Result<(u16, Vec<u8>), DiscoveryError> {
        let whole = self.exchange("GET", path, accept, Vec::new()).await?;
        Ok((whole.status, whole.body))
    }

    /// What an answer other than a 200 means: a 404 is `None`, the rest
    /// are errors naming the permission `needs`.
    fn decoded<T: DeserializeOwned>(
        &self,
        whole: Whole,
        path: &str,
        needs: Permission,
    ) -> Result<Option<T>, DiscoveryError> {
        let url = format!("{}{path}", self.base);
        match whole.status {
            200 => decode::from_slice(&whole.body).map(Some).map_err(|detail| {
                DiscoveryError::BadResponse {
                    url,
                    detail: format!("not the JSON expected: {}", self.redact(&detail)),
                }
            }),
            404 => Ok(None),
            _ => Err(self.refusal(&whole, url, needs)),
        }
    }

    /// One request and its whole answer, within the request timeout.
    async fn exchange(
        &self,
        method: &'static str,
        path: &str,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Whole, DiscoveryError> {
        let url = format!("{}{path}", self.base);
        let token = self.token()?;
        let _turn = REQUESTS_AT_ONCE.acquire().await.ok();
        let deadline = Instant::now() + self.timeout;
        let exchange = async {
            let mut answer = self
                .open(method, path, accept, body, token.as_deref(), Reading::Bulk)
                .await?;
            let (body, room) = read_whole(&mut answer.body, MAX_RESPONSE_BYTES)
                .await
                .map_err(|f| transport_error(&url, f))?;
            Ok::<_, DiscoveryError>(Whole {
                status: answer.status,
                retry_after: answer.retry_after,
                body: with_location(body, answer.location.as_deref()),
                _room: room,
            })
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| DiscoveryError::Timeout {
                url: self.base.clone(),
                what: "a whole answer",
                limit: self.timeout,
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
        // Opening takes a turn like any request (a thousand handshakes at
        // once would peak the heap, and what stays of each watch would then
        // pin it); the turn ends with the head.
        let turn = REQUESTS_AT_ONCE.acquire().await.ok();
        let mut answer = self
            .open(
                "GET",
                path,
                accept,
                Vec::new(),
                token.as_deref(),
                Reading::Lean,
            )
            .await?;
        drop(turn);
        if answer.status == 200 {
            return Ok(EventStream::new(answer.body, self.base.clone()));
        }
        // A refusal's body: a Status, small; a redirect's: where it points.
        let (text, _) = tokio::time::timeout(self.timeout, read_whole(&mut answer.body, 1 << 20))
            .await
            .unwrap_or(Ok((Vec::new(), None)))
            .unwrap_or_default();
        let whole = Whole {
            status: answer.status,
            retry_after: answer.retry_after,
            body: with_location(text, answer.location.as_deref()),
            _room: None,
        };
        Err(self.refusal(&whole, url, needs))
    }

    /// Sends the request on a new connection and reads the answer's head.
    async fn open(
        &self,
        method: &'static str,
        path: &str,
        accept: &str,
        body: Vec<u8>,
        token: Option<&str>,
        reading: Reading,
    ) -> Result<transport::Answer, DiscoveryError> {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Accept", accept)];
        if let Some(a) = &authorization {
            headers.push(("Authorization", a.as_str()));
        }
        let prefix = self.url.path().trim_end_matches('/');
        let target = format!("{prefix}{path}");
        // A watch waits for hours between events; a list's pieces come
        // within its whole timeout.
        let silence = match reading {
            Reading::Lean => WATCH_SILENCE,
            Reading::Bulk => self.timeout,
        };
        let times = Times {
            connect: self.connect_timeout,
            head: self.timeout,
            silence,
        };
        let request = transport::Request {
            method,
            target: &target,
            headers: &headers,
            body,
            reading,
        };
        transport::send(self.tls.clone(), &self.url, request, times)
            .await
            .map_err(|f| transport_error(&self.base, f))
    }

    /// The token, read now: a rotated one is used at once.
    fn token(&self) -> Result<Option<String>, DiscoveryError> {
        self.token_file.as_deref().map(read_token).transpose()
    }

    /// The error for an answer other than 200 (or 404 to a GET).
    fn refusal(&self, whole: &Whole, url: String, needs: Permission) -> DiscoveryError {
        let token = self.token().ok().flatten();
        let message = || status_message(&whole.body, token.as_deref());
        match whole.status {
            401 => DiscoveryError::Unauthorized {
                url: self.base.clone(),
            },
            403 => DiscoveryError::Forbidden {
                message: message(),
                verb: needs.verb,
                resource: needs.resource,
            },
            410 => DiscoveryError::Gone { url },
            429 => DiscoveryError::Throttled {
                url,
                retry_after: whole.retry_after,
            },
            // 304 Not Modified points nowhere: an odd answer, not a redirect.
            code @ (300..=303 | 305..=399) => DiscoveryError::Redirect {
                url,
                status: code,
                location: message(),
            },
            code => DiscoveryError::Http {
                url,
                status: code,
                body: message(),
            },
        }
    }
}

/// A transport failure, told in discovery's terms.
fn transport_error(url: &str, failure: Failure) -> DiscoveryError {
    let url = url.to_string();
    match failure {
        Failure::Io(e) => match transport::find_rustls_error(&e) {
            Some(tls) => DiscoveryError::Tls {
                url,
                detail: tls.to_string(),
            },
            None => DiscoveryError::Unreachable {
                url,
                detail: e.to_string(),
            },
        },
        Failure::Timeout(what, limit) => DiscoveryError::Timeout { url, what, limit },
        Failure::Limit(limit) => DiscoveryError::TooMuch {
            what: "an answer larger than promfed reads",
            url,
            limit,
        },
        Failure::Protocol(detail) => DiscoveryError::Protocol { url, detail },
    }
}

/// A whole body, at most `cap` bytes, with the room it takes held in
/// `ANSWER_KIB`.
async fn read_whole(
    body: &mut transport::Body,
    cap: usize,
) -> Result<(Vec<u8>, Option<SemaphorePermit<'static>>), Failure> {
    let mut text = Vec::new();
    let mut room: Option<SemaphorePermit<'static>> = None;
    while let Some(chunk) = body.next().await? {
        if text.len() + chunk.len() > cap {
            return Err(Failure::Limit(format!("more than {} MiB", cap >> 20)));
        }
        let held = room.as_ref().map_or(0, |r| r.num_permits());
        let needed = (text.len() + chunk.len()).div_ceil(1024);
        if needed > held {
            let more = u32::try_from(needed - held).unwrap_or(u32::MAX);
            if let Ok(permit) = ANSWER_KIB.acquire_many(more).await {
                match room.as_mut() {
                    Some(r) => r.merge(permit),
                    None => room = Some(permit),
                }
            }
        }
        text.extend_from_slice(&chunk);
    }
    Ok((text, room))
}

/// A redirect's body is empty: say where it pointed instead (redacted: a
/// Location may carry credentials).
fn with_location(body: Vec<u8>, location: Option<&str>) -> Vec<u8> {
    match location {
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
    body: transport::Body,
    base: String,
    lines: Lines,
    pace: Flood,
}

impl EventStream {
    fn new(body: transport::Body, base: String) -> EventStream {
        EventStream {
            body,
            base,
            lines: Lines::default(),
            pace: Flood::new(Instant::now()),
        }
    }

    /// The next event; `None` when the server ended the watch. Cancel-safe
    /// (nothing read is lost if the future is dropped between reads).
    pub async fn next(&mut self) -> Result<Option<RawEvent>, DiscoveryError> {
        loop {
            if let Some(line) = self.lines.next_line() {
                // An event costs decoding: give the other clusters their
                // turn when this task has used its share.
                tokio::task::consume_budget().await;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Some(limit) = self.pace.event(Instant::now(), line.len()) {
                    return Err(self.too_much("a watch flooding promfed", limit));
                }
                return decode::from_slice(&line).map(Some).map_err(|detail| {
                    DiscoveryError::BadResponse {
                        url: self.base.clone(),
                        detail: format!("a watch event that is not JSON: {detail}"),
                    }
                });
            }
            if self.lines.pending() > MAX_EVENT_BYTES {
                return Err(self.too_much(
                    "a watch event larger than promfed reads",
                    format!("more than {} MiB", MAX_EVENT_BYTES >> 20),
                ));
            }
            match self.body.next().await {
                Ok(Some(chunk)) => self.lines.push(&chunk),
                Ok(None) => return Ok(None),
                Err(f) => return Err(transport_error(&self.base, f)),
            }
        }
    }

    fn too_much(&self, what: &'static str, limit: String) -> DiscoveryError {
        DiscoveryError::TooMuch {
            what,
            url: self.base.clone(),
            limit,
        }
    }
}

/// Bytes split into lines as they arrive; each byte is searched once and
/// moved at most once more.
#[derive(Default)]
pub(super) struct Lines {
    buffer: Vec<u8>,
    /// Where the next line starts.
    start: usize,
    /// How far `buffer` is known to hold no newline.
    searched: usize,
}

impl Lines {
    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// Bytes held that are not yet a whole line.
    fn pending(&self) -> usize {
        self.buffer.len() - self.start
    }

    pub(super) fn next_line(&mut self) -> Option<Vec<u8>> {
        let from = self.searched.max(self.start);
        let found = self.buffer.get(from..)?.iter().position(|b| *b == b'\n');
        let Some(at) = found else {
            // Keep only the unfinished line, moved to the front once.
            self.buffer.drain(..self.start);
            self.start = 0;
            self.searched = self.buffer.len();
            if self.buffer.is_empty() {
                // No room kept between events: a thousand clusters wait
                // with two watches each.
                self.buffer = Vec::new();
            }
            return None;
        };
        let end = from + at;
        let line = self.buffer.get(self.start..end)?.to_vec();
        self.start = end + 1;
        self.searched = self.start;
        Some(line)
    }
}

/// Counts one watch's events and bytes per `FLOOD_WINDOW`.
struct Flood {
    since: Instant,
    events: u32,
    bytes: usize,
}

impl Flood {
    fn new(now: Instant) -> Flood {
        Flood {
            since: now,
            events: 0,
            bytes: 0,
        }
    }

    /// Takes in one event; the limit it broke, if any.
    fn event(&mut self, now: Instant, bytes: usize) -> Option<String> {
        if now.duration_since(self.since) >= FLOOD_WINDOW {
            *self = Flood::new(now);
        }
        self.events += 1;
        self.bytes += bytes;
        (self.events > FLOOD_EVENTS || self.bytes > FLOOD_BYTES).then(|| {
            format!(
                "more than {FLOOD_EVENTS} events or {} MiB within {FLOOD_WINDOW:?}",
                FLOOD_BYTES >> 20
            )
        })
    }
}

/// The token file's one line, as `token_in` reads it.
fn read_token(file: &std::path::Path) -> Result<String, DiscoveryError> {
    token_in(file).map_err(|detail| DiscoveryError::Credentials {
        key: "token_file",
        path: file.to_path_buf(),
        detail,
    })
}

/// A token file's one line. Only a regular file of bounded size is read
/// (a FIFO would block), and a token with a line break or control character
/// inside is told as such, not as an unparsable HTTP header. `add-cluster`
/// holds a kubeconfig's token to the same rule, so what it writes is what
/// discovery sends. The reason never quotes the file.
pub fn token_in(file: &std::path::Path) -> Result<String, String> {
    let bytes = fsutil::read_regular(file, MAX_TOKEN_BYTES).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    match token_problem(&text) {
        Some(why) => Err(why.to_string()),
        None => Ok(text.trim().to_string()),
    }
}

/// Why `text` (a file's or a kubeconfig's) is not one bearer token.
pub fn token_problem(text: &str) -> Option<&'static str> {
    let token = text.trim();
    if token.is_empty() {
        Some("is empty")
    } else if token.len() as u64 > MAX_TOKEN_BYTES {
        Some("is larger than a token (64 KiB)")
    } else if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some(
            "holds a line break, space or control character inside the token: it must hold the token alone, on one line",
        )
    } else {
        None
    }
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
