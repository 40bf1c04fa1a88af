//! A watch's exchange on promfed's own framing (`framing.rs` says why):
//! the request written out whole, the answer read in pieces whose buffer
//! lives on the stack only while one read completes. Between events a
//! watch holds its TLS stream and the bytes not yet handed on, and no
//! buffer of its own.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::framing::{self, Head, MAX_HEAD_BYTES, Piece};
use super::transport::{Failure, Request, Times};

/// The most read from the stream at once.
const PIECE: usize = 4 << 10;

/// The byte stream a watch reads (TLS in promfed; a pipe in the tests).
pub trait Wire: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Wire for T {}

/// The body of a watch's answer, read as it comes.
pub struct LeanBody {
    stream: Box<dyn Wire>,
    /// Received and not yet handed on: empty, without capacity, while
    /// the watch waits.
    received: Vec<u8>,
    framing: framing::Body,
    silence: Duration,
}

/// Sends `request` on `stream` and reads the answer's head, within
/// `times.head`.
pub async fn exchange<S: Wire + 'static>(
    mut stream: S,
    authority: &str,
    request: Request<'_>,
    times: Times,
) -> Result<(Head, LeanBody), Failure> {
    let bytes = request_bytes(authority, &request)?;
    let head = async {
        stream.write_all(&bytes).await.map_err(Failure::Io)?;
        stream.flush().await.map_err(Failure::Io)?;
        read_head(&mut stream).await
    };
    let (head, received) = tokio::time::timeout(times.head, head)
        .await
        .map_err(|_| Failure::Timeout("the answer's head", times.head))??;
    let body = LeanBody {
        stream: Box::new(stream),
        received,
        framing: framing::Body::new(head.body),
        silence: times.silence,
    };
    Ok((head, body))
}

/// The final head, and the bytes after it.
async fn read_head<S: Wire>(stream: &mut S) -> Result<(Head, Vec<u8>), Failure> {
    let mut received = Vec::new();
    loop {
        if let Some((head, used)) = framing::parse_head(&received)? {
            if used <= MAX_HEAD_BYTES {
                received.drain(..used);
                return Ok((head, received));
            }
        }
        if received.len() > MAX_HEAD_BYTES {
            return Err(Failure::Limit(format!(
                "a watch answer's head over {} KiB",
                MAX_HEAD_BYTES >> 10
            )));
        }
        let piece = read_piece(stream).await.map_err(Failure::Io)?;
        if piece.is_empty() {
            return Err(Failure::Protocol(
                "the connection closed before the answer's head".into(),
            ));
        }
        received.extend_from_slice(&piece);
    }
}

impl LeanBody {
    /// The next piece of the body; `None` at its end. Cancel-safe: a
    /// read either completes within one poll or takes nothing.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Failure> {
        loop {
            match self.framing.step(&mut self.received)? {
                Piece::Data(data) => return Ok(Some(data)),
                Piece::End => return Ok(None),
                Piece::More => {}
            }
            let piece = tokio::time::timeout(self.silence, read_piece(&mut *self.stream))
                .await
                .map_err(|_| Failure::Timeout("the next piece of the answer", self.silence))?
                .map_err(Failure::Io)?;
            if piece.is_empty() {
                self.framing.at_close()?;
                return Ok(None);
            }
            self.received.extend_from_slice(&piece);
        }
    }
}

/// What one read gives (empty at the stream's end). The buffer is the
/// poll's own: a read that must wait holds none.
async fn read_piece<R: AsyncRead + Unpin + ?Sized>(stream: &mut R) -> std::io::Result<Vec<u8>> {
    std::future::poll_fn(|cx| {
        let mut space = [0u8; PIECE];
        let mut buf = ReadBuf::new(&mut space);
        match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().to_vec())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The request as bytes. Its parts are promfed's own; a character HTTP
/// does not allow (a line break in a token, a resource version a server
/// shaped) is refused, naming the part, never quoting it.
fn request_bytes(authority: &str, request: &Request<'_>) -> Result<Vec<u8>, Failure> {
    if !request.target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(unformable("target"));
    }
    let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.target).into_bytes();
    let length = request.body.len().to_string();
    let mut headers = vec![
        ("Host", authority),
        ("User-Agent", concat!("promfed/", env!("CARGO_PKG_VERSION"))),
        ("Connection", "close"),
    ];
    if !request.body.is_empty() {
        headers.push(("Content-Type", "application/json"));
        headers.push(("Content-Length", &length));
    }
    headers.extend(request.headers.iter().copied());
    for (name, value) in headers {
        // A field value: visible ASCII, spaces and tabs (RFC 9110 §5.5).
        if !value
            .bytes()
            .all(|b| b == b'\t' || b == b' ' || b.is_ascii_graphic())
        {
            return Err(unformable(name));
        }
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&request.body);
    Ok(out)
}

fn unformable(part: &str) -> Failure {
    Failure::Protocol(format!(
        "cannot form the request: its {part} holds a character HTTP does not allow"
    ))
}
