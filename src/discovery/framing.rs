//! RFC 9112 framing of a watch's answer, without I/O: the head parsed by
//! httparse, then the body's pieces cut out of the bytes received so far.
//! Watches are framed here rather than by hyper for memory alone: hyper's
//! client connection keeps about 26 KiB per connection (its read and write
//! buffers and its request channel, measured with massif), and a watch
//! holds its connection for hours; this keeps only what has arrived and
//! not yet been handed on (usually nothing). Lists still use hyper.
//!
//! Everything here is bounded: the head (`MAX_HEAD_BYTES`), a chunk's size
//! line, and the trailers (`MAX_TRAILER_BYTES`); what is over a bound or
//! not HTTP/1.1 is refused with promfed's own words, never the server's
//! bytes.

use std::time::Duration;

use bytes::Bytes;

use super::transport::Failure;

/// The longest head, 1xx heads before it included: a watch answer's head
/// is about 300 bytes.
pub const MAX_HEAD_BYTES: usize = 4 << 10;
/// The most headers in one head.
const MAX_HEADERS: usize = 64;
/// A chunk's size line, extensions included.
const MAX_SIZE_LINE: usize = 1 << 10;
/// All trailer lines together.
pub const MAX_TRAILER_BYTES: usize = 16 << 10;

/// The parts of a final head that promfed reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub location: Option<String>,
    pub retry_after: Option<Duration>,
    pub body: BodyFraming,
}

/// How the body's end is found (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// 1xx, 204 and 304: no body at all.
    Empty,
    Chunked,
    Length(u64),
    /// Up to the end of the connection.
    UntilClose,
}

/// Parses the final head at the start of `received`, skipping 1xx heads:
/// the head and how many bytes it took, or `None` while it is incomplete.
pub fn parse_head(received: &[u8]) -> Result<Option<(Head, usize)>, Failure> {
    let mut from = 0;
    loop {
        let rest = received.get(from..).unwrap_or_default();
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let used = match response.parse(rest) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Failure::Limit(format!(
                    "a head of more than {MAX_HEADERS} headers"
                )));
            }
            Err(e) => {
                return Err(Failure::Protocol(format!(
                    "a head that is not HTTP/1.1: {e}"
                )));
            }
        };
        let status = response.code.unwrap_or_default();
        from += used;
        match status {
            // 101 would switch protocols promfed never asked for.
            101 => return Err(Failure::Protocol("101 Switching Protocols, unasked".into())),
            100..=199 => continue,
            _ => {}
        }
        let head = Head {
            status,
            location: header(response.headers, "location").map(str::to_string),
            retry_after: header(response.headers, "retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
            body: body_framing(status, response.headers)?,
        };
        return Ok(Some((head, from)));
    }
}

/// The first value of `name`, when it is text.
fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// Every comma-separated element of every `name` header, trimmed.
fn list_elements<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
}

fn body_framing(status: u16, headers: &[httparse::Header<'_>]) -> Result<BodyFraming, Failure> {
    if matches!(status, 204 | 304) {
        return Ok(BodyFraming::Empty);
    }
    // Empty list elements are allowed, and ignored (RFC 9110 §5.6.1).
    let codings: Vec<&[u8]> = list_elements(headers, "transfer-encoding")
        .filter(|e| !e.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        let chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
        if codings[..codings.len() - 1].iter().any(chunked) {
            return Err(Failure::Protocol(
                "`chunked` that is not the last coding".into(),
            ));
        }
        // A coding other than chunked last: the body ends with the
        // connection (RFC 9112 §6.3, 4.); Content-Length is ignored.
        return Ok(if chunked(last) {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        });
    }
    let mut length = None;
    for value in list_elements(headers, "content-length") {
        let parsed = std::str::from_utf8(value)
            .ok()
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Failure::Protocol("a Content-Length that is not a number".into()))?;
        if length.is_some_and(|l| l != parsed) {
            return Err(Failure::Protocol(
                "conflicting Content-Length headers".into(),
            ));
        }
        length = Some(parsed);
    }
    Ok(length.map_or(BodyFraming::UntilClose, BodyFraming::Length))
}

/// What the next step of the body gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Data(Bytes),
    /// More bytes are needed.
    More,
    /// The body is complete.
    End,
}

/// The body's framing, step by step over the bytes received.
#[derive(Debug)]
pub struct Body {
    state: State,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk's size line.
    Size,
    /// Data left in this chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
    /// Bytes left of a Content-Length body.
    Length(u64),
    UntilClose,
    Done,
}

impl Body {
    pub fn new(framing: BodyFraming) -> Body {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Chunked => State::Size,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::UntilClose => State::UntilClose,
        };
        Body {
            state,
            trailer_bytes: 0,
        }
    }

    /// The next piece out of `received`, whose used bytes are removed.
    pub fn step(&mut self, received: &mut Vec<u8>) -> Result<Piece, Failure> {
        loop {
            let before = (self.state, received.len());
            match self.state {
                State::Done => return Ok(Piece::End),
                State::Data(left) | State::Length(left) if !received.is_empty() => {
                    let n = usize::try_from(left).map_or(received.len(), |l| l.min(received.len()));
                    let data = take(received, n);
                    let left = left - n as u64;
                    self.state = match (self.state, left) {
                        (State::Data(_), 0) => State::DataEnd,
                        (State::Data(_), _) => State::Data(left),
                        (_, 0) => State::Done,
                        _ => State::Length(left),
                    };
                    return Ok(Piece::Data(data));
                }
                State::UntilClose if !received.is_empty() => {
                    return Ok(Piece::Data(take(received, received.len())));
                }
                State::Size => self.size_line(received)?,
                State::DataEnd => self.data_end(received)?,
                State::Trailers => self.trailer_line(received)?,
                _ => {}
            }
            // No step without progress: wait for bytes.
            if (self.state, received.len()) == before {
                return Ok(Piece::More);
            }
        }
    }

    /// The connection ended: the end of an `UntilClose` body, and a
    /// truncated answer otherwise.
    pub fn at_close(&mut self) -> Result<Piece, Failure> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(Piece::End)
            }
            _ => Err(Failure::Protocol(
                "the connection closed before the answer's end".into(),
            )),
        }
    }

    fn size_line(&mut self, received: &mut Vec<u8>) -> Result<(), Failure> {
        match httparse::parse_chunk_size(received) {
            Ok(httparse::Status::Complete((used, size))) => {
                consume(received, used);
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::Data(size)
                };
                Ok(())
            }
            Ok(httparse::Status::Partial) if received.len() > MAX_SIZE_LINE => Err(Failure::Limit(
                format!("a chunk size line over {MAX_SIZE_LINE} bytes"),
            )),
            Ok(httparse::Status::Partial) => Ok(()),
            Err(_) => Err(Failure::Protocol("a chunk size that is not one".into())),
        }
    }

    fn data_end(&mut self, received: &mut Vec<u8>) -> Result<(), Failure> {
        match received.get(..2) {
            None if received.first().is_none_or(|b| *b == b'\r') => Ok(()),
            Some(b"\r\n") => {
                consume(received, 2);
                self.state = State::Size;
                Ok(())
            }
            _ => Err(Failure::Protocol("a chunk longer than its size".into())),
        }
    }

    fn trailer_line(&mut self, received: &mut Vec<u8>) -> Result<(), Failure> {
        let line = received.iter().position(|b| *b == b'\n').map(|end| end + 1);
        // A partial line counts too, or endless bytes without a newline
        // would be waited on for ever.
        if self.trailer_bytes + line.unwrap_or(received.len()) > MAX_TRAILER_BYTES {
            return Err(Failure::Limit(format!(
                "trailers over {} KiB",
                MAX_TRAILER_BYTES >> 10
            )));
        }
        let Some(len) = line else {
            return Ok(());
        };
        self.trailer_bytes += len;
        let line = take(received, len);
        if line.as_ref() == b"\r\n" || line.as_ref() == b"\n" {
            self.state = State::Done;
        }
        Ok(())
    }
}

/// Drops the first `n` bytes of `received`; emptied, it gives its memory
/// back.
fn consume(received: &mut Vec<u8>, n: usize) {
    received.drain(..n.min(received.len()));
    if received.is_empty() {
        *received = Vec::new();
    }
}

/// The first `n` bytes of `received`, removed from it. A buffer emptied
/// gives its memory back: an idle watch holds none.
fn take(received: &mut Vec<u8>, n: usize) -> Bytes {
    if n == received.len() {
        return Bytes::from(std::mem::take(received));
    }
    let rest = received.split_off(n);
    Bytes::from(std::mem::replace(received, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head, then the body's data and how it ended, feeding `answer`
    /// `step` bytes at a time.
    fn frame(answer: &[u8], step: usize) -> Result<(Head, Vec<u8>), Failure> {
        let mut received = Vec::new();
        let mut pieces = answer.chunks(step);
        let (head, used) = loop {
            if let Some(done) = parse_head(&received)? {
                break done;
            }
            match pieces.next() {
                Some(p) => received.extend_from_slice(p),
                None => return Err(Failure::Protocol("no head".into())),
            }
        };
        received.drain(..used);
        let mut body = Body::new(head.body);
        let mut data = Vec::new();
        loop {
            match body.step(&mut received)? {
                Piece::Data(d) => data.extend_from_slice(&d),
                Piece::End => return Ok((head, data)),
                Piece::More => match pieces.next() {
                    Some(p) => received.extend_from_slice(p),
                    None => {
                        body.at_close()?;
                        return Ok((head, data));
                    }
                },
            }
        }
    }

    fn body_of(answer: &str) -> Result<Vec<u8>, Failure> {
        let whole = frame(answer.as_bytes(), answer.len())?;
        // Byte by byte, the same.
        let single = frame(answer.as_bytes(), 1)?;
        assert_eq!(whole, single);
        Ok(whole.1)
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn chunks_with_extensions_and_trailers_give_their_data() {
        let answer = format!(
            "{CHUNKED}3;name=value\r\n{{\"a\r\nA\r\n\":1}}\n{{\"b\":\r\n1\r\n2\r\n0\r\nX-Trailer: 1\r\n\r\n"
        );
        assert_eq!(body_of(&answer).unwrap(), b"{\"a\":1}\n{\"b\":2");
    }

    #[test]
    fn informational_heads_are_skipped_and_101_refused() {
        let answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(body_of(answer).unwrap(), b"{}");
        let switching = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert!(matches!(body_of(switching), Err(Failure::Protocol(_))));
    }

    #[test]
    fn no_content_and_not_modified_have_no_body() {
        for status in ["204 No Content", "304 Not Modified"] {
            let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\nnot a body");
            assert_eq!(body_of(&answer).unwrap(), b"");
        }
    }

    #[test]
    fn lengths_must_agree_and_be_numbers() {
        let same = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\n{}";
        assert_eq!(body_of(same).unwrap(), b"{}");
        for bad in ["2\r\nContent-Length: 3", "+2", "0x2", "2 2", ""] {
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n{{}}");
            assert!(
                matches!(body_of(&answer), Err(Failure::Protocol(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn transfer_encoding_is_a_list_with_chunked_last() {
        let listed = "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: CHUNKED\r\nContent-Length: 1\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(body_of(listed).unwrap(), b"{}");
        let not_last = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert!(matches!(body_of(not_last), Err(Failure::Protocol(_))));
        // Not chunked at all: the body ends with the connection.
        let other = "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunkedx\r\n\r\n{}";
        assert_eq!(body_of(other).unwrap(), b"{}");
    }

    #[test]
    fn a_truncated_or_overlong_chunk_is_refused() {
        let truncated = format!("{CHUNKED}5\r\n{{}}");
        assert!(matches!(body_of(&truncated), Err(Failure::Protocol(_))));
        let overlong = format!("{CHUNKED}1\r\n{{}}\r\n0\r\n\r\n");
        assert!(matches!(body_of(&overlong), Err(Failure::Protocol(_))));
        let not_hex = format!("{CHUNKED}zz\r\n");
        assert!(matches!(body_of(&not_hex), Err(Failure::Protocol(_))));
        let huge = format!("{CHUNKED}ffffffffffffffffff\r\n");
        assert!(matches!(body_of(&huge), Err(Failure::Protocol(_))));
    }

    #[test]
    fn endless_size_lines_and_trailers_stop_at_their_bounds() {
        let size_line = format!("{CHUNKED}1;{}", "x".repeat(MAX_SIZE_LINE + 1));
        assert!(matches!(body_of(&size_line), Err(Failure::Limit(_))));
        let many_lines = format!("{CHUNKED}0\r\n{}", "X-T: 1\r\n".repeat(4096));
        assert!(matches!(body_of(&many_lines), Err(Failure::Limit(_))));
        let one_endless_line = format!("{CHUNKED}0\r\nX-T: {}", "1".repeat(MAX_TRAILER_BYTES));
        assert!(matches!(body_of(&one_endless_line), Err(Failure::Limit(_))));
    }

    #[test]
    fn too_many_headers_are_a_limit_and_garbage_is_not_http() {
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X-A: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(body_of(&many), Err(Failure::Limit(_))));
        let garbage = "HTTP/1.1 abc xxx\u{e9}\u{e9}\r\n\r\n";
        assert!(matches!(body_of(garbage), Err(Failure::Protocol(_))));
    }

    #[test]
    fn a_body_until_close_ends_with_the_connection() {
        let answer = "HTTP/1.0 200 OK\r\n\r\n{\"a\":1}";
        assert_eq!(body_of(answer).unwrap(), b"{\"a\":1}");
    }

    /// Emptied, the buffer gives its memory back.
    #[test]
    fn an_idle_body_holds_no_buffer() {
        let mut received = b"2\r\n{}\r\n".to_vec();
        let mut body = Body::new(BodyFraming::Chunked);
        assert_eq!(
            body.step(&mut received).unwrap(),
            Piece::Data(Bytes::from_static(b"{}"))
        );
        assert_eq!(body.step(&mut received).unwrap(), Piece::More);
        assert_eq!(received.capacity(), 0);
    }
}
