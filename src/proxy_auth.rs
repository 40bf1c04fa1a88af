//! What a 401 or 403 through the API server's pod or service proxy means
//! when the target itself sent it: the API server strips the client's
//! `Authorization` header before proxying (kubernetes/kubernetes#38775),
//! so an exporter that wants one (kube-rbac-proxy in front of
//! kube-state-metrics, for example) refuses every proxied scrape, whatever
//! promfed's token may do. `doctor` and `status` say it the same way.

/// The cause, in a sentence.
pub const CAUSE: &str = "the API server strips the Authorization header before proxying (kubernetes/kubernetes#38775), so a target that wants authentication (kube-rbac-proxy, for one) refuses every scrape through the proxy, whatever promfed's token may do";

/// The ways out.
pub const FIX: &str = "scrape a port that needs no token: the exporter's plain metrics port (kube-state-metrics without kube-rbac-proxy, `--port`), or kube-rbac-proxy with `--ignore-paths=/metrics`; then restrict that port with a NetworkPolicy that admits only the API server, and point the job's `port` (and `scheme`) at it";

/// Whether a refusal's body is the API server's own `Status` (RBAC, a bad
/// token): then the proxy never reached the target.
pub fn is_api_server_status(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("kind").and_then(|k| k.as_str()) == Some("Status"))
}

/// What a Prometheus `lastError` of a proxied job means, when it is a
/// refusal; Prometheus keeps no body, so both causes are named, the
/// likelier first.
pub fn explain_last_error(last_error: &str) -> Option<String> {
    let code = ["401", "403"]
        .into_iter()
        .find(|c| last_error.contains(&format!("HTTP status {c}")))?;
    Some(match code {
        "401" => format!(
            "401 through the proxy: {CAUSE} (were it promfed's token the API server refused, every job of this cluster would be down). Fix: {FIX}"
        ),
        _ => format!(
            "403 through the proxy: either promfed's identity may not use this proxy (`promfed doctor` asks, `promfed rbac` grants it) or {CAUSE}. Fix: {FIX}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_servers_refusal_is_told_from_the_targets() {
        assert!(is_api_server_status(
            br#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":403}"#
        ));
        assert!(!is_api_server_status(b"Unauthorized\n"));
        assert!(!is_api_server_status(br#"{"error":"no"}"#));
    }

    #[test]
    fn prometheus_last_errors_of_refusals_are_explained() {
        let e = explain_last_error("server returned HTTP status 401 Unauthorized").unwrap();
        assert!(
            e.starts_with("401 through the proxy: the API server strips the Authorization header"),
            "{e}"
        );
        assert!(
            e.contains("--ignore-paths") && e.contains("NetworkPolicy"),
            "{e}"
        );
        assert!(
            explain_last_error("server returned HTTP status 403 Forbidden")
                .unwrap()
                .contains("promfed rbac")
        );
        assert_eq!(
            explain_last_error("server returned HTTP status 503 Service Unavailable"),
            None
        );
        assert_eq!(explain_last_error("context deadline exceeded"), None);
    }
}
