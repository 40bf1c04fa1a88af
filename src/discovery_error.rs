//! Why discovery of a cluster failed, in the terms an operator acts on. Its
//! own module: `targets` carries it and `discovery` makes it, and neither
//! should depend on the other both ways.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot read {key} {}: {detail}", path.display())]
    Credentials {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("API server {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "TLS with {url} failed: {detail} (is ca_file the CA that signed this API server's certificate?)"
    )]
    Tls { url: String, detail: String },
    #[error(
        "401 Unauthorized from {url}: the API server does not accept the credentials (token expired, rotated or wrong cluster?)"
    )]
    Unauthorized { url: String },
    #[error("403 Forbidden: {message} — promfed needs `{verb}` on `{resource}`")]
    Forbidden {
        message: String,
        verb: &'static str,
        resource: &'static str,
    },
    #[error("{what} was not found (404 from {url})")]
    NotFound { what: String, url: String },
    #[error("{url} answered {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("unexpected answer from {url}: {detail}")]
    BadResponse { url: String, detail: String },
    #[error("{url} does not speak HTTP/1.1 as promfed reads it: {detail}")]
    Protocol { url: String, detail: String },
    #[error("API server {url} timed out: no {what} within {limit:?}")]
    Timeout {
        url: String,
        what: &'static str,
        limit: Duration,
    },
    #[error("{url} answered 429 Too Many Requests{}: promfed backs off", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    Throttled {
        url: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "{url} answered {status} redirecting to {location}: promfed does not follow redirects from an API server (the token would travel with them); set api_server to the address that answers"
    )]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
    #[error("{url}: the API server no longer has that resource version (410 Gone)")]
    Gone { url: String },
    #[error("{what} from {url}: {limit}")]
    TooMuch {
        what: &'static str,
        url: String,
        limit: String,
    },
    #[error("no port {port} on service {namespace}/{service} (its endpoints have: {available})")]
    NoSuchPort {
        namespace: String,
        service: String,
        port: String,
        available: String,
    },
}

impl DiscoveryError {
    /// A short, stable word for metrics and status.
    pub fn reason(&self) -> &'static str {
        match self {
            DiscoveryError::Credentials { .. } => "credentials",
            DiscoveryError::Unreachable { .. } => "unreachable",
            DiscoveryError::Tls { .. } => "tls",
            DiscoveryError::Unauthorized { .. } => "unauthorized",
            DiscoveryError::Forbidden { .. } => "forbidden",
            DiscoveryError::NotFound { .. } | DiscoveryError::NoSuchPort { .. } => "not_found",
            DiscoveryError::Http { .. } => "http",
            DiscoveryError::BadResponse { .. } => "bad_response",
            DiscoveryError::Redirect { .. } => "redirect",
            DiscoveryError::TooMuch { .. } => "limit",
            DiscoveryError::Protocol { .. } => "protocol",
            DiscoveryError::Timeout { .. } => "timeout",
            DiscoveryError::Throttled { .. } => "throttled",
            DiscoveryError::Gone { .. } => "gone",
        }
    }
}

impl DiscoveryError {
    /// How long the server asked promfed to wait before asking again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DiscoveryError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
