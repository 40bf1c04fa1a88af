//! `promfed add-cluster NAME --kubeconfig FILE`: a cluster file and its
//! credential files, from one kubeconfig context, written so that the
//! daemon never sees half of it: the credentials first, each renamed into
//! place, and the cluster file last.

mod kubeconfig;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, User};

use crate::config::cluster::Cluster;
use crate::config::diagnostic::SourceText;
use crate::config::names::ClusterName;
use crate::config::settings::Settings;
use kubeconfig::Credentials;

/// The folder of a cluster's credentials, and the files in it: readable by
/// promfed (root or its group) and by Prometheus's group, by no one else.
const DIR_MODE: u32 = 0o750;
const SECRET_MODE: u32 = 0o640;
/// The cluster file holds no secret.
const CLUSTER_FILE_MODE: u32 = 0o644;

pub struct Request<'a> {
    pub name: &'a str,
    pub kubeconfig: &'a Path,
    pub context: Option<&'a str>,
    pub force: bool,
}

/// Writes the cluster; returns its file and what was written, for the
/// operator.
pub fn write(settings: &Settings, request: &Request) -> Result<(PathBuf, Vec<String>), String> {
    let name = ClusterName::parse(request.name)?;
    let dir = &settings.clusters_dir;
    let file = dir.join(format!("{name}.toml"));
    if file.exists() && !request.force {
        return Err(format!(
            "{} already exists: cluster `{name}` is configured. Pass --force to replace it (its credentials too)",
            file.display()
        ));
    }
    let context = kubeconfig::read(request.kubeconfig, request.context)?;
    let group = prometheus_group(settings)?;
    let secrets = dir.join(name.as_str());
    crate::fsutil::create_dir(&secrets, DIR_MODE)
        .and_then(|()| own(&secrets, DIR_MODE, group))
        .map_err(|e| format!("cannot make {}: {e}", secrets.display()))?;

    let mut written = Vec::new();
    let mut put = |file_name: &str, bytes: &[u8]| -> Result<String, String> {
        let path = secrets.join(file_name);
        install(&path, bytes, SECRET_MODE, group)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path.display().to_string());
        Ok(format!("{name}/{file_name}"))
    };
    let mut text = format!(
        "# Written by `promfed add-cluster {name}` from context `{}` of {}.\napi_server = {}\n",
        context.name,
        request.kubeconfig.display(),
        quoted(&context.server)
    );
    match &context.credentials {
        Credentials::Token(token) => {
            let mut token = token.trim_ascii().to_vec();
            token.push(b'\n');
            text.push_str(&format!(
                "token_file = {}\n",
                quoted(&put("token", &token)?)
            ));
        }
        Credentials::ClientCertificate { cert, key } => {
            text.push_str(&format!(
                "cert_file = {}\n",
                quoted(&put("client.crt", cert)?)
            ));
            text.push_str(&format!(
                "key_file = {}\n",
                quoted(&put("client.key", key)?)
            ));
        }
    }
    match &context.ca {
        Some(ca) => text.push_str(&format!("ca_file = {}\n", quoted(&put("ca.crt", ca)?))),
        None => text.push_str(
            "# The kubeconfig skips TLS verification: anyone on the path can read the token.\ninsecure_skip_verify = true\n",
        ),
    }
    if let Some(server_name) = &context.tls_server_name {
        text.push_str(&format!("tls_server_name = {}\n", quoted(server_name)));
    }
    // What the daemon will read must be valid before it is in place.
    Cluster::parse(&SourceText::new(&file, text.clone()), name.as_str()).map_err(|broken| {
        let problems: Vec<String> = broken.problems.iter().map(|p| p.headline()).collect();
        format!(
            "the context does not make a valid cluster file: {}",
            problems.join("; ")
        )
    })?;
    install(&file, text.as_bytes(), CLUSTER_FILE_MODE, group)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    written.push(file.display().to_string());
    Ok((file, written))
}

/// The group Prometheus runs in, which must read the credentials.
fn prometheus_group(settings: &Settings) -> Result<Gid, String> {
    let user = &settings.prometheus.user.name;
    User::from_name(user)
        .map_err(|e| format!("cannot look up user `{user}`: {e}"))?
        .map(|u| u.gid)
        .ok_or_else(|| {
            format!("no user `{user}` on this host ([prometheus] user in promfed.toml): is Prometheus installed?")
        })
}

/// Writes `bytes` beside `target` with `mode` and `group`, then renames it
/// over `target`.
fn install(target: &Path, bytes: &[u8], mode: u32, group: Gid) -> std::io::Result<()> {
    let written = crate::fsutil::write_beside(target, bytes, mode)?;
    own(&written, mode, group)
        .and_then(|()| crate::fsutil::rename_into_place(&written, target))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&written);
        })
}

fn own(path: &Path, mode: u32, group: Gid) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(group.as_raw()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    toml_edit::Value::from(text).to_string()
}
