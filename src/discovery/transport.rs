//! One HTTP/1.1 exchange with an API server, on a connection of its own:
//! TCP (with keepalive), TLS (rustls through tokio-rustls) and the framing
//! (1xx skipped, 204/304 bodiless, conflicting lengths refused, trailers
//! bounded): hyper's client connection for lists, promfed's own framing
//! (`lean.rs`, `framing.rs`) for watches, which wait for hours and would
//! hold hyper's buffers all that time. promfed's part either way is the
//! bounds: every step has a time, and every answer a size, past which the
//! exchange fails with a reason, never waits.
//!
//! A connection per request: lists are rare, and a watch holds its
//! connection for its whole life anyway; a pool would keep idle sockets
//! and their buffers for nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use url::{Host, Url};

use super::lean::{self, LeanBody};

/// The largest response head (status line and headers) read; hyper's read
/// buffer never grows past it either. A Kubernetes answer's head is well
/// under 1 KiB; load balancers add cookies and a few headers.
pub const MAX_HEAD: usize = 16 << 10;
/// Idle TCP connections (a watch between events) are probed after this
/// long, so that a peer that vanished is noticed without waiting for the
/// watch's own silence limit.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// Why an exchange failed. Every variant's text is promfed's own or the
/// TLS and HTTP libraries' fixed words: never bytes of the server's.
#[derive(Debug)]
pub enum Failure {
    /// Connecting or the TLS handshake (rustls's errors are inside).
    Io(std::io::Error),
    /// A step outlasted its time: what, and the limit.
    Timeout(&'static str, Duration),
    /// The server sent more than promfed reads.
    Limit(String),
    /// The server spoke something that is not HTTP/1.1.
    Protocol(String),
}

/// How long each step may take.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// TCP connect and the TLS handshake together.
    pub connect: Duration,
    /// From the request sent to the whole response head.
    pub head: Duration,
    /// Between two pieces of the body.
    pub silence: Duration,
}

/// A request: its method, target and headers, and a JSON body for a POST.
pub struct Request<'a> {
    pub method: &'static str,
    /// Path and query, from `/`.
    pub target: &'a str,
    pub headers: &'a [(&'static str, &'a str)],
    /// Sent as `application/json` when not empty.
    pub body: Vec<u8>,
    /// How the answer is read: `Lean` for a watch, which waits for hours
    /// with its buffer held.
    pub reading: Reading,
}

/// How the answer is framed and buffered: what it holds while it waits is
/// held by a thousand clusters' watches at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// hyper, whose read buffer grows with the answer up to `MAX_HEAD`
    /// (a list's pages).
    Bulk,
    /// promfed's framing, with no buffer between reads (a watch); the head
    /// may be at most `framing::MAX_HEAD_BYTES`.
    Lean,
}

/// The status, the few headers promfed reads, and the body to read on.
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    /// `Retry-After` in seconds (a 429's or a 503's); dates are ignored.
    pub retry_after: Option<Duration>,
    pub body: Body,
}

/// An answer's body, read as it comes: data only (trailers are read and
/// bounded, then dropped).
pub struct Body(Framed);

enum Framed {
    Hyper {
        incoming: Incoming,
        silence: Duration,
        /// Drives the connection; stopped when the body is dropped.
        _driver: Driver,
    },
    Lean(LeanBody),
}

/// The task that moves a connection's bytes; aborted with the body so a
/// dropped watch closes its socket at once.
struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to `base` (scheme https, host, port), sends `request` and
/// reads the answer's head.
pub async fn send(
    tls: Arc<ClientConfig>,
    base: &Url,
    request: Request<'_>,
    times: Times,
) -> Result<Answer, Failure> {
    let (server_name, address) = destination(base)?;
    let authority = authority(base);
    let connect = async {
        let tcp = TcpStream::connect(&address).await?;
        tune(&tcp)?;
        tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
    };
    let stream = tokio::time::timeout(times.connect, connect)
        .await
        .map_err(|_| Failure::Timeout("connecting and the TLS handshake", times.connect))?
        .map_err(Failure::Io)?;
    exchange(stream, &authority, request, times).await
}

/// The HTTP exchange over any byte stream (TLS in promfed; a pipe in the
/// tests, which feed it hostile bytes).
pub async fn exchange<S>(
    stream: S,
    authority: &str,
    request: Request<'_>,
    times: Times,
) -> Result<Answer, Failure>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if request.reading == Reading::Lean {
        let (head, body) = lean::exchange(stream, authority, request, times).await?;
        return Ok(Answer {
            status: head.status,
            location: head.location,
            retry_after: head.retry_after,
            body: Body(Framed::Lean(body)),
        });
    }
    let request = build(authority, request)?;
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.max_buf_size(MAX_HEAD).max_header_size(MAX_HEAD);
    let answer = async {
        let (mut sender, connection) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(hyper_failure)?;
        let driver = Driver(tokio::spawn(async move {
            // Its failure reaches the body's reader as the body's error.
            let _ = connection.await;
        }));
        let response = sender.send_request(request).await.map_err(hyper_failure)?;
        Ok::<_, Failure>((response, driver))
    };
    let (response, driver) = tokio::time::timeout(times.head, answer)
        .await
        .map_err(|_| Failure::Timeout("the answer's head", times.head))??;
    let header = |name: hyper::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let location = header(hyper::header::LOCATION);
    let retry_after = header(hyper::header::RETRY_AFTER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Ok(Answer {
        status: response.status().as_u16(),
        location,
        retry_after,
        body: Body(Framed::Hyper {
            incoming: response.into_body(),
            silence: times.silence,
            _driver: driver,
        }),
    })
}

impl Body {
    /// The next piece of the body; `None` at its end. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Failure> {
        match &mut self.0 {
            Framed::Hyper {
                incoming, silence, ..
            } => next_frame(incoming, *silence).await,
            Framed::Lean(body) => body.next().await,
        }
    }
}

/// The next data frame of hyper's body (trailers are skipped).
async fn next_frame(incoming: &mut Incoming, silence: Duration) -> Result<Option<Bytes>, Failure> {
    loop {
        let frame = tokio::time::timeout(silence, incoming.frame())
            .await
            .map_err(|_| Failure::Timeout("the next piece of the answer", silence))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(hyper_failure(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

fn build(authority: &str, request: Request<'_>) -> Result<hyper::Request<Full<Bytes>>, Failure> {
    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(request.target)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("promfed/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::CONNECTION, "close");
    if !request.body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in request.headers {
        builder = builder.header(*name, *value);
    }
    // Names and values are promfed's own; a token with a line break is
    // refused when it is read. The error says which part, never the value.
    builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| Failure::Protocol(format!("cannot form the request: {e}")))
}

/// The name the certificate must carry, and the address to connect to.
fn destination(base: &Url) -> Result<(ServerName<'static>, String), Failure> {
    let host = base
        .host()
        .ok_or_else(|| Failure::Protocol("the URL has no host".into()))?;
    let port = base.port_or_known_default().unwrap_or(443);
    Ok(match host {
        Host::Domain(d) => (
            ServerName::try_from(d.to_string())
                .map_err(|e| Failure::Protocol(format!("host `{d}`: {e}")))?,
            format!("{d}:{port}"),
        ),
        Host::Ipv4(ip) => (
            ServerName::from(std::net::IpAddr::V4(ip)),
            format!("{ip}:{port}"),
        ),
        Host::Ipv6(ip) => (
            ServerName::from(std::net::IpAddr::V6(ip)),
            format!("[{ip}]:{port}"),
        ),
    })
}

fn authority(base: &Url) -> String {
    let host = base.host_str().unwrap_or_default();
    match base.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// No Nagle delay for the small request; keepalive probes for the long
/// silences of a watch.
fn tune(tcp: &TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}

/// hyper's error in promfed's terms, with its causes. Each text is cut at
/// its first `: `: hyper's are fixed words, but a cause may quote the
/// server's bytes after one (`Invalid header value: "…"` of a trailer).
fn hyper_failure(e: hyper::Error) -> Failure {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        if let Some(tls) = find_rustls_error(c) {
            return Failure::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                tls.clone(),
            ));
        }
        let words = c.to_string();
        text.push_str(": ");
        text.push_str(words.split(": ").next().unwrap_or_default());
        cause = c.source();
    }
    // hyper tells its limits only in words (its `is_parse_too_large` is
    // for servers).
    if ["too large", "over limit", "overflow"]
        .iter()
        .any(|w| text.contains(w))
    {
        return Failure::Limit(format!(
            "{text} (a head or trailers over {} KiB)",
            MAX_HEAD >> 10
        ));
    }
    Failure::Protocol(text)
}

/// io::Error hides its payload from `source()`, and may wrap io::Errors in
/// io::Errors: look inside each layer.
pub fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let payload = err.downcast_ref::<std::io::Error>()?.get_ref()?;
    find_rustls_error(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A server on a pipe: reads the request's head, then sends `head` and
    /// one chunk every `every` (never, when `None`).
    fn server(head: &'static str, every: Option<Duration>) -> DuplexStream {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 512];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match theirs.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = theirs.write_all(head.as_bytes()).await;
            loop {
                match every {
                    Some(every) => {
                        tokio::time::sleep(every).await;
                        if theirs.write_all(b"2\r\n{}\r\n").await.is_err() {
                            return;
                        }
                    }
                    None => tokio::time::sleep(Duration::from_secs(86_400)).await,
                }
            }
        });
        ours
    }

    const TIMES: Times = Times {
        connect: Duration::from_secs(5),
        head: Duration::from_secs(10),
        silence: Duration::from_secs(330),
    };

    fn get() -> Request<'static> {
        Request {
            method: "GET",
            target: "/api/v1/nodes?watch=true",
            headers: &[],
            body: Vec::new(),
            reading: Reading::Lean,
        }
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    /// Each answer has its own silence timer: a busy watch beside it does
    /// not keep a silent one alive, and the silent one fails at its limit.
    #[tokio::test(start_paused = true)]
    async fn each_watch_has_its_own_silence_timer() {
        let busy = server(CHUNKED, Some(Duration::from_secs(60)));
        let silent = server(CHUNKED, None);
        let mut busy = exchange(busy, "a", get(), TIMES).await.unwrap().body;
        let mut silent = exchange(silent, "b", get(), TIMES).await.unwrap().body;
        let start = tokio::time::Instant::now();
        let silent_ends = async {
            let failure = silent.next().await.unwrap_err();
            (failure, start.elapsed())
        };
        let busy_goes_on = async {
            for _ in 0..10 {
                assert!(busy.next().await.unwrap().is_some());
            }
        };
        let ((failure, after), ()) = tokio::join!(silent_ends, busy_goes_on);
        assert!(
            matches!(failure, Failure::Timeout(_, d) if d == TIMES.silence),
            "{failure:?}"
        );
        assert_eq!(after, TIMES.silence);
    }

    /// A head that never completes fails at the head's limit, not the
    /// silence's.
    #[tokio::test(start_paused = true)]
    async fn a_head_that_never_ends_fails_at_its_limit() {
        let dripping = server("HTTP/1.1 200 OK\r\nX-A: ", None);
        let start = tokio::time::Instant::now();
        let failure = exchange(dripping, "a", get(), TIMES).await.err().unwrap();
        assert!(
            matches!(failure, Failure::Timeout(_, d) if d == TIMES.head),
            "{failure:?}"
        );
        assert_eq!(start.elapsed(), TIMES.head);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_read_from_a_429() {
        let throttled = server(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
            None,
        );
        let answer = exchange(throttled, "a", get(), TIMES).await.ok().unwrap();
        assert_eq!(answer.status, 429);
        assert_eq!(answer.retry_after, Some(Duration::from_secs(7)));
    }
}
