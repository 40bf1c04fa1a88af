//! Reading one context of a kubeconfig: the API server, its CA and the
//! credentials, inline (`*-data`, `token`) or as files (relative to the
//! kubeconfig's folder, as kubectl reads them).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::shown::{self, visible};
use crate::config::tls_files::{self, PairProblem};

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: ContextEntry,
}

#[derive(Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: ClusterEntry,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    #[serde(default)]
    tls_server_name: Option<String>,
    /// promfed and Prometheus connect directly; a proxy is refused.
    #[serde(default)]
    proxy_url: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: UserEntry,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    exec: Option<ExecEntry>,
    #[serde(default)]
    auth_provider: Option<serde_json::Value>,
    #[serde(default)]
    username: Option<String>,
    /// Impersonation (`as`, `as-groups`, `as-uid`): promfed would be
    /// someone else than the user it impersonates, so it is refused.
    #[serde(default, rename = "as")]
    impersonate: Option<String>,
    #[serde(default)]
    as_groups: Option<Vec<String>>,
    #[serde(default)]
    as_uid: Option<String>,
}

/// A user's `exec` stanza, as client-go reads it (`installHint` is for
/// a person at a terminal and is not kept).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecEntry {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<ExecEnv>>,
    #[serde(default)]
    interactive_mode: Option<String>,
    #[serde(default)]
    provide_cluster_info: bool,
}

#[derive(Deserialize)]
struct ExecEnv {
    name: String,
    value: String,
}

/// The exec credential plugin, as the cluster file's `[exec]` will say it.
/// Its arguments and variables may hold secrets (an access key, an OIDC
/// client secret): no message quotes them.
pub struct Exec {
    pub api_version: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub interactive_mode: Option<String>,
    pub provide_cluster_info: bool,
}

/// What promfed takes from one context.
pub struct Context {
    pub name: String,
    pub server: String,
    /// `None` with `insecure-skip-tls-verify`.
    pub ca: Option<Vec<u8>>,
    pub tls_server_name: Option<String>,
    pub credentials: Credentials,
}

pub enum Credentials {
    Token(Vec<u8>),
    /// Run by promfed at each renewal; nothing is written beside the
    /// cluster file but the CA.
    Exec(Exec),
    ClientCertificate {
        cert: Vec<u8>,
        key: Vec<u8>,
    },
}

/// The largest kubeconfig or credential file read.
const MAX_FILE: u64 = 4 << 20;

/// Reads `context` (or the current one) of the kubeconfig at `path`.
pub fn read(path: &Path, context: Option<&str>) -> Result<Context, String> {
    let shown = visible(&path.display().to_string());
    let config = parse(path, &shown)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let ctx = chosen_context(&config, context, &shown)?;
    let wanted = ctx.name.as_str();
    plain(&shown, "context name", wanted)?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == ctx.context.cluster)
        .ok_or_else(|| {
            format!(
                "context `{}` names cluster `{}`, which {shown} does not have",
                visible(wanted),
                visible(&ctx.context.cluster)
            )
        })?;
    plain(&shown, "cluster name", &cluster.name)?;
    let user_name = ctx.context.user.as_deref().unwrap_or_default();
    let user = config
        .users
        .iter()
        .find(|u| u.name == user_name)
        .ok_or_else(|| {
            format!(
                "context `{}` names user `{}`, which {shown} does not have",
                visible(wanted),
                visible(user_name)
            )
        })?;
    plain(&shown, "user name", &user.name)?;
    let c = &cluster.cluster;
    server(&cluster.name, c, &shown)?;
    let ca = certificate_authority(dir, &cluster.name, c, &shown)?;
    Ok(Context {
        name: wanted.to_string(),
        server: c.server.clone(),
        ca,
        tls_server_name: c.tls_server_name.clone(),
        credentials: credentials(dir, &user.name, &user.user, shown)?,
    })
}

/// The kubeconfig, parsed; no error quotes its values.
fn parse(path: &Path, shown: &str) -> Result<Kubeconfig, String> {
    let bytes = crate::fsutil::read_regular(path, MAX_FILE)
        .map_err(|e| format!("cannot read the kubeconfig {shown}: {e}"))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| format!("{shown} is not a kubeconfig: it is not UTF-8 text ({e})"))?;
    if crate::yaml_depth::too_deep(text).is_some() {
        return Err(format!(
            "{shown} is not a kubeconfig: its brackets nest more than {} levels deep",
            crate::yaml_depth::MAX_FLOW_DEPTH
        ));
    }
    serde_norway::from_str(text).map_err(|e| {
        format!(
            "{shown} is not a kubeconfig: {}",
            shown::yaml_error(&e.to_string())
        )
    })
}

/// `context`, else the current context, else the only one.
fn chosen_context<'a>(
    config: &'a Kubeconfig,
    context: Option<&str>,
    shown: &str,
) -> Result<&'a NamedContext, String> {
    let only = match config.contexts.as_slice() {
        [one] => Some(one.name.clone()),
        _ => None,
    };
    let wanted = context
        .map(str::to_string)
        .or(config.current_context.clone().filter(|c| !c.is_empty()))
        .or(only)
        .ok_or_else(|| {
            format!(
                "{shown} has no current-context: name one with --context ({})",
                names(config.contexts.iter().map(|c| &c.name))
            )
        })?;
    config
        .contexts
        .iter()
        .find(|c| c.name == wanted)
        .ok_or_else(|| {
            format!(
                "{shown} has no context `{}` (it has: {})",
                visible(&wanted),
                names(config.contexts.iter().map(|c| &c.name))
            )
        })
}

/// Refuses a kubeconfig text that holds a control character: whatever of
/// it reaches the cluster file, a message or a path stays on its own line.
fn plain(shown: &str, what: &str, value: &str) -> Result<(), String> {
    refuse_invisible(shown, &format!("{what} `{}`", visible(value)), value)
}

/// `plain` for a value that may be a secret: the message names it, never
/// quotes it.
fn plain_unquoted(shown: &str, what: &str, value: &str) -> Result<(), String> {
    refuse_invisible(shown, what, value)
}

fn refuse_invisible(shown: &str, named: &str, value: &str) -> Result<(), String> {
    if shown::has_invisible(value) {
        return Err(format!(
            "{shown}: the {named} holds a control character (a line break, NUL or escape): promfed refuses it, so that nothing from a kubeconfig can add a line to the cluster file or the terminal; rename it in the kubeconfig"
        ));
    }
    Ok(())
}

/// The API server's URL, which goes into the cluster file: plain text,
/// direct, and without a password.
fn server(name: &str, c: &ClusterEntry, shown: &str) -> Result<(), String> {
    let whose = format!("cluster `{}`", visible(name));
    if let Some(proxy) = &c.proxy_url {
        return Err(format!(
            "{whose} in {shown} is reached through proxy-url {}: promfed and Prometheus connect to the API server directly, so this host must reach {} without it",
            shown::url(proxy),
            shown::url(&c.server)
        ));
    }
    plain(shown, &format!("server of {whose}"), &c.server)?;
    if shown::has_userinfo(&c.server) {
        return Err(format!(
            "{whose} in {shown}: its server {} carries a user name or password: promfed authenticates with the user's token or client certificate and never writes a password into a cluster file; remove it from the URL",
            shown::url(&c.server)
        ));
    }
    if let Some(server_name) = &c.tls_server_name {
        plain(shown, &format!("tls-server-name of {whose}"), server_name)?;
    }
    Ok(())
}

/// The CA, checked as Prometheus would; `None` with
/// `insecure-skip-tls-verify`.
fn certificate_authority(
    dir: &Path,
    name: &str,
    c: &ClusterEntry,
    shown: &str,
) -> Result<Option<Vec<u8>>, String> {
    if c.insecure_skip_tls_verify {
        return Ok(None);
    }
    let whose = format!("cluster `{}`", visible(name));
    let ca = material(
        dir,
        c.certificate_authority_data.as_deref(),
        c.certificate_authority.as_deref(),
        "certificate-authority",
        name,
    )?
    .ok_or_else(|| {
        format!(
            "{whose} in {shown} has no certificate-authority(-data): promfed needs the CA that signed the API server's certificate"
        )
    })?;
    if let Some(why) = tls_files::ca_problem(&ca) {
        return Err(format!(
            "{whose} in {shown}: its certificate-authority(-data) {why}"
        ));
    }
    Ok(Some(ca))
}

fn credentials(
    dir: &Path,
    name: &str,
    u: &UserEntry,
    shown: String,
) -> Result<Credentials, String> {
    let whose = format!("user `{}`", visible(name));
    if u.auth_provider.is_some() {
        return Err(format!(
            "{whose} in {shown} gets its credentials from an auth-provider, which client-go removed (1.26): promfed cannot run it. Use the provider's exec plugin (as GKE's gke-gcloud-auth-plugin or kubelogin) in the kubeconfig, or give promfed a service account of its own: `promfed rbac` prints it"
        ));
    }
    if u.impersonate.is_some() || u.as_groups.is_some() || u.as_uid.is_some() {
        return Err(format!(
            "{whose} in {shown} impersonates another user (as, as-groups or as-uid): Prometheus cannot, so its requests would carry other permissions than the ones this kubeconfig was made for. Give promfed a service account of its own: `promfed rbac` prints it"
        ));
    }
    if let Some(exec) = &u.exec {
        if u.token.is_some()
            || u.token_file.is_some()
            || u.client_certificate.is_some()
            || u.client_certificate_data.is_some()
            || u.client_key.is_some()
            || u.client_key_data.is_some()
        {
            return Err(format!(
                "{whose} in {shown} has an exec credential plugin and a token or client certificate besides: a promfed cluster file takes one credential, so keep one of them in the kubeconfig"
            ));
        }
        return exec_stanza(dir, &whose, exec, &shown).map(Credentials::Exec);
    }
    if let Some(token) = &u.token {
        // Never quoted: the reason says what is wrong, not what it holds.
        return match crate::discovery::token_problem(token) {
            Some(why) => Err(format!("{whose} in {shown}: its token {why}")),
            None => Ok(Credentials::Token(token.trim().as_bytes().to_vec())),
        };
    }
    if let Some(file) = &u.token_file {
        let path = dir.join(file);
        plain(
            &shown,
            &format!("tokenFile of {whose}"),
            &path.display().to_string(),
        )?;
        let bytes = crate::fsutil::read_regular(&path, MAX_FILE)
            .map_err(|e| format!("{whose}: cannot read tokenFile {}: {e}", path.display()))?;
        let why = match std::str::from_utf8(&bytes) {
            Ok(text) => crate::discovery::token_problem(text),
            Err(_) => Some("is not UTF-8 text"),
        };
        // Never quoted: the file may be anything (a shadow file, a key).
        if let Some(why) = why {
            return Err(format!(
                "{whose} in {shown}: its tokenFile {} {why}",
                path.display()
            ));
        }
        return Ok(Credentials::Token(bytes.trim_ascii().to_vec()));
    }
    certificate(dir, name, u, &shown)
}

/// The `exec` stanza, every text of it plain: a line break in an argument
/// would otherwise reach the plugin, the logs and the terminal. A relative
/// command with a folder in it is the kubeconfig's folder's, as client-go
/// reads it; it is written as an absolute path, since the cluster file's
/// folder is another.
fn exec_stanza(dir: &Path, whose: &str, e: &ExecEntry, shown: &str) -> Result<Exec, String> {
    let missing = |key: &str| {
        format!("{whose} in {shown}: its exec stanza has no {key}, which client-go requires")
    };
    let api_version = e.api_version.clone().ok_or_else(|| missing("apiVersion"))?;
    plain(shown, &format!("exec apiVersion of {whose}"), &api_version)?;
    let mut command = e.command.clone().ok_or_else(|| missing("command"))?;
    plain_unquoted(shown, &format!("exec command of {whose}"), &command)?;
    if command.is_empty() {
        return Err(missing("command"));
    }
    let relative = Path::new(&command);
    if relative.is_relative() && relative.components().count() > 1 {
        let joined = std::path::absolute(dir.join(relative))
            .map_err(|e| format!("{whose} in {shown}: cannot resolve its exec command: {e}"))?;
        command = joined.display().to_string();
        plain_unquoted(shown, &format!("exec command of {whose}"), &command)?;
    }
    let args = e.args.clone().unwrap_or_default();
    for (i, arg) in args.iter().enumerate() {
        plain_unquoted(shown, &format!("exec argument {} of {whose}", i + 1), arg)?;
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for var in e.env.iter().flatten() {
        plain(shown, &format!("exec env name of {whose}"), &var.name)?;
        plain_unquoted(
            shown,
            &format!("value of exec env `{}` of {whose}", var.name),
            &var.value,
        )?;
        if env.iter().any(|(name, _)| *name == var.name) {
            return Err(format!(
                "{whose} in {shown}: its exec env gives `{}` twice: keep one",
                var.name
            ));
        }
        env.push((var.name.clone(), var.value.clone()));
    }
    if let Some(mode) = &e.interactive_mode {
        plain(shown, &format!("exec interactiveMode of {whose}"), mode)?;
    }
    Ok(Exec {
        api_version,
        command,
        args,
        env,
        interactive_mode: e.interactive_mode.clone(),
        provide_cluster_info: e.provide_cluster_info,
    })
}

/// The client certificate and its key, checked as Prometheus would.
fn certificate(dir: &Path, name: &str, u: &UserEntry, shown: &str) -> Result<Credentials, String> {
    let whose = format!("user `{}`", visible(name));
    let cert = material(
        dir,
        u.client_certificate_data.as_deref(),
        u.client_certificate.as_deref(),
        "client-certificate",
        name,
    )?;
    let key = material(
        dir,
        u.client_key_data.as_deref(),
        u.client_key.as_deref(),
        "client-key",
        name,
    )?;
    match (cert, key) {
        (Some(cert), Some(key)) => match tls_files::pair_problem(&cert, &key) {
            Some(PairProblem::Cert(why)) => Err(format!(
                "{whose} in {shown}: its client-certificate(-data) {why}"
            )),
            Some(PairProblem::Key(why)) => Err(format!(
                "{whose} in {shown}: its client-key(-data) {}",
                why.replace("cert_file", "client-certificate(-data)")
            )),
            None => Ok(Credentials::ClientCertificate { cert, key }),
        },
        (Some(_), None) | (None, Some(_)) => Err(format!(
            "{whose} in {shown} has a client certificate or key without the other"
        )),
        (None, None) if u.username.is_some() => Err(format!(
            "{whose} in {shown} logs in with a username and password, which Kubernetes no longer accepts (since 1.19): use a service account's token (`promfed rbac`)"
        )),
        (None, None) => Err(format!(
            "{whose} in {shown} has no token, tokenFile or client certificate"
        )),
    }
}

/// `*-data` (base64) or the file it names, relative to the kubeconfig.
fn material(
    dir: &Path,
    data: Option<&str>,
    file: Option<&Path>,
    key: &str,
    owner: &str,
) -> Result<Option<Vec<u8>>, String> {
    let owner = visible(owner);
    if let Some(data) = data {
        let clean: String = data.split_whitespace().collect();
        return STANDARD
            .decode(clean)
            .map(Some)
            .map_err(|e| format!("`{owner}`: {key}-data is not base64: {e}"));
    }
    match file {
        Some(file) => {
            let path = dir.join(file);
            let shown = path.display().to_string();
            plain(&format!("`{owner}`"), key, &shown)?;
            crate::fsutil::read_regular(&path, MAX_FILE)
                .map(Some)
                .map_err(|e| format!("`{owner}`: cannot read {key} {shown}: {e}"))
        }
        None => Ok(None),
    }
}

fn names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<String> = names.map(|n| visible(n)).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_open_brackets_a_proxy_and_impersonation_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bomb = dir.path().join("config");
        // Four MiB, the most read: hours for the YAML scanner.
        let mut text = b"clusters: ".to_vec();
        text.resize(4 << 20, b'[');
        std::fs::write(&bomb, &text).unwrap();
        let refused = read(&bomb, None).err().unwrap();
        assert!(
            refused.contains("brackets nest more than 64 levels"),
            "{refused}"
        );

        // A proxy and impersonation are refused, with why.
        let context = "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n";
        std::fs::write(&bomb, format!("{context}clusters: [{{name: c, cluster: {{server: 'https://h', insecure-skip-tls-verify: true, proxy-url: 'http://proxy:3128'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\n")).unwrap();
        let refused = read(&bomb, None).err().unwrap();
        assert!(
            refused.contains("is reached through proxy-url http://proxy:3128"),
            "{refused}"
        );
        std::fs::write(&bomb, format!("{context}clusters: [{{name: c, cluster: {{server: 'https://h', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: t, as: admin}}}}]\n")).unwrap();
        let refused = read(&bomb, None).err().unwrap();
        assert!(refused.contains("impersonates another user"), "{refused}");

        // Flow style as kubectl never writes it but YAML allows stays read.
        std::fs::write(
            &bomb,
            "clusters: [{name: c, cluster: {server: 'https://h'}}]\ncontexts: []\nusers: []\n",
        )
        .unwrap();
        let read_on = read(&bomb, None).err().unwrap();
        assert!(read_on.contains("has no current-context"), "{read_on}");
    }
}
