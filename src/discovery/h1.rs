//! A request on a connection of its own, spoken in plain HTTP/1.1: one GET,
//! then the answer's body read as it arrives, over `LeanTls`.
//!
//! A thousand clusters hold two watches each, for hours. Through reqwest
//! and hyper a watch connection kept about 40 KiB (a pool, a dispatch
//! channel, read buffers that grow to the largest answer), and each
//! cluster's client a few KiB more; this keeps the TLS session and little
//! else. Lists use it too.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use url::{Host, Url};

use super::lean_tls::LeanTls;

/// The largest response head read (status line and headers).
const MAX_HEAD: usize = 64 << 10;

/// Why a watch connection failed, before any answer or while reading it.
#[derive(Debug)]
pub enum Failure {
    /// Connecting, the TLS handshake, or reading: as `std::io::Error`s
    /// (rustls's errors are inside).
    Io(std::io::Error),
    /// The silence between two reads outlasted the limit.
    Silent(Duration),
    /// The server spoke something that is not HTTP/1.1.
    Protocol(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// The status and the headers promfed reads.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub location: Option<String>,
    framing: Framing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

/// An answer's body, read as it comes.
pub struct Body {
    stream: LeanTls,
    /// Bytes read but not yet handed out.
    pending: Vec<u8>,
    decoder: Decoder,
    silence: Duration,
}

/// A request: its method, target and headers, and a body for a POST.
pub struct Request<'a> {
    pub method: &'static str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// Sent as `application/json` when not empty.
    pub body: &'a [u8],
}

/// Sends `request` to `base` (scheme https, host, port) and reads the
/// answer's head.
pub async fn send(
    tls: Arc<ClientConfig>,
    base: &Url,
    request: Request<'_>,
    connect_timeout: Duration,
    silence: Duration,
) -> Result<(Head, Body), Failure> {
    let Request {
        method,
        path,
        headers,
        body,
    } = request;
    let host = base
        .host()
        .ok_or_else(|| Failure::Protocol("the URL has no host".into()))?;
    let port = base.port_or_known_default().unwrap_or(443);
    let (server_name, address) = match host {
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
    };
    let authority = match base.port() {
        Some(p) => format!("{}:{p}", base.host_str().unwrap_or_default()),
        None => base.host_str().unwrap_or_default().to_string(),
    };
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: promfed/{}\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    for (name, value) in headers {
        if value.contains(['\r', '\n']) {
            return Err(Failure::Protocol(format!(
                "header {name} holds a line break"
            )));
        }
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);

    let connect = async {
        let tcp = TcpStream::connect(&address).await?;
        tcp.set_nodelay(true)?;
        LeanTls::connect(tls, server_name, tcp, &request).await
    };
    let mut stream = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| Failure::Silent(connect_timeout))??;

    let mut pending = Vec::new();
    let end = loop {
        if let Some(end) = find(&pending, b"\r\n\r\n") {
            break end;
        }
        if pending.len() > MAX_HEAD {
            return Err(Failure::Protocol("a response head over 64 KiB".into()));
        }
        if read_some(&mut stream, &mut pending, silence).await? == 0 {
            return Err(Failure::Protocol(
                "the connection closed before an answer".into(),
            ));
        }
    };
    let head = parse_head(&pending[..end])?;
    pending.drain(..end + 4);
    let decoder = Decoder::new(head.framing);
    Ok((
        head,
        Body {
            stream,
            pending,
            decoder,
            silence,
        },
    ))
}

impl Body {
    /// The next piece of the body; `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        loop {
            match self.decoder.decode(&mut self.pending)? {
                Decoded::Data(data) => return Ok(Some(data)),
                Decoded::End => return Ok(None),
                Decoded::NeedMore => {}
            }
            if read_some(&mut self.stream, &mut self.pending, self.silence).await? == 0 {
                return match self.decoder.framing {
                    Framing::UntilClose => Ok(None),
                    _ => Err(Failure::Protocol(
                        "the connection closed inside the answer".into(),
                    )),
                };
            }
        }
    }
}

/// Reads what is there onto the end of `into`. Cancel-safe: the watch is
/// read inside a `select!` (see `LeanTls::read`).
async fn read_some(
    stream: &mut LeanTls,
    into: &mut Vec<u8>,
    silence: Duration,
) -> Result<usize, Failure> {
    // Between events a watch waits with no buffer at all: a thousand
    // clusters wait with two watches each.
    if into.is_empty() {
        *into = Vec::new();
    }
    match tokio::time::timeout(silence, stream.read(into)).await {
        Ok(Ok(n)) => Ok(n),
        // A server that closes without TLS's close_notify ends the answer
        // all the same.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Ok(Err(e)) => Err(Failure::Io(e)),
        Err(_) => Err(Failure::Silent(silence)),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<Head, Failure> {
    let text = std::str::from_utf8(head)
        .map_err(|_| Failure::Protocol("a response head that is not text".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| {
            Failure::Protocol(format!(
                "not an HTTP/1.1 status line: {:?}",
                &status_line[..status_line.len().min(100)]
            ))
        })?;
    let mut framing = Framing::UntilClose;
    let mut location = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" if value.to_ascii_lowercase().contains("chunked") => {
                framing = Framing::Chunked;
            }
            "content-length" if framing != Framing::Chunked => {
                let n = value
                    .parse()
                    .map_err(|_| Failure::Protocol(format!("Content-Length `{value}`")))?;
                framing = Framing::Length(n);
            }
            "location" => location = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(Head {
        status,
        location,
        framing,
    })
}

enum Decoded {
    Data(Vec<u8>),
    End,
    NeedMore,
}

/// Takes the body out of what was read, whatever the reads' boundaries.
#[derive(Debug)]
struct Decoder {
    framing: Framing,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk's size line.
    Size,
    /// Inside a chunk, this many bytes to go.
    Data(u64),
    /// After a chunk's data, its CRLF.
    DataEnd,
    /// After the last chunk: trailers until an empty line.
    Trailers,
    /// A Content-Length body with this many bytes to go.
    Remaining(u64),
    Done,
}

impl Decoder {
    fn new(framing: Framing) -> Decoder {
        let state = match framing {
            Framing::Chunked => State::Size,
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Remaining(n),
            Framing::UntilClose => State::Remaining(u64::MAX),
        };
        Decoder { framing, state }
    }

    /// Consumes from `buf` what it can.
    fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Decoded, Failure> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Remaining(left) => {
                    let Some((data, left)) = take(buf, left) else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Remaining(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::Size => {
                    let Some(end) = find(buf, b"\r\n") else {
                        if buf.len() > 1024 {
                            return Err(Failure::Protocol("a chunk size line over 1 KiB".into()));
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    let line = std::str::from_utf8(&buf[..end]).unwrap_or("?");
                    let digits = line.split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(digits, 16).map_err(|_| {
                        Failure::Protocol(format!("a chunk size that is not hex: {digits:?}"))
                    })?;
                    buf.drain(..end + 2);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    let Some((data, left)) = take(buf, left) else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Failure::Protocol("a chunk not ended by CRLF".into()));
                    }
                    buf.drain(..2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(end) = find(buf, b"\r\n") else {
                        return Ok(Decoded::NeedMore);
                    };
                    buf.drain(..end + 2);
                    if end == 0 {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

/// Up to `left` bytes from the front of `buf`, and how many remain after
/// them; `None` when `buf` is empty.
fn take(buf: &mut Vec<u8>, left: u64) -> Option<(Vec<u8>, u64)> {
    if buf.is_empty() {
        return None;
    }
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    let data: Vec<u8> = buf.drain(..n).collect();
    Some((data, left - n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes.
    fn decode_in_steps(framing: Framing, wire: &[u8], step: usize) -> Result<Vec<u8>, String> {
        let mut d = Decoder::new(framing);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf).map_err(|e| format!("{e:?}"))? {
                Decoded::Data(data) => out.extend(data),
                Decoded::End => return Ok(out),
                Decoded::NeedMore if fed < wire.len() => {
                    let next = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
                Decoded::NeedMore => return Err("ended early".into()),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let wire = b"5\r\nhello\r\n1a;ext=1\r\n{\"type\":\"BOOKMARK\"}\n......\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for step in 1..wire.len() {
            assert_eq!(
                decode_in_steps(Framing::Chunked, wire, step).unwrap(),
                b"hello{\"type\":\"BOOKMARK\"}\n......",
                "step {step}"
            );
        }
    }

    #[test]
    fn chunks_larger_than_a_read_decode() {
        let big = "x".repeat(10_000);
        let wire = format!("{:x}\r\n{big}\r\n3\r\nabc\r\n0\r\n\r\n", big.len());
        for step in [1, 7, 4096, 5000, 20_000] {
            assert_eq!(
                decode_in_steps(Framing::Chunked, wire.as_bytes(), step).unwrap(),
                format!("{big}abc").as_bytes(),
                "step {step}"
            );
        }
    }

    #[test]
    fn lengths_and_bad_framing() {
        assert_eq!(
            decode_in_steps(Framing::Length(3), b"abc", 1).unwrap(),
            b"abc"
        );
        assert_eq!(decode_in_steps(Framing::Length(0), b"", 1).unwrap(), b"");
        for bad in [&b"zz\r\nab\r\n0\r\n\r\n"[..], b"2\r\nabXX0\r\n\r\n"] {
            assert!(decode_in_steps(Framing::Chunked, bad, 3).is_err());
        }
        let endless = vec![b'1'; 4096];
        assert!(decode_in_steps(Framing::Chunked, &endless, 100).is_err());
    }

    #[test]
    fn heads_are_read_case_blind() {
        let head = parse_head(
            b"HTTP/1.1 302 Found\r\nlocation: https://elsewhere/\r\nTRANSFER-ENCODING: chunked",
        )
        .unwrap();
        assert_eq!(head.status, 302);
        assert_eq!(head.location.as_deref(), Some("https://elsewhere/"));
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(
            parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 12")
                .unwrap()
                .framing,
            Framing::Length(12)
        );
        assert!(parse_head(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1").is_err());
    }
}
