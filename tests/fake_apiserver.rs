//! The fake API server must behave like a real one wherever promfed or
//! Prometheus can tell (shared/reference/fake-kube-apiserver.md): TLS with
//! its CA, 401 and 403 with Status bodies, lists, watches, and proxy paths
//! forwarded to a real node-exporter.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

fn curl(fake: &FakeCluster, path: &str, auth: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"])
        .arg(fake.ca())
        .args(auth)
        .arg(format!("{}{path}", fake.url()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

#[test]
fn the_fake_answers_like_a_real_api_server() {
    let root = tempfile::tempdir().unwrap();
    let exporter = NodeExporter::start(root.path());
    let fake = FakeCluster::start(root.path(), "fake", &["node-a", "node-b"], &exporter);
    let bearer = format!("Authorization: Bearer {}", fake.token);
    let token: &[&str] = &["-H", &bearer];

    // 401 without credentials, with a Status body.
    let (code, body) = curl(&fake, "/api/v1/nodes", &[]);
    assert_eq!(code, 401);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("Unauthorized"))
    );

    // A list, with kind, apiVersion and a resourceVersion.
    let (code, body) = curl(&fake, "/api/v1/nodes?limit=500&resourceVersion=0", token);
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "NodeList");
    assert!(list["metadata"]["resourceVersion"].as_str().is_some());
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-a", "node-b"]);
    let version: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // A client certificate signed by the cluster's CA is a user too.
    let (cert, key) = (fake.pki("client.crt"), fake.pki("client.key"));
    let client: &[&str] = &[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    assert_eq!(curl(&fake, "/api/v1/nodes", client).0, 200);

    // node-exporter through the pod proxy is the real node-exporter.
    let (code, body) = curl(
        &fake,
        "/api/v1/namespaces/monitoring/pods/node-exporter-node-a:9100/proxy/metrics",
        token,
    );
    assert_eq!(code, 200);
    assert!(body.contains("node_cpu_seconds_total"));

    // A watch streams what changes: start one, then add a node.
    let stream = root.path().join("watch.out");
    let mut watch = Command::new("curl")
        .args(["-sN", "--max-time", "8", "--cacert"])
        .arg(fake.ca())
        .args(token)
        .arg(format!("{}/api/v1/nodes?allowWatchBookmarks=true&resourceVersion={version}&timeoutSeconds=4&watch=true", fake.url()))
        .stdout(Stdio::from(std::fs::File::create(&stream).unwrap()))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    fake.set_state(fake.state(&["node-a", "node-b", "node-c"], exporter.port));
    let status = watch.wait().unwrap();
    assert!(status.success(), "the watch ends cleanly at timeoutSeconds");
    let events: Vec<Value> = std::fs::read_to_string(&stream)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let added: Vec<&Value> = events.iter().filter(|e| e["type"] == "ADDED").collect();
    assert_eq!(added.len(), 1, "{events:?}");
    assert_eq!(added[0]["object"]["kind"], "Node");
    assert_eq!(added[0]["object"]["apiVersion"], "v1");
    assert_eq!(added[0]["object"]["metadata"]["name"], "node-c");
    assert!(
        events.iter().any(|e| e["type"] == "BOOKMARK"),
        "bookmarks were asked for: {events:?}"
    );

    // 403 names the user, the verb and the resource.
    let mut state = fake.current_state();
    state["tokens"][&fake.token]["deny"] = serde_json::json!(["list nodes"]);
    fake.set_state(state);
    let (code, body) = curl(&fake, "/api/v1/nodes", token);
    assert_eq!(code, 403);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["message"],
        "nodes is forbidden: User \"system:serviceaccount:monitoring:prometheus\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
    );
}

#[test]
fn a_watch_from_a_forgotten_version_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let exporter = NodeExporter::start(root.path());
    // A history of two events, so that a few changes forget version 1.
    let fake = FakeCluster::start_with_env(
        root.path(),
        "fake",
        &["n-1"],
        &exporter,
        &[("FAKE_APISERVER_HISTORY", "2")],
    );
    let bearer = format!("Authorization: Bearer {}", fake.token);
    let token: &[&str] = &["-H", &bearer];
    for n in 2..6 {
        let nodes: Vec<String> = (1..=n).map(|i| format!("n-{i}")).collect();
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        fake.set_state(fake.state(&nodes, exporter.port));
        // The fake notices a new state on its next request.
        assert_eq!(curl(&fake, "/version", token).0, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, body) = curl(
        &fake,
        "/api/v1/nodes?watch=true&resourceVersion=1&timeoutSeconds=1",
        token,
    );
    assert_eq!(code, 410, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "Expired");
}
