//! Entry points for the fuzzers (`fuzz/`, cargo-fuzz) and the property
//! tests below (proptest, in every test run): whatever bytes an API server
//! sends, the transport, the watch-line splitter and the object decoders
//! return an answer or an error, never panic, and finish in time bounded by
//! the input.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{self, RawEvent};
use super::decode;
use super::objects::{EndpointSlice, Endpoints, List, Node};
use super::pods::Pod;
use super::transport::{self, Times};

/// Sends a GET over a pipe whose other end answers `server` and closes,
/// then reads the answer as a list would (hyper): the status and the body's
/// length, or the failure.
pub fn answer(server: &[u8]) -> Result<(u16, usize), String> {
    read_over_pipe(server, transport::Reading::Bulk).map(|(status, body)| (status, body.len()))
}

/// The same, read as a watch would (promfed's own framing).
pub fn lean_answer(server: &[u8]) -> Result<(u16, usize), String> {
    read_over_pipe(server, transport::Reading::Lean).map(|(status, body)| (status, body.len()))
}

/// Where both framings read `server` whole, they read the same status and
/// body: hyper is the reference for promfed's own framing.
pub fn framings_agree(server: &[u8]) -> Result<(), String> {
    let hyper = read_over_pipe(server, transport::Reading::Bulk);
    let lean = read_over_pipe(server, transport::Reading::Lean);
    match (hyper, lean) {
        (Ok(h), Ok(l)) if h != l => Err(format!("hyper read {h:?}, promfed's framing {l:?}")),
        _ => Ok(()),
    }
}

fn read_over_pipe(server: &[u8], reading: transport::Reading) -> Result<(u16, Vec<u8>), String> {
    // Real time: the pipe's end is an EOF, so no timer is ever waited on.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let server = server.to_vec();
    runtime.block_on(async move {
        let (ours, mut theirs) = tokio::io::duplex(64 << 10);
        tokio::spawn(async move {
            // A server answers once it has the request's head (hyper takes
            // bytes before a request for a broken connection).
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match theirs.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = theirs.write_all(&server).await;
            let _ = theirs.shutdown().await;
            // Keep the read side open until the client is done with it.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let request = transport::Request {
            method: "GET",
            target: "/api/v1/nodes?limit=500",
            headers: &[("Accept", "application/json")],
            body: Vec::new(),
            reading,
        };
        let times = Times {
            connect: Duration::from_secs(5),
            head: Duration::from_secs(10),
            silence: Duration::from_secs(10),
        };
        let mut answer = transport::exchange(ours, "127.0.0.1:6443", request, times)
            .await
            .map_err(|f| format!("{f:?}"))?;
        let mut read = Vec::new();
        while let Some(piece) = answer.body.next().await.map_err(|f| format!("{f:?}"))? {
            read.extend_from_slice(&piece);
        }
        Ok((answer.status, read))
    })
}

/// Splits `bytes`, cut into pieces at `cuts`, into watch lines and decodes
/// each event and its object as every watch of promfed would.
pub fn watch_lines(bytes: &[u8], cuts: &[usize]) -> usize {
    let mut lines = client::Lines::default();
    let mut decoded = 0;
    let mut from = 0;
    let mut take = |line: Vec<u8>| {
        if let Ok(event) = decode::from_slice::<RawEvent>(&line) {
            decoded += 1;
            let _ = decode::from_value::<Node>(&event.object);
            let _ = decode::from_value::<EndpointSlice>(&event.object);
            let _ = decode::from_value::<Pod>(&event.object);
        }
    };
    for cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let to = (*cut).clamp(from, bytes.len());
        lines.push(&bytes[from..to]);
        from = to;
        while let Some(line) = lines.next_line() {
            take(line);
        }
    }
    decoded
}

/// Decodes `bytes` as each list and object promfed reads.
pub fn objects(bytes: &[u8]) -> usize {
    [
        decode::from_slice::<List<Node>>(bytes).is_ok(),
        decode::from_slice::<List<EndpointSlice>>(bytes).is_ok(),
        decode::from_slice::<List<Pod>>(bytes).is_ok(),
        decode::from_slice::<Endpoints>(bytes).is_ok(),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Answers shaped like HTTP, so that the fuzzer's bytes get past the
    /// status line: a head of known and random headers, then any body.
    fn http_answer() -> impl Strategy<Value = Vec<u8>> {
        let status = prop_oneof![
            Just("HTTP/1.1 200 OK".to_string()),
            Just("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK".to_string()),
            Just("HTTP/1.1 204 No Content".to_string()),
            "HTTP/1\\.[01] [0-9]{3} [ -~é]{0,120}",
        ];
        let header = prop_oneof![
            Just("Transfer-Encoding: chunked".to_string()),
            Just("Transfer-Encoding: gzip, chunked".to_string()),
            "Content-Length: [0-9]{1,4}",
            "[A-Za-z-]{1,12}: [ -~]{0,40}",
        ];
        let body = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            "([0-9a-f]{1,3}(;[a-z=]{0,8})?\r\n[ -~]{0,40}\r\n){0,4}0\r\n([A-Za-z-]{1,8}: [ -~]{0,20}\r\n){0,3}\r\n"
                .prop_map(String::into_bytes),
        ];
        (status, proptest::collection::vec(header, 0..4), body).prop_map(|(s, h, b)| {
            let mut wire = format!("{s}\r\n{}\r\n", h.join("\r\n")).into_bytes();
            if !h.is_empty() {
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend(b);
            wire
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_as_an_answer_end_in_an_answer_or_an_error(wire in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..1024),
            http_answer(),
        ]) {
            prop_assert_eq!(framings_agree(&wire), Ok(()));
        }

        #[test]
        fn any_bytes_as_watch_lines_decode_or_fail(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(0usize..2048, 0..8),
        ) {
            let _ = watch_lines(&bytes, &cuts);
        }

        #[test]
        fn any_bytes_as_objects_decode_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = objects(&bytes);
        }
    }

    #[test]
    fn lines_come_out_whole_whatever_the_pieces() {
        let wire =
            b"{\"type\":\"ADDED\",\"object\":{}}\n\n{\"type\":\"DELETED\",\"object\":{}}\n{\"ty";
        for step in 1..wire.len() {
            let cuts: Vec<usize> = (step..wire.len()).step_by(step).collect();
            assert_eq!(watch_lines(wire, &cuts), 2, "step {step}");
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        framing_follows_rfc_9112_in(answer);
        framing_follows_rfc_9112_in(lean_answer);
    }

    /// One of the two readers: `answer` (hyper) or `lean_answer`.
    type Reader = fn(&[u8]) -> Result<(u16, usize), String>;

    fn framing_follows_rfc_9112_in(read: Reader) {
        let ok = |wire: &str| read(wire.as_bytes());
        let body = "{\"items\":[]}";
        // 1xx are skipped; the final answer counts.
        assert_eq!(
            ok(&format!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            Ok((200, body.len()))
        );
        // 204 and 304 have no body, whatever the headers say.
        for code in [204, 304] {
            assert_eq!(
                ok(&format!("HTTP/1.1 {code} X\r\nContent-Length: 5\r\n\r\n")),
                Ok((code, 0))
            );
        }
        // Two different lengths are refused.
        assert!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 12\r\n\r\nabc").is_err()
        );
        // Transfer-Encoding is a list: chunked must be its last member.
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            Ok((200, 3))
        );
        let not_chunked =
            ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: notchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_ne!(
            not_chunked,
            Ok((200, 3)),
            "read as chunked: {not_chunked:?}"
        );
        // A status line with a character across byte 100 is an error (the
        // old framing's panic).
        let line = format!("HTTP/1.1 abc {}éé\r\n\r\n", "x".repeat(86));
        assert!(ok(&line).is_err());
        // Trailers are bounded.
        let endless = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}",
            "X-T: a\r\n".repeat(10_000)
        );
        let e = ok(&endless).unwrap_err();
        assert!(e.contains("Limit") || e.contains("Protocol"), "{e}");
    }
}
