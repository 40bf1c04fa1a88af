//! Can a given user read a file? promtool does not check every file a config
//! names (it skips `ca_file`), and promfed usually runs as another user than
//! Prometheus, so this is checked from the permission bits themselves.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};

/// A user and the groups it belongs to.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    uid: u32,
    gid: u32,
    gids: Vec<u32>,
}

impl Identity {
    pub fn lookup(name: &str) -> Result<Identity, String> {
        let user = User::from_name(name)
            .map_err(|e| format!("cannot look up user `{name}`: {e}"))?
            .ok_or_else(|| format!("no such user `{name}`"))?;
        let cname = std::ffi::CString::new(name).map_err(|_| format!("bad user name `{name}`"))?;
        let gids = nix::unistd::getgrouplist(&cname, user.gid)
            .unwrap_or_else(|_| vec![user.gid])
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        Ok(Identity {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            gids,
        })
    }

    /// The user's own group (`prometheus` for the packaged Prometheus).
    pub fn primary_gid(&self) -> u32 {
        self.gid
    }

    fn is_root(&self) -> bool {
        Uid::from_raw(self.uid).is_root()
    }

    /// `Ok(())` if the user can open `path` for reading, else why not.
    pub fn can_read(&self, path: &Path) -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_string(),
            _ => format!("cannot be read: {e}"),
        })?;
        if !meta.is_file() {
            return Err("is not a regular file".into());
        }
        if self.is_root() {
            return Ok(());
        }
        // Every folder on the way must be searchable.
        let absolute = std::path::absolute(path).map_err(|e| e.to_string())?;
        for dir in absolute.ancestors().skip(1) {
            let m = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if !self.allowed(&m, 0o1) {
                return Err(format!(
                    "is not readable by user `{}`: folder {} is not searchable by it",
                    self.name,
                    dir.display()
                ));
            }
        }
        if !self.allowed(&meta, 0o4) {
            return Err(format!(
                "is not readable by user `{}` (owner {}, group {}, mode {:o})",
                self.name,
                owner_name(meta.uid()),
                group_name(meta.gid()),
                meta.permissions().mode() & 0o7777
            ));
        }
        Ok(())
    }

    /// Whether the owner, group or other bits grant `bit` (4 = read, 1 = search).
    fn allowed(&self, meta: &std::fs::Metadata, bit: u32) -> bool {
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & (bit << 6) != 0
        } else if self.gids.contains(&meta.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    }
}

/// Secrets should not be readable by every user on the host. A file with
/// the "other" read bit in a folder others may not search (the documented
/// 0750 folder) is not: every folder on the way must let them through.
pub fn world_readable(path: &Path) -> bool {
    let readable = std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o004 != 0);
    let Ok(absolute) = std::path::absolute(path) else {
        return readable;
    };
    readable
        && absolute
            .ancestors()
            .skip(1)
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0))
}

fn owner_name(uid: u32) -> String {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

fn group_name(gid: u32) -> String {
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn root_reads_anything_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let root = Identity::lookup("root").unwrap();
        assert_eq!(root.can_read(&f), Ok(()));
        assert_eq!(
            root.can_read(&dir.path().join("nope")),
            Err("does not exist".into())
        );
        assert!(!world_readable(&f));
    }

    #[test]
    fn a_file_in_a_folder_others_cannot_search_is_not_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let secrets = dir.path().join("prod");
        std::fs::create_dir(&secrets).unwrap();
        let token = secrets.join("token");
        std::fs::write(&token, "t").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(world_readable(&token));
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(
            !world_readable(&token),
            "a 0750 folder keeps it from others"
        );
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(!world_readable(&token));
    }

    #[test]
    fn another_user_is_held_to_the_mode_bits() {
        let Ok(nobody) = Identity::lookup("nobody") else {
            panic!("the user `nobody` is expected on Debian");
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.path().join("ca.crt");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = nobody.can_read(&f).unwrap_err();
        assert!(
            err.starts_with("is not readable by user `nobody` (owner root, group root, mode 640)"),
            "{err}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(nobody.can_read(&f), Ok(()));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            nobody
                .can_read(&f)
                .unwrap_err()
                .contains("is not searchable")
        );
    }
}
