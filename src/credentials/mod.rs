//! Credentials promfed obtains itself, per cluster: from an exec plugin
//! (`[exec]`) or a TokenRequest (`[token_request]`). Each is written to a
//! file under the state folder (`file`), which the generated configuration
//! names and discovery reads, and kept renewed (`renewal`).

pub mod exec;
pub mod exec_credential;
pub mod file;
#[doc(hidden)]
pub mod fuzzing;
pub mod published;
pub mod renewal;
pub mod token_request;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::config::cluster::ClientCert;
use crate::config::cluster::Cluster;
use crate::config::credential_source::Source;
use crate::config::inventory::{Entry, Inventory};
use crate::config::settings::Settings;
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

/// Whether `give_prometheus_copies` writes the copies or only names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    Write,
    /// `promfed render`, which writes nothing.
    NameOnly,
}

/// Gives each cluster's bearer token to Prometheus as a file of its own,
/// named anew for every new token (`published`), when the settings ask for
/// it. A token that cannot be copied stays named as it is (promtool then
/// says what is wrong with it); the failures, as warnings.
pub fn give_prometheus_copies(
    inventory: &mut Inventory,
    settings: &Settings,
    copies: Copies,
) -> Vec<String> {
    if !settings.new_file_per_token() {
        return Vec::new();
    }
    let root = settings.credentials_dir();
    let group = Some(settings.prometheus.user.primary_gid());
    let mut warnings = Vec::new();
    for entry in &mut inventory.entries {
        let (Entry::Current(c, _) | Entry::KeptLastGood(c)) = entry else {
            continue;
        };
        let Some(token) = c.auth.token_file.clone() else {
            continue;
        };
        let dir = published::dir(&root.join(c.name.as_str()));
        let named = match copies {
            Copies::Write => published::publish(&root, &dir, &token, group),
            Copies::NameOnly => published::would_publish(&dir, &token),
        };
        match named {
            Ok(path) => c.auth.prometheus_token_file = Some(path),
            Err(e) => warnings.push(format!(
                "cluster {}: cannot give Prometheus its own copy of {}: {e}",
                c.name,
                token.display()
            )),
        }
    }
    warnings
}

/// Where and for whom credentials are written, and how long a
/// TokenRequest may take: from the settings.
#[derive(Debug, Clone)]
pub struct Issuing {
    pub root: PathBuf,
    /// Prometheus's group, which must read the files.
    pub group: Option<u32>,
    pub request_timeout: Duration,
}

impl Issuing {
    pub fn of(settings: &Settings) -> Issuing {
        Issuing {
            root: settings.credentials_dir(),
            group: Some(settings.prometheus.user.primary_gid()),
            request_timeout: settings.discovery_limits().request_timeout,
        }
    }

    pub fn files(&self, cluster: &Cluster) -> file::Files {
        file::Files::of(&self.root, &cluster.name)
    }

    /// Obtains a credential and writes it; `true` when its kind changed.
    pub async fn renew(&self, cluster: &Cluster) -> Result<(Issued, bool), CredentialError> {
        let issued = obtain(cluster, self.request_timeout)
            .await
            .unwrap_or_else(|| {
                Err(CredentialError::Answer {
                    account: cluster.name.to_string(),
                    detail: "no [exec] or [token_request]".into(),
                })
            })?;
        let files = self.files(cluster);
        let changed = files
            .write(&issued, self.group)
            .map_err(|e| CredentialError::Write {
                path: files.dir.clone(),
                detail: e.to_string(),
            })?;
        Ok((issued, changed))
    }

    /// When the kept credential is due for renewal, from now (zero when
    /// there is none, or it is due already).
    pub fn due_in(&self, cluster: &Cluster) -> Duration {
        let files = self.files(cluster);
        let kept = files.token.metadata().is_ok_and(|m| m.len() > 0) || files.has_certificate();
        match files.meta() {
            Some(meta) if kept => due_in(&meta, jiff::Timestamp::now().as_second()),
            _ => Duration::ZERO,
        }
    }
}

/// From `now` to 80 % of the kept credential's lifetime.
fn due_in(meta: &file::Meta, now: i64) -> Duration {
    let renewed = meta.renewed.unwrap_or(0);
    let due = match meta.expires {
        Some(expires) => renewed + (expires - renewed) * i64::from(renewal::RENEW_AT_PERCENT) / 100,
        None => renewed + renewal::NO_EXPIRY_REFRESH.as_secs() as i64,
    };
    Duration::from_secs(u64::try_from(due - now).unwrap_or(0))
}

/// For `promfed apply`: obtains the credentials of `clusters` that are due,
/// concurrently, each within its own limit, and gives every other cluster
/// with a source an empty token file at least (see `file::placeholder`).
/// The errors, by cluster.
pub async fn renew_due(issuing: &Issuing, clusters: &[&Cluster]) -> Vec<(String, CredentialError)> {
    let mut tasks = tokio::task::JoinSet::new();
    for cluster in clusters.iter().filter(|c| c.auth.source.is_some()) {
        if issuing.due_in(cluster) > Duration::ZERO {
            continue;
        }
        let (issuing, cluster) = (issuing.clone(), (*cluster).clone());
        tasks.spawn(async move {
            let result = issuing.renew(&cluster).await;
            (cluster.name.to_string(), result.err())
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, Some(e))) = joined {
            failed.push((name, e));
        }
    }
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    failed
}

/// Empty token files where none is kept yet, so that the configuration
/// naming them is valid. The failures, as warnings.
pub fn placeholders(issuing: &Issuing, clusters: &[&Cluster]) -> Vec<String> {
    clusters
        .iter()
        .filter(|c| c.auth.source.is_some())
        .filter_map(|c| {
            let files = issuing.files(c);
            let e = files.placeholder(issuing.group).err()?;
            Some(format!(
                "cluster {}: cannot write {}: {e}",
                c.name,
                files.token.display()
            ))
        })
        .collect()
}

/// For `promfed check`, which writes nothing: one empty, world-readable
/// file in a private temporary folder, standing in for the token files
/// promfed has not obtained yet. Removed when dropped.
///
/// promtool refuses a `credentials_file` that does not exist, and `apply`
/// answers that by writing an empty placeholder under the state folder
/// before it runs promtool (`placeholders`). `check` may not write there, so
/// it renders its candidate (never installed) with these files named in
/// their place: the file is promfed's to write, not the operator's, and
/// what is checked is the rest of the configuration. A file promfed did
/// write, or one it cannot tell is missing, is left named as it is.
pub struct StandIn {
    dir: PathBuf,
    token: PathBuf,
}

impl StandIn {
    pub fn new() -> std::io::Result<StandIn> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut tries = 0u32;
        // A new folder of its own (never one that was there, nor a link):
        // Prometheus's user must be able to search it, as it will the real one.
        let dir = loop {
            let dir = base.join(format!(
                "promfed-check-{}-{nanos}-{tries}",
                std::process::id()
            ));
            match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 => {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let stand_in = StandIn {
            token: dir.join("token"),
            dir,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&stand_in.token)?;
        // Whatever the umask took away.
        std::fs::set_permissions(&stand_in.dir, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&stand_in.token, std::fs::Permissions::from_mode(0o644))?;
        Ok(stand_in)
    }

    /// Points every bound token file of `inventory` that does not exist yet
    /// at the stand-in; `bind_all` points them back.
    pub fn apply(&self, inventory: &mut Inventory) {
        for entry in &mut inventory.entries {
            if let Entry::Current(c, _) | Entry::KeptLastGood(c) = entry
                && c.auth.source.is_some()
                && let Some(t) = &c.auth.token_file
                && matches!(t.try_exists(), Ok(false))
            {
                c.auth.token_file = Some(self.token.clone());
            }
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.token);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
