//! `[exec]` and `[token_request]` of a cluster file: credentials promfed
//! obtains and renews itself (see `crate::credentials`), instead of a
//! `token_file` or client certificate the operator rotates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::PromDuration;
use super::names;
use super::toml_fields::{Fields, Problems, Spanned};
use super::values::{ClientCert, Key};

/// Where a cluster's credential comes from, when promfed obtains it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    Exec(Exec),
    TokenRequest(TokenRequest),
}

impl Source {
    /// A short word for status and metrics.
    pub fn word(&self) -> &'static str {
        match self {
            Source::Exec(_) => "exec",
            Source::TokenRequest(_) => "token_request",
        }
    }
}

/// The `ExecCredential` versions client-go speaks (v1alpha1 is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecApiVersion {
    V1,
    V1beta1,
}

impl ExecApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecApiVersion::V1 => "client.authentication.k8s.io/v1",
            ExecApiVersion::V1beta1 => "client.authentication.k8s.io/v1beta1",
        }
    }

    fn parse(text: &str) -> Option<ExecApiVersion> {
        [ExecApiVersion::V1, ExecApiVersion::V1beta1]
            .into_iter()
            .find(|v| v.as_str() == text)
    }
}

/// client-go's exec credential plugin, as a kubeconfig's `users[].user.exec`
/// gives it. promfed never has a terminal: `interactive_mode` may only be
/// `Never` or `IfAvailable` (which then means the same).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Exec {
    pub api_version: ExecApiVersion,
    /// A name looked up on the plugin's PATH, or a path (a relative one is
    /// resolved against the cluster file's folder, as client-go resolves it
    /// against the kubeconfig's).
    pub command: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub provide_cluster_info: bool,
    pub timeout: Duration,
    /// The cluster file's folder: the plugin's working directory.
    pub dir: PathBuf,
}

/// `env` may hold secrets (an access key): never shown, not even in debug
/// output.
impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("api_version", &self.api_version)
            .field("command", &self.command)
            .field("args", &self.args.len())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A TokenRequest for one service account, made with a base credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    pub namespace: String,
    pub service_account: String,
    pub expiration: Duration,
    /// The credential that may `create serviceaccounts/token`: the
    /// cluster file's `token_file` or client certificate.
    pub base_token_file: Option<PathBuf>,
    pub base_client_cert: Option<ClientCert>,
}

pub mod defaults {
    use std::time::Duration;
    /// How long a plugin may run: `aws eks get-token` takes about a second,
    /// a plugin that asks a remote identity service a few.
    pub const EXEC_TIMEOUT: Duration = Duration::from_secs(20);
    pub const EXPIRATION: Duration = Duration::from_secs(3600);
    /// The API server refuses less (`expirationSeconds` minimum).
    pub const MIN_EXPIRATION: Duration = Duration::from_secs(600);
    /// The API server caps it too (`--service-account-max-token-expiration`).
    pub const MAX_EXPIRATION: Duration = Duration::from_secs(48 * 3600);
    pub const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(300);
}

/// `[exec]` as written.
pub struct RawExec {
    span: std::ops::Range<usize>,
    api_version: Key,
    command: Key,
    args: Option<Spanned<Vec<Spanned<String>>>>,
    env: Vec<(Spanned<String>, Spanned<String>)>,
    interactive_mode: Key,
    provide_cluster_info: Option<Spanned<bool>>,
    timeout: Key,
}

/// `[token_request]` as written.
pub struct RawTokenRequest {
    span: std::ops::Range<usize>,
    namespace: Key,
    service_account: Key,
    expiration: Key,
}

impl RawExec {
    pub fn read(root: &mut Fields, p: &mut Problems) -> Option<RawExec> {
        let mut t = root.table(p, "exec")?;
        let raw = RawExec {
            span: t.span(),
            api_version: t.get(p, "api_version"),
            command: t.get(p, "command"),
            args: t.string_list(p, "args"),
            env: t.string_map(p, "env").unwrap_or_default(),
            interactive_mode: t.get(p, "interactive_mode"),
            provide_cluster_info: t.get(p, "provide_cluster_info"),
            timeout: t.get(p, "timeout"),
        };
        t.finish(p);
        Some(raw)
    }

    pub fn span(&self) -> std::ops::Range<usize> {
        self.span.clone()
    }

    pub fn validate(self, p: &mut Problems, dir: &Path) -> Option<Exec> {
        let api_version = match &self.api_version {
            None => {
                p.missing_in(self.span.clone(), "exec.api_version", "missing: client.authentication.k8s.io/v1 (or v1beta1), as the kubeconfig's exec.apiVersion");
                None
            }
            Some(s) => ExecApiVersion::parse(&s.value).or_else(|| {
                p.at(s.span.clone(), "exec.api_version", format!("`{}` is not an exec credential version promfed speaks: client.authentication.k8s.io/v1 or client.authentication.k8s.io/v1beta1", s.value));
                None
            }),
        };
        let command = match &self.command {
            None => {
                p.missing_in(
                    self.span.clone(),
                    "exec.command",
                    "missing: the plugin to run",
                );
                None
            }
            Some(s) => plain_text(p, "exec.command", s, false).map(|c| {
                let c = PathBuf::from(c);
                if c.is_relative() && c.components().count() > 1 {
                    dir.join(c)
                } else {
                    c
                }
            }),
        };
        let mut ok = true;
        let mut args = Vec::new();
        for (i, a) in self
            .args
            .map(|a| a.value)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match plain_text(p, &format!("exec.args[{i}]"), a, true) {
                Some(a) => args.push(a),
                None => ok = false,
            }
        }
        let mut env = BTreeMap::new();
        for (k, v) in &self.env {
            let key = format!("exec.env.{}", k.value);
            if !is_env_name(&k.value) {
                p.at(k.span.clone(), &key, format!("`{}` is not an environment variable name (letters, digits and `_`, not first a digit)", k.value));
                ok = false;
            } else if RESERVED_ENV.contains(&k.value.as_str()) {
                p.at(
                    k.span.clone(),
                    &key,
                    format!("`{}` is set by promfed itself for the plugin", k.value),
                );
                ok = false;
            } else if let Some(v) = plain_text(p, &key, v, true) {
                env.insert(k.value.clone(), v);
            } else {
                ok = false;
            }
        }
        if let Some(m) = &self.interactive_mode {
            if !matches!(m.value.as_str(), "Never" | "IfAvailable") {
                p.at(m.span.clone(), "exec.interactive_mode", format!("`{}`: promfed runs plugins without a terminal, so only `Never` (or `IfAvailable`, which then means the same)", m.value));
                ok = false;
            }
        }
        let timeout = match &self.timeout {
            None => Some(defaults::EXEC_TIMEOUT),
            Some(s) => duration_within(
                p,
                "exec.timeout",
                s,
                Duration::from_secs(1),
                defaults::MAX_EXEC_TIMEOUT,
            ),
        };
        if !ok {
            return None;
        }
        Some(Exec {
            api_version: api_version?,
            command: command?,
            args,
            env,
            provide_cluster_info: self.provide_cluster_info.is_some_and(|b| b.value),
            timeout: timeout?,
            dir: dir.to_path_buf(),
        })
    }
}

/// Variables promfed gives the plugin itself.
const RESERVED_ENV: [&str; 1] = ["KUBERNETES_EXEC_INFO"];

impl RawTokenRequest {
    pub fn read(root: &mut Fields, p: &mut Problems) -> Option<RawTokenRequest> {
        let mut t = root.table(p, "token_request")?;
        let raw = RawTokenRequest {
            span: t.span(),
            namespace: t.get(p, "namespace"),
            service_account: t.get(p, "service_account"),
            expiration: t.get(p, "expiration"),
        };
        t.finish(p);
        Some(raw)
    }

    pub fn span(&self) -> std::ops::Range<usize> {
        self.span.clone()
    }

    pub fn validate(
        self,
        p: &mut Problems,
        base_token_file: Option<PathBuf>,
        base_client_cert: Option<ClientCert>,
    ) -> Option<TokenRequest> {
        let name = |p: &mut Problems, key: &str, value: &Key, subdomain: bool| match value {
            None => {
                p.missing_in(self.span.clone(), key, "missing");
                None
            }
            Some(s)
                if (subdomain && names::is_subdomain(&s.value)) || names::is_label(&s.value) =>
            {
                Some(s.value.clone())
            }
            Some(s) => {
                p.at(
                    s.span.clone(),
                    key,
                    format!(
                        "`{}` is not a Kubernetes name (lowercase letters, digits and `-`)",
                        s.value
                    ),
                );
                None
            }
        };
        let namespace = name(p, "token_request.namespace", &self.namespace, false);
        let service_account = name(
            p,
            "token_request.service_account",
            &self.service_account,
            true,
        );
        let expiration = match &self.expiration {
            None => Some(defaults::EXPIRATION),
            Some(s) => duration_within(
                p,
                "token_request.expiration",
                s,
                defaults::MIN_EXPIRATION,
                defaults::MAX_EXPIRATION,
            ),
        };
        Some(TokenRequest {
            namespace: namespace?,
            service_account: service_account?,
            expiration: expiration?,
            base_token_file,
            base_client_cert,
        })
    }
}

fn duration_within(
    p: &mut Problems,
    key: &str,
    s: &Spanned<String>,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let d = PromDuration::parse(&s.value)
        .map_err(|e| p.at(s.span.clone(), key, e))
        .ok()?
        .as_duration();
    if d < min || d > max {
        p.at(
            s.span.clone(),
            key,
            format!(
                "{} is outside {}s to {}s",
                s.value,
                min.as_secs(),
                max.as_secs()
            ),
        );
        return None;
    }
    Some(d)
}

/// A command, argument or variable: no control character (a NUL cannot be
/// passed to a program, a line break would forge log lines).
fn plain_text(p: &mut Problems, key: &str, s: &Spanned<String>, empty_ok: bool) -> Option<String> {
    if !empty_ok && s.value.is_empty() {
        p.at(s.span.clone(), key, "must not be empty");
        None
    } else if s.value.chars().any(char::is_control) {
        p.at(s.span.clone(), key, "holds a control character");
        None
    } else {
        Some(s.value.clone())
    }
}

pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256
}
