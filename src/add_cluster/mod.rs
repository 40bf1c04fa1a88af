//! `promfed add-cluster NAME --kubeconfig FILE`: a cluster file and its
//! credential files, from one kubeconfig context, as one transaction. All of
//! it is written in a staging folder beside the cluster files and checked
//! there as `promfed check` and doctor's file checks would; only then is it
//! renamed in, the credentials folder first and the cluster file last. A
//! refusal at any step leaves the clusters folder as it was.
//!
//! The credentials go in a folder no cluster file names yet (`NAME/`, or
//! `NAME@2/`… when that one is taken), so that replacing a cluster
//! (`--force`) never changes a file the old cluster file names: until the
//! new cluster file is renamed over the old one, the old one reads its own,
//! unchanged credentials; then the old folder is removed.

mod kubeconfig;
mod shown;
mod staging;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, User};

use crate::config::inventory;
use crate::config::names::ClusterName;
use crate::config::settings::Settings;
use kubeconfig::{Context, Credentials};
use staging::Staging;

/// The folder of a cluster's credentials, and the files in it: readable by
/// promfed (root or its group) and by Prometheus's group, by no one else.
const DIR_MODE: u32 = 0o750;
const SECRET_MODE: u32 = 0o640;
/// The cluster file holds no secret (but an `[exec]` with `env`, which is
/// written as `SECRET_MODE`).
const CLUSTER_FILE_MODE: u32 = 0o644;
/// The files add-cluster writes: the only ones it removes from an old
/// credentials folder (an operator's own files there stay).
const OWN_FILES: [&str; 4] = ["token", "client.crt", "client.key", "ca.crt"];
/// How many credentials folders (`NAME`, `NAME@2` … ) are tried.
const MAX_FOLDERS: u32 = 100;

pub struct Request<'a> {
    pub name: &'a str,
    pub kubeconfig: &'a Path,
    pub context: Option<&'a str>,
    pub force: bool,
}

/// Adds the cluster; returns its file and what was done, line by line, for
/// the operator.
pub fn write(settings: &Settings, request: &Request) -> Result<(PathBuf, Vec<String>), String> {
    let name = ClusterName::parse(request.name)?;
    let dir = &settings.clusters_dir;
    let file_name = format!("{name}.toml");
    let file = dir.join(&file_name);
    let replacing = exists(&file)?;
    if replacing && !request.force {
        return Err(format!(
            "{} already exists: cluster `{name}` is configured. Pass --force to replace it (its credentials too)",
            file.display()
        ));
    }
    let context = kubeconfig::read(request.kubeconfig, request.context)?;
    let group = prometheus_group(settings)?;
    let folder = free_folder(dir, &name)?;
    let old = if replacing {
        own_folders_of(dir, &name, &file, &settings.defaults)
    } else {
        Vec::new()
    };
    let mut staging = Staging::create(dir, name.as_str(), group).map_err(|e| {
        format!(
            "cannot make a staging folder in {}: {e}{}",
            dir.display(),
            crate::fsutil::denied_hint(&file, &e)
        )
    })?;
    let unstaged = |text: String| in_clusters_dir(text, &staging, dir);
    let keys = stage_credentials(&staging, &folder, &context).map_err(unstaged)?;
    let text = cluster_text(&name, &context, request.kubeconfig, &keys)?;
    // An exec plugin's variables may be secrets (an access key): then the
    // cluster file is as private as the credential files.
    let mode = match &context.credentials {
        Credentials::Exec(exec) if !exec.env.is_empty() => SECRET_MODE,
        _ => CLUSTER_FILE_MODE,
    };
    staging
        .write(&file_name, text.as_bytes(), mode)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    check_staged(&staging, &file_name, settings).map_err(unstaged)?;
    staging
        .commit(&folder, &file_name, request.force)
        .map_err(|e| format!("cannot rename the new cluster into {}: {e}", dir.display()))?;
    drop(staging);
    let said = finish(dir, &keys, &file, &dir.join(&folder), &old);
    Ok((file, said))
}

/// After the swap: the old cluster's folders go (the new one is not among
/// them), and what was done is told, line by line.
fn finish(
    dir: &Path,
    keys: &[(&'static str, String)],
    file: &Path,
    new_folder: &Path,
    old: &[PathBuf],
) -> Vec<String> {
    let mut said: Vec<String> = keys
        .iter()
        .map(|(_, path)| format!("wrote {}", dir.join(path).display()))
        .collect();
    said.push(format!("wrote {}", file.display()));
    said.extend(
        old.iter()
            .filter(|o| o.as_path() != new_folder)
            .map(|o| remove_old(o)),
    );
    said
}

/// Whether something is at `path` (a dangling symlink counts).
fn exists(path: &Path) -> Result<bool, String> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot look at {}: {e}", path.display())),
    }
}

/// The first of `NAME`, `NAME@2` … that does not exist in the clusters
/// folder (`@` is in no cluster name, so no other cluster's folder is
/// taken). A symlink on the way is refused: credentials are written only
/// into a folder of add-cluster's own, inside the clusters folder.
fn free_folder(dir: &Path, name: &ClusterName) -> Result<String, String> {
    for n in 1..=MAX_FOLDERS {
        let candidate = match n {
            1 => name.to_string(),
            _ => format!("{name}@{n}"),
        };
        let path = dir.join(&candidate);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(candidate),
            Err(e) => return Err(format!("cannot look at {}: {e}", path.display())),
            Ok(m) if m.file_type().is_symlink() => return Err(symlink_refused(&path, dir)),
            Ok(_) => {}
        }
    }
    Err(format!(
        "{name}/, {name}@2/ … {name}@{MAX_FOLDERS}/ all exist in {}: remove the ones no cluster file names",
        dir.display()
    ))
}

fn symlink_refused(path: &Path, dir: &Path) -> String {
    let target = fs::read_link(path)
        .map(|t| shown::visible(&t.display().to_string()))
        .unwrap_or_else(|_| "?".into());
    format!(
        "{} is a symlink (to {target}): add-cluster writes credentials only into a folder of its own inside {}, never through a link that may lead out of it; remove the link (nothing was written through it)",
        path.display(),
        dir.display()
    )
}

/// The credentials folders of add-cluster's (`NAME`, `NAME@N`, real
/// folders in the clusters folder) that the current cluster file names.
fn own_folders_of(
    dir: &Path,
    name: &ClusterName,
    file: &Path,
    defaults: &crate::config::defaults::Defaults,
) -> Vec<PathBuf> {
    let Ok(cluster) = inventory::read_definition(file, defaults) else {
        return Vec::new();
    };
    let is_own = |folder: &str| {
        folder == name.as_str()
            || folder
                .strip_prefix(name.as_str())
                .and_then(|rest| rest.strip_prefix('@'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut folders: Vec<PathBuf> = cluster
        .credential_files()
        .iter()
        .filter_map(|(_, path)| path.parent())
        .filter(|folder| folder.parent() == Some(dir))
        .filter(|folder| {
            folder
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_own)
        })
        .filter(|folder| fs::symlink_metadata(folder).is_ok_and(|m| m.is_dir()))
        .map(Path::to_path_buf)
        .collect();
    folders.sort();
    folders.dedup();
    folders
}

/// Removes add-cluster's files from an old credentials folder, and the
/// folder when nothing else is left in it.
fn remove_old(folder: &Path) -> String {
    for own in OWN_FILES {
        match fs::remove_file(folder.join(own)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return format!(
                    "could not remove the old {}: {e}; remove it by hand",
                    folder.join(own).display()
                );
            }
            _ => {}
        }
    }
    match fs::remove_dir(folder) {
        Ok(()) => format!("removed the old credentials in {}", folder.display()),
        Err(_) => format!(
            "removed the old credentials from {}, which holds other files and stays",
            folder.display()
        ),
    }
}

/// Writes the credentials into `folder` of the staging folder; returns each
/// cluster-file key with the path it is to hold (relative to the cluster
/// file).
fn stage_credentials(
    staging: &Staging,
    folder: &str,
    context: &Context,
) -> Result<Vec<(&'static str, String)>, String> {
    staging
        .make_dir(folder, DIR_MODE)
        .map_err(|e| format!("cannot make {}: {e}", staging.root().join(folder).display()))?;
    let mut keys = Vec::new();
    let mut put = |key: &'static str, file_name: &str, bytes: &[u8]| -> Result<(), String> {
        let relative = format!("{folder}/{file_name}");
        staging.write(&relative, bytes, SECRET_MODE).map_err(|e| {
            format!(
                "cannot write {}: {e}",
                staging.root().join(&relative).display()
            )
        })?;
        keys.push((key, relative));
        Ok(())
    };
    match &context.credentials {
        Credentials::Token(token) => {
            let mut line = token.trim_ascii().to_vec();
            line.push(b'\n');
            put("token_file", "token", &line)?;
        }
        Credentials::ClientCertificate { cert, key } => {
            put("cert_file", "client.crt", cert)?;
            put("key_file", "client.key", key)?;
        }
        // The plugin makes the credential; the cluster file says how.
        Credentials::Exec(_) => {}
    }
    if let Some(ca) = &context.ca {
        put("ca_file", "ca.crt", ca)?;
    }
    Ok(keys)
}

/// The cluster file, written as TOML values by toml_edit: nothing of the
/// kubeconfig is pasted in as text. The comment names the context and the
/// kubeconfig with every control character escaped, so it stays one line.
fn cluster_text(
    name: &ClusterName,
    context: &Context,
    kubeconfig: &Path,
    keys: &[(&'static str, String)],
) -> Result<String, String> {
    let mut fields: Vec<(&str, toml_edit::Value)> =
        vec![("api_server", context.server.as_str().into())];
    fields.extend(keys.iter().map(|(k, v)| (*k, v.as_str().into())));
    if context.ca.is_none() {
        fields.push(("insecure_skip_verify", true.into()));
    }
    if let Some(server_name) = &context.tls_server_name {
        fields.push(("tls_server_name", server_name.as_str().into()));
    }
    let exec = match &context.credentials {
        Credentials::Exec(exec) => exec_fields(exec),
        _ => Vec::new(),
    };
    let mut doc = toml_edit::DocumentMut::new();
    for (key, value) in &fields {
        doc.insert(key, toml_edit::Item::Value(value.clone()));
    }
    if !exec.is_empty() {
        let mut table = toml_edit::Table::new();
        for (key, value) in &exec {
            table.insert(key, toml_edit::Item::Value(value.clone()));
        }
        table.decor_mut().set_prefix(
            "\n# The kubeconfig's exec credential plugin: promfed runs it and renews the token.\n",
        );
        doc.insert("exec", toml_edit::Item::Table(table));
    }
    let header = format!(
        "# Written by `promfed add-cluster {name}` from context `{}` of {}.\n",
        shown::visible(&context.name),
        shown::visible(&kubeconfig.display().to_string())
    );
    comment(&mut doc, "api_server", header);
    comment(
        &mut doc,
        "insecure_skip_verify",
        "# The kubeconfig skips TLS verification: anyone on the path can read the token.\n".into(),
    );
    let text = doc.to_string();
    if says_exactly(&text, &fields, &exec) {
        Ok(text)
    } else {
        Err("the cluster file made from this context would not say what the context says: refused (please report this)".into())
    }
}

fn comment(doc: &mut toml_edit::DocumentMut, key: &str, text: String) {
    if let Some(mut key) = doc.as_table_mut().key_mut(key) {
        key.leaf_decor_mut().set_prefix(text);
    }
}

/// The `[exec]` table's keys, as `config::credential_source` reads them.
fn exec_fields(exec: &kubeconfig::Exec) -> Vec<(&'static str, toml_edit::Value)> {
    let mut fields: Vec<(&'static str, toml_edit::Value)> = vec![
        ("api_version", exec.api_version.as_str().into()),
        ("command", exec.command.as_str().into()),
    ];
    if !exec.args.is_empty() {
        let args: toml_edit::Array = exec.args.iter().map(String::as_str).collect();
        fields.push(("args", args.into()));
    }
    if !exec.env.is_empty() {
        let mut env = toml_edit::InlineTable::new();
        for (name, value) in &exec.env {
            env.insert(name, value.as_str().into());
        }
        fields.push(("env", env.into()));
    }
    if let Some(mode) = &exec.interactive_mode {
        fields.push(("interactive_mode", mode.as_str().into()));
    }
    if exec.provide_cluster_info {
        fields.push(("provide_cluster_info", true.into()));
    }
    fields
}

/// Whether `text` holds exactly `fields` (and `[exec]` with exactly
/// `exec`, when there is one), no other key and no other value: the last
/// guard against a kubeconfig text that writes a key of its own.
fn says_exactly(
    text: &str,
    fields: &[(&str, toml_edit::Value)],
    exec: &[(&str, toml_edit::Value)],
) -> bool {
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        return false;
    };
    let top = doc.len() == fields.len() + usize::from(!exec.is_empty())
        && fields.iter().all(|(key, want)| {
            doc.get(key)
                .and_then(|i| i.as_value())
                .is_some_and(|got| same(got, want))
        });
    let table = exec.is_empty()
        || doc.get("exec").and_then(|i| i.as_table()).is_some_and(|t| {
            t.len() == exec.len()
                && exec.iter().all(|(key, want)| {
                    t.get(key)
                        .and_then(|i| i.as_value())
                        .is_some_and(|got| same(got, want))
                })
        });
    top && table
}

/// Whether two values say the same: strings, booleans, lists and inline
/// tables of them.
fn same(got: &toml_edit::Value, want: &toml_edit::Value) -> bool {
    use toml_edit::Value;
    match (got, want) {
        (Value::String(a), Value::String(b)) => a.value() == b.value(),
        (Value::Boolean(a), Value::Boolean(b)) => a.value() == b.value(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(a, b)| same(a, b))
        }
        (Value::InlineTable(a), Value::InlineTable(b)) => {
            a.len() == b.len()
                && b.iter()
                    .all(|(key, want)| a.get(key).is_some_and(|got| same(got, want)))
        }
        _ => false,
    }
}

/// The staged cluster judged as `promfed check` judges a cluster file (its
/// credentials read by Prometheus's user, their content as Prometheus
/// takes it), and its token as discovery will send it.
fn check_staged(staging: &Staging, file_name: &str, settings: &Settings) -> Result<(), String> {
    let staged = staging.root().join(file_name);
    let cluster = inventory::read_checked(&staged, &settings.defaults, &settings.prometheus.user)
        .map_err(|problems| {
        format!(
            "the context does not make a valid cluster file: {}",
            problems.join("; ")
        )
    })?;
    if let Some(token) = &cluster.auth.token_file {
        crate::discovery::token_in(token)
            .map_err(|why| format!("token_file {} {why}", token.display()))?;
    }
    Ok(())
}

/// A message about a staged file, with the path it would have had in the
/// clusters folder.
fn in_clusters_dir(text: String, staging: &Staging, dir: &Path) -> String {
    text.replace(
        &staging.root().display().to_string(),
        &dir.display().to_string(),
    )
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
