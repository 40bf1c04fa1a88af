//! Prometheus's own copy of a cluster's bearer token: a new file for every
//! new token, under `<state_dir>/credentials/<cluster>/prometheus/`, named
//! `token.<n>`.
//!
//! Why: Prometheus builds on prometheus/common 0.69 and 0.70 (Debian's
//! 3.5.3+ds1, upstream 3.13 and later) read a `credentials_file` once per
//! scrape loop and keep that token. Their `cloneRequest` shares the header
//! map it means to copy (prometheus/common#981), so the first
//! `Authorization` header stays on the request each loop reuses, and the
//! file is never read again. A new name changes the job, and the reload
//! that follows gives its loops new requests. The same name is kept while
//! the token is the same, so an unchanged token costs no reload.

use std::io;
use std::path::{Path, PathBuf};

use super::file::{private_dirs, write_secret};
use crate::fsutil;

/// A token is a few KiB at most (a JWT with many claims).
const MAX_TOKEN: u64 = 64 << 10;
/// Copies kept: the one in force, and the ones before it in case an
/// install did not take (the older tokens have expired by then).
const KEEP: usize = 3;
const PREFIX: &str = "token.";

/// The folder of one cluster's copies.
pub fn dir(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("prometheus")
}

/// The copy in `dir` (under the credentials folder `root`) that holds
/// `token`'s current content, written if it is new (0640 in `group`); the
/// older copies beyond `KEEP` are removed. Each transaction asks: at 1000
/// clusters that is 25 ms when no token changed (two small reads and a
/// listing each), 0.8 s when every copy is new (each fsynced).
pub fn publish(root: &Path, dir: &Path, token: &Path, group: Option<u32>) -> io::Result<PathBuf> {
    let content = fsutil::read_regular(token, MAX_TOKEN)?;
    let (path, exists) = name_for(dir, &content)?;
    if !exists {
        private_dirs(root, dir, group)?;
        write_secret(&path, &content, group)?;
        remove_older(dir)?;
    }
    Ok(path)
}

/// The name `publish` would give `token` now, writing nothing (for
/// `promfed render`).
pub fn would_publish(dir: &Path, token: &Path) -> io::Result<PathBuf> {
    let content = fsutil::read_regular(token, MAX_TOKEN)?;
    name_for(dir, &content).map(|(path, _)| path)
}

/// The newest copy when it holds `content`, else the next name; `true`
/// when the copy exists already.
fn name_for(dir: &Path, content: &[u8]) -> io::Result<(PathBuf, bool)> {
    let newest = generations(dir)?.last().copied();
    if let Some(n) = newest {
        let path = copy(dir, n);
        if fsutil::read_regular(&path, MAX_TOKEN).ok().as_deref() == Some(content) {
            return Ok((path, true));
        }
    }
    let next = newest.map_or(1, |n| n.saturating_add(1));
    Ok((copy(dir, next), false))
}

fn copy(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}"))
}

/// The numbers of the copies in `dir`, ascending; none when it is absent.
/// Other names (a write in progress beside a copy) are not copies.
fn generations(dir: &Path) -> io::Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found: Vec<u64> = entries
        .flatten()
        .filter_map(|e| generation(e.file_name().to_str()?))
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// `token.12` → 12; digits only, so `token.12.tmp` or `token.+1` is none.
fn generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn remove_older(dir: &Path) -> io::Result<()> {
    let found = generations(dir)?;
    for n in found.iter().rev().skip(KEEP) {
        match std::fs::remove_file(copy(dir, *n)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_new_token_gets_a_new_name_and_the_same_token_keeps_its_own() {
        let root = tempfile::tempdir().unwrap();
        let token = root.path().join("token");
        let dir = dir(&root.path().join("prod"));
        std::fs::write(&token, "t-1").unwrap();
        let gid = std::fs::metadata(root.path()).unwrap().gid();
        let first = publish(root.path(), &dir, &token, Some(gid)).unwrap();
        assert_eq!(first, dir.join("token.1"));
        assert_eq!(
            publish(root.path(), &dir, &token, Some(gid)).unwrap(),
            first
        );
        let m = std::fs::metadata(&first).unwrap();
        assert_eq!((m.mode() & 0o777, m.gid()), (0o640, gid));
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o750);

        std::fs::write(&token, "t-2").unwrap();
        assert_eq!(would_publish(&dir, &token).unwrap(), dir.join("token.2"));
        assert!(
            !dir.join("token.2").exists(),
            "would_publish writes nothing"
        );
        let second = publish(root.path(), &dir, &token, None).unwrap();
        assert_eq!(second, dir.join("token.2"));
        assert_eq!(std::fs::read(&second).unwrap(), b"t-2");
        assert_eq!(
            std::fs::read(&first).unwrap(),
            b"t-1",
            "a copy never changes"
        );
    }

    #[test]
    fn prometheus_reaches_a_copy_through_every_folder_made_for_it() {
        use crate::access::Identity;
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let nobody = Identity::lookup("nobody").expect("Debian has `nobody`");
        let token = state.path().join("token");
        std::fs::write(&token, "t-1").unwrap();
        let root = state.path().join("credentials");
        let copies = dir(&root.join("prod"));
        let copy = publish(&root, &copies, &token, Some(nobody.primary_gid())).unwrap();
        assert_eq!(nobody.can_read(&copy), Ok(()));
    }

    #[test]
    fn only_the_newest_copies_are_kept_and_strangers_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let token = root.path().join("token");
        let dir = dir(root.path());
        for n in 1..=6 {
            std::fs::write(&token, format!("t-{n}")).unwrap();
            publish(root.path(), &dir, &token, None).unwrap();
        }
        std::fs::write(dir.join("token.7.tmp"), "x").unwrap();
        std::fs::write(&token, "t-7").unwrap();
        publish(root.path(), &dir, &token, None).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["token.5", "token.6", "token.7", "token.7.tmp"]);
    }

    #[test]
    fn a_missing_or_oversized_token_is_an_error_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir(root.path());
        assert!(publish(root.path(), &dir, &root.path().join("absent"), None).is_err());
        let big = root.path().join("big");
        std::fs::write(&big, vec![b'a'; (MAX_TOKEN + 1) as usize]).unwrap();
        assert!(publish(root.path(), &dir, &big, None).is_err());
        assert!(!dir.exists());
    }

    #[test]
    fn only_plain_numbers_are_copies() {
        assert_eq!(generation("token.3"), Some(3));
        for name in ["token.", "token.+1", "token.1.tmp", "token.x", "other.1"] {
            assert_eq!(generation(name), None, "{name}");
        }
        assert_eq!(generation("token.99999999999999999999999"), None);
    }
}
