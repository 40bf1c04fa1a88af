//! Entry points for the fuzzers (`fuzz/`, cargo-fuzz) and the property
//! tests below (proptest, in every test run): whatever bytes an API server
//! sends, the transport, the watch-line splitter and the object decoders
//! return an answer or an error, never panic, and finish in time bounded by
//! the input. ServiceMonitors and PodMonitors too: any bytes or any JSON
//! of their shape decode or fail, and the jobs of those that decode are the
//! same made from the objects and from the state file they are kept in.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{self, RawEvent};
use super::decode;
use super::monitors::{self, objects::Monitor};
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
            // A monitor watch's objects, and its pods.
            if let Ok(m) = decode::from_value::<Monitor>(&event.object) {
                let _ = monitor_jobs(std::slice::from_ref(&m));
            }
            let _ = decode::from_value::<monitors::targets::Pod>(&event.object);
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
        decode::from_slice::<List<Monitor>>(bytes).is_ok(),
        decode::from_slice::<List<monitors::targets::Pod>>(bytes).is_ok(),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}

/// Decodes `bytes` as a list of ServiceMonitors and as one monitor, and
/// makes their jobs, as discovery does and as a transaction does from the
/// state file those monitors are kept in: `Ok(jobs)`, or `Err` when the two
/// disagree (a decode failure is no monitors, `Ok(0)`).
pub fn monitor_objects(bytes: &[u8]) -> Result<usize, String> {
    let mut jobs = 0;
    if let Ok(list) = decode::from_slice::<List<Monitor>>(bytes) {
        jobs += monitor_jobs(&list.items)?;
    }
    if let Ok(m) = decode::from_slice::<Monitor>(bytes) {
        jobs += monitor_jobs(std::slice::from_ref(&m))?;
    }
    Ok(jobs)
}

/// The jobs of `found`, from the objects and from their state text alike.
fn monitor_jobs(found: &[Monitor]) -> Result<usize, String> {
    let wanted = crate::config::monitors::Monitors {
        namespaces: vec![],
        selector: vec![],
    };
    let (jobs, _notes) = monitors::jobs::jobs(&wanted, found);
    let state = serde_json::to_vec(found).map_err(|e| format!("state does not encode: {e}"))?;
    let kept = monitors::jobs_of_state(&wanted, &state)?;
    if kept != jobs {
        return Err(format!(
            "{} jobs from the objects, {} from their state",
            jobs.len(),
            kept.len()
        ));
    }
    Ok(jobs.len())
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

        #[test]
        fn any_bytes_as_monitors_decode_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            prop_assert!(monitor_objects(&bytes).is_ok());
        }

        #[test]
        fn any_monitor_shaped_json_makes_the_same_jobs_from_its_state(
            monitor in monitor_json(),
            kind in prop_oneof![Just("Service"), Just("Pod")],
        ) {
            let mut monitor = monitor;
            if let Some(m) = monitor.as_object_mut() {
                m.insert("promfedKind".into(), kind.into());
            }
            let list = serde_json::json!({"items": [monitor.clone(), monitor.clone()]});
            let made = monitor_objects(list.to_string().as_bytes());
            prop_assert_eq!(made.map(|_| ()), Ok(()));
            let event = serde_json::json!({"type": "ADDED", "object": monitor});
            let _ = watch_lines(format!("{event}\n").as_bytes(), &[]);
        }
    }

    /// JSON with the monitors' field names at every depth, and values of
    /// every type (names with line breaks, bad regexes, huge numbers).
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        const KEYS: &[&str] = &[
            "metadata",
            "name",
            "namespace",
            "labels",
            "spec",
            "jobLabel",
            "endpoints",
            "podMetricsEndpoints",
            "port",
            "portNumber",
            "targetPort",
            "path",
            "scheme",
            "params",
            "interval",
            "scrapeTimeout",
            "honorLabels",
            "relabelings",
            "metricRelabelings",
            "sourceLabels",
            "separator",
            "targetLabel",
            "regex",
            "modulus",
            "replacement",
            "action",
            "selector",
            "matchLabels",
            "matchExpressions",
            "key",
            "operator",
            "values",
            "namespaceSelector",
            "any",
            "matchNames",
            "sampleLimit",
            "tlsConfig",
            "ca",
            "keySecret",
            "basicAuth",
            "bearerTokenSecret",
            "oauth2",
            "proxyUrl",
            "promfedKind",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            prop_oneof![
                Just("http".to_string()),
                Just("5s".to_string()),
                Just("(unclosed".to_string()),
                Just("bad/name\nx".to_string()),
                Just("In".to_string()),
                Just("drop".to_string()),
                Just("hashmod".to_string()),
                Just("Service".to_string()),
                "[ -~\n\u{e9}]{0,24}",
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                    |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                ),
            ]
        })
    }

    /// An endpoint that may well make a job: a port, and any relabelings,
    /// interval and TLS.
    fn endpoint_json() -> impl Strategy<Value = serde_json::Value> {
        (
            prop_oneof![Just("http"), Just("metrics"), Just("bad port\n")],
            prop_oneof![4 => Just(serde_json::Value::Null), 1 => any_json()],
            prop_oneof![2 => Just(serde_json::Value::Null), 2 => Just("5s".into()), 2 => Just("1h".into()), 1 => any_json()],
            prop_oneof![4 => Just(serde_json::Value::Null), 1 => any_json()],
        )
            .prop_map(|(port, relabelings, interval, tls)| {
                serde_json::json!({"port": port, "relabelings": relabelings, "interval": interval, "tlsConfig": tls})
            })
    }

    /// A monitor's outline (metadata with a name, a spec with endpoints)
    /// whose every value may be anything.
    fn monitor_json() -> impl Strategy<Value = serde_json::Value> {
        (
            "[a-z]{1,8}|[ -~\n]{0,12}",
            "[a-z]{1,8}",
            prop_oneof![
                3 => Just(serde_json::json!({"matchLabels": {"app": "web"}})),
                1 => Just(serde_json::json!({})),
                1 => any_json(),
            ],
            proptest::collection::vec(prop_oneof![1 => any_json(), 6 => endpoint_json()], 0..3),
            prop_oneof![6 => Just(serde_json::Value::Null), 1 => any_json()],
        )
            .prop_map(|(name, namespace, selector, endpoints, extra)| {
                serde_json::json!({
                    "metadata": {"name": name, "namespace": namespace, "labels": {"release": "prom"}},
                    "spec": {
                        "selector": selector,
                        "endpoints": endpoints.clone(),
                        "podMetricsEndpoints": endpoints,
                        "namespaceSelector": extra,
                    },
                })
            })
    }

    #[test]
    fn a_decodable_monitor_makes_jobs_from_its_state_too() {
        let list = br#"{"items":[{"metadata":{"name":"web","namespace":"shop"},"spec":{"selector":{"matchLabels":{"app":"web"}},"endpoints":[{"port":"http"},{"port":"admin","basicAuth":{}}]}}]}"#;
        assert_eq!(
            monitor_objects(list),
            Ok(1),
            "basicAuth's endpoint is skipped"
        );
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
