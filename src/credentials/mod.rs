//! Credentials promfed obtains itself, per cluster: from an exec plugin
//! (`[exec]`) or a TokenRequest (`[token_request]`). Each is written to a
//! file under the state folder (`file`), which the generated configuration
//! names and discovery reads, and kept renewed (`renewal`).

pub mod exec;
pub mod exec_credential;
pub mod file;
pub mod renewal;
pub mod token_request;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::config::cluster::ClientCert;
use crate::config::cluster::Cluster;
use crate::config::credential_source::Source;
use crate::config::inventory::{Entry, Inventory};
use crate::discovery::DiscoveryError;

/// A credential as obtained. Its `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub secret: Secret,
    /// `None`: the plugin gave no expiry (valid until a 401).
    pub expires: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Token(String),
    Certificate { cert: String, key: String },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Token(_) => "Token([redacted])",
            Secret::Certificate { .. } => "Certificate([redacted])",
        })
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("secret", &self.secret)
            .field("expires", &self.expires)
            .finish()
    }
}

impl Secret {
    /// The text to keep out of every message.
    pub fn token(&self) -> Option<&str> {
        match self {
            Secret::Token(t) => Some(t),
            Secret::Certificate { .. } => None,
        }
    }
}

/// Why a credential could not be obtained. No variant holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("exec plugin {command}: cannot start it: {detail}")]
    Spawn { command: String, detail: String },
    #[error("exec plugin {command}: still running after {limit:?} ([exec] timeout): it was killed")]
    Timeout { command: String, limit: Duration },
    #[error("exec plugin {command}: {status}; {stderr}")]
    Exited {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("exec plugin {command}: printed more than {limit} on {stream}: it was killed")]
    TooMuch {
        command: String,
        stream: &'static str,
        limit: String,
    },
    #[error("exec plugin {command}: its output {detail}; {stderr}")]
    Garbage {
        command: String,
        detail: String,
        stderr: String,
    },
    #[error("TokenRequest for {account}: {source}")]
    Request {
        account: String,
        source: DiscoveryError,
    },
    #[error("TokenRequest for {account}: {detail}")]
    Answer { account: String, detail: String },
    #[error("cannot write the credential to {}: {detail}", path.display())]
    Write { path: PathBuf, detail: String },
}

impl CredentialError {
    /// A short, stable word for status.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialError::Spawn { .. } => "exec_spawn",
            CredentialError::Timeout { .. } => "exec_timeout",
            CredentialError::Exited { .. } => "exec_failed",
            CredentialError::TooMuch { .. } => "exec_too_much",
            CredentialError::Garbage { .. } => "exec_garbage",
            CredentialError::Request { .. } => "token_request_refused",
            CredentialError::Answer { .. } => "token_request_answer",
            CredentialError::Write { .. } => "credential_write",
        }
    }
}

/// Obtains a new credential for `cluster` from its source, within the
/// source's own time limit (`request_timeout` for a TokenRequest).
pub async fn obtain(
    cluster: &Cluster,
    request_timeout: Duration,
) -> Option<Result<Issued, CredentialError>> {
    Some(match cluster.auth.source.as_ref()? {
        Source::Exec(spec) => exec::run(cluster, spec).await,
        Source::TokenRequest(spec) => token_request::request(cluster, spec, request_timeout).await,
    })
}

/// Points the cluster's credential at the files promfed keeps for it
/// under `root` (the state folder's `credentials`): a client certificate
/// when an exec plugin last gave one, the token file otherwise.
pub fn bind(cluster: &mut Cluster, root: &Path) {
    if cluster.auth.source.is_none() {
        return;
    }
    let files = file::Files::of(root, &cluster.name);
    if matches!(cluster.auth.source, Some(Source::Exec(_))) && files.has_certificate() {
        cluster.auth.token_file = None;
        cluster.auth.client_cert = Some(ClientCert {
            cert_file: files.cert.clone(),
            key_file: files.key.clone(),
        });
    } else {
        cluster.auth.token_file = Some(files.token.clone());
        cluster.auth.client_cert = None;
    }
}

/// `bind` for every cluster of the inventory.
pub fn bind_all(inventory: &mut Inventory, root: &Path) {
    for entry in &mut inventory.entries {
        if let Entry::Current(c, _) | Entry::KeptLastGood(c) = entry {
            bind(c, root);
        }
    }
}
