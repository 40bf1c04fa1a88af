//! The files of one cluster's obtained credential, under
//! `<state_dir>/credentials/<cluster>/`: `token` (or `client.crt` and
//! `client.key`), each 0640 in Prometheus's group and replaced atomically,
//! and `credential.json`: when it expires and is renewed (no secret).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Issued, Secret};
use crate::config::names::ClusterName;
use crate::fsutil;

/// Read by promfed and Prometheus's group, by no one else.
const SECRET_MODE: u32 = 0o640;
/// Searchable by Prometheus's group.
const DIR_MODE: u32 = 0o750;
const MAX_META: u64 = 64 << 10;

#[derive(Debug, Clone)]
pub struct Files {
    /// The credentials folder of every cluster.
    pub root: PathBuf,
    pub dir: PathBuf,
    pub token: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub meta: PathBuf,
}

/// What `credential.json` holds: times in seconds since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// `token` or `certificate`.
    pub kind: String,
    pub expires: Option<i64>,
    pub renewed: Option<i64>,
    /// When the next renewal is due, as the daemon planned it.
    #[serde(default)]
    pub next_renewal: Option<i64>,
}

impl Files {
    pub fn of(root: &Path, cluster: &ClusterName) -> Files {
        let dir = root.join(cluster.as_str());
        Files {
            token: dir.join("token"),
            cert: dir.join("client.crt"),
            key: dir.join("client.key"),
            meta: dir.join("credential.json"),
            dir,
            root: root.to_path_buf(),
        }
    }

    pub fn has_certificate(&self) -> bool {
        self.cert.is_file() && self.key.is_file()
    }

    /// The kept times, if any were written.
    pub fn meta(&self) -> Option<Meta> {
        let bytes = fsutil::read_regular(&self.meta, MAX_META).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write_meta(&self, meta: &Meta) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        fsutil::write_if_changed(&self.meta, &text, 0o644).map(|_| ())
    }

    /// Writes `issued` over the last credential, and removes the files of
    /// the other kind; `true` when the kind changed (the configuration then
    /// names other files).
    pub fn write(&self, issued: &Issued, group: Option<u32>) -> io::Result<bool> {
        self.make_dir(group)?;
        let was_certificate = self.has_certificate();
        match &issued.secret {
            Secret::Token(token) => {
                write_secret(&self.token, token.as_bytes(), group)?;
                remove(&self.cert)?;
                remove(&self.key)?;
            }
            Secret::Certificate { cert, key } => {
                // The key first: a reader pairing a new certificate with
                // the old key would fail its handshake.
                write_secret(&self.key, key.as_bytes(), group)?;
                write_secret(&self.cert, cert.as_bytes(), group)?;
                remove(&self.token)?;
            }
        }
        let kind = match issued.secret {
            Secret::Token(_) => "token",
            Secret::Certificate { .. } => "certificate",
        };
        let now = jiff::Timestamp::now().as_second();
        self.write_meta(&Meta {
            kind: kind.into(),
            expires: issued.expires.map(|t| t.as_second()),
            renewed: Some(now),
            next_renewal: None,
        })?;
        Ok(was_certificate != matches!(issued.secret, Secret::Certificate { .. }))
    }

    /// An empty token file where none is yet, so that the configuration
    /// that names it is valid: until the first credential comes, Prometheus
    /// and discovery are refused (401, "is empty"), that cluster alone.
    pub fn placeholder(&self, group: Option<u32>) -> io::Result<()> {
        if self.token.exists() || self.has_certificate() {
            return Ok(());
        }
        self.make_dir(group)?;
        write_secret(&self.token, b"", group)
    }

    fn make_dir(&self, group: Option<u32>) -> io::Result<()> {
        private_dirs(&self.root, &self.dir, group)
    }
}

/// `dir` and every folder from `root` down to it, each `private_dir`:
/// Prometheus must be able to search all of them, not only the last.
pub(super) fn private_dirs(root: &Path, dir: &Path, group: Option<u32>) -> io::Result<()> {
    let below = dir.strip_prefix(root).map_err(|_| {
        io::Error::other(format!("{} is not under {}", dir.display(), root.display()))
    })?;
    let mut at = root.to_path_buf();
    private_dir(&at, group)?;
    for part in below.components() {
        at.push(part);
        private_dir(&at, group)?;
    }
    Ok(())
}

/// A folder that Prometheus's group may search, and no one else.
fn private_dir(dir: &Path, group: Option<u32>) -> io::Result<()> {
    fsutil::create_dir(dir, DIR_MODE)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    give_to_group(dir, group)
}

/// Hands `path` to Prometheus's group. Only root, or a member of the group,
/// can; a failure is said here, where its cause is plain, rather than as
/// "not readable by prometheus" later.
fn give_to_group(path: &Path, group: Option<u32>) -> io::Result<()> {
    let Some(gid) = group else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot give {} to group {gid} (Prometheus's): {e}; promfed's user must be in that group", path.display()),
        )
    })
}

/// Written beside, given the group and mode, then renamed over: Prometheus
/// reads either the old credential or the new, never half of one.
pub(super) fn write_secret(target: &Path, bytes: &[u8], group: Option<u32>) -> io::Result<()> {
    let written = fsutil::write_beside(target, bytes, SECRET_MODE)?;
    let placed = (|| {
        std::fs::set_permissions(&written, std::fs::Permissions::from_mode(SECRET_MODE))?;
        give_to_group(&written, group)?;
        fsutil::rename_into_place(&written, target)
    })();
    if placed.is_err() {
        let _ = std::fs::remove_file(&written);
    }
    placed
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn issued(secret: Secret) -> Issued {
        Issued {
            secret,
            expires: Some(jiff::Timestamp::from_second(2_000_000_000).unwrap()),
        }
    }

    /// Prometheus's user, in the group, and no one else can reach the
    /// files, through every folder promfed made on the way.
    #[test]
    fn prometheus_can_read_them_and_others_cannot_through_every_folder() {
        use crate::access::Identity;
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let nobody = Identity::lookup("nobody").expect("Debian has `nobody`");
        let root = state.path().join("credentials");
        let files = Files::of(&root, &ClusterName::parse("prod").unwrap());
        let token = issued(Secret::Token("t-1".into()));
        files.write(&token, Some(nobody.primary_gid())).unwrap();
        assert_eq!(nobody.can_read(&files.token), Ok(()));
        let other = Identity::lookup("daemon").expect("Debian has `daemon`");
        assert!(other.can_read(&files.token).is_err());
        for dir in [&root, &files.dir] {
            let m = std::fs::metadata(dir).unwrap();
            assert_eq!((m.mode() & 0o777, m.gid()), (0o750, nobody.primary_gid()));
        }
    }

    #[test]
    fn a_token_then_a_certificate_replace_each_other_0640_in_the_group() {
        let root = tempfile::tempdir().unwrap();
        let files = Files::of(root.path(), &ClusterName::parse("prod").unwrap());
        files.placeholder(None).unwrap();
        assert_eq!(std::fs::read(&files.token).unwrap(), b"");
        let gid = std::fs::metadata(root.path()).unwrap().gid();
        let changed = files
            .write(&issued(Secret::Token("t-1".into())), Some(gid))
            .unwrap();
        assert!(!changed);
        let m = std::fs::metadata(&files.token).unwrap();
        assert_eq!((m.mode() & 0o777, m.gid()), (0o640, gid));
        assert_eq!(std::fs::read_to_string(&files.token).unwrap(), "t-1");
        assert_eq!(std::fs::metadata(&files.dir).unwrap().mode() & 0o777, 0o750);
        let meta = files.meta().unwrap();
        assert_eq!(
            (meta.kind.as_str(), meta.expires),
            ("token", Some(2_000_000_000))
        );
        let cert = Secret::Certificate {
            cert: "-----BEGIN CERTIFICATE-----".into(),
            key: "-----BEGIN PRIVATE KEY-----".into(),
        };
        assert!(files.write(&issued(cert), None).unwrap());
        assert!(files.has_certificate() && !files.token.exists());
        assert_eq!(std::fs::metadata(&files.key).unwrap().mode() & 0o777, 0o640);
        // The meta file names no secret.
        assert!(
            !std::fs::read_to_string(&files.meta)
                .unwrap()
                .contains("BEGIN")
        );
    }
}
