//! Which Prometheus the generated file is for: the one place where what
//! promfed writes depends on the version. promtool judges every file before
//! Prometheus reads it, so its major version is the one that counts.
//!
//! Asking costs a run of `promtool --version`; the answer is kept in the
//! state folder, keyed by the promtool file itself (an upgrade replaces it),
//! so that a transaction with nothing to do still runs no promtool.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Prometheus 2 (Debian 12's 2.42, Debian 13's 2.53), and whatever
    /// promtool does not say: the file every version accepts.
    Prometheus2,
    /// Prometheus 3 (Debian sid's 3.5 LTS).
    Prometheus3,
}

/// The cache file's name in the state folder.
const CACHE: &str = "promtool-version";

impl Dialect {
    /// `fallback_scrape_protocol` for every generated job. Prometheus 3 fails
    /// a scrape whose Content-Type is missing or unknown unless told how to
    /// parse it; 2.x parsed such a body as text, and refuses the key.
    pub fn fallback_scrape_protocol(self) -> Option<&'static str> {
        match self {
            Dialect::Prometheus2 => None,
            Dialect::Prometheus3 => Some("PrometheusText0.0.4"),
        }
    }

    /// The dialect of the Prometheus that `promtool` belongs to.
    pub fn of(promtool: &Path, state_dir: &Path) -> Dialect {
        let Some(key) = identity(promtool) else {
            return Dialect::Prometheus2;
        };
        let cache = state_dir.join(CACHE);
        if let Some(known) = std::fs::read_to_string(&cache)
            .ok()
            .and_then(|text| cached(&text, &key))
        {
            return known;
        }
        // No answer is not kept: the next transaction asks again.
        let Some(major) = ask(promtool) else {
            return Dialect::Prometheus2;
        };
        // A state folder not made yet, or not ours to write: ask next time.
        let _ = crate::fsutil::write_atomic(&cache, format!("{key}\n{major}\n").as_bytes(), 0o644);
        from_major(major)
    }
}

/// The promtool file as installed: its path and what a new install changes.
fn identity(promtool: &Path) -> Option<String> {
    let meta = std::fs::metadata(promtool).ok()?;
    Some(format!(
        "{} {} {} {} {}.{}",
        promtool.display(),
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

fn cached(text: &str, key: &str) -> Option<Dialect> {
    let (line, major) = text.split_once('\n')?;
    (line == key).then_some(())?;
    major.trim().parse().ok().map(from_major)
}

fn from_major(major: u32) -> Dialect {
    if major >= 3 {
        Dialect::Prometheus3
    } else {
        Dialect::Prometheus2
    }
}

/// Runs `promtool --version`, for at most 5 s.
fn ask(promtool: &Path) -> Option<u32> {
    let mut child = Command::new(promtool)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    major(&out)
}

/// `promtool, version 3.5.3+ds1 (branch: …)` → 3.
fn major(version_text: &str) -> Option<u32> {
    let (_, rest) = version_text.split_once("version ")?;
    rest.split(['.', ' ']).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_is_read_from_what_promtool_prints() {
        let text = "promtool, version 3.5.3+ds1 (branch: debian/sid, revision: 3.5.3+ds1-6)\n  build user: x\n";
        assert_eq!(major(text), Some(3));
        assert_eq!(major("promtool, version 2.42.0+ds (branch: x)"), Some(2));
        assert_eq!(major("something else"), None);
        assert_eq!(from_major(2), Dialect::Prometheus2);
        assert_eq!(from_major(4), Dialect::Prometheus3);
    }

    /// A fake promtool that counts its runs and says it is `version`,
    /// installed as a new file (renamed into place, as an upgrade does).
    /// Written by a shell: a file this process held open for writing could
    /// leak into another test's fork and make exec fail with ETXTBSY.
    fn fake_promtool(dir: &Path, version: &str) -> std::path::PathBuf {
        let script = format!(
            "#!/bin/sh\necho run >> {}/runs\necho 'promtool, version {version} (branch: x)'\n",
            dir.display()
        );
        let made = Command::new("sh")
            .arg("-c")
            .arg("printf '%s' \"$1\" > \"$2.new\" && chmod 755 \"$2.new\" && mv \"$2.new\" \"$2\"")
            .arg("sh")
            .arg(script)
            .arg(dir.join("promtool"))
            .status()
            .unwrap();
        assert!(made.success());
        dir.join("promtool")
    }

    fn runs(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    #[test]
    fn promtool_is_asked_once_until_it_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let promtool = fake_promtool(dir.path(), "2.53.3");
        assert_eq!(Dialect::of(&promtool, &state), Dialect::Prometheus2);
        assert_eq!(Dialect::of(&promtool, &state), Dialect::Prometheus2);
        assert_eq!(runs(dir.path()), 1, "the second answer came from the cache");

        let promtool = fake_promtool(dir.path(), "3.5.3+ds1");
        assert_eq!(Dialect::of(&promtool, &state), Dialect::Prometheus3);
        assert_eq!(Dialect::of(&promtool, &state), Dialect::Prometheus3);
        assert_eq!(runs(dir.path()), 2, "the upgrade was seen, then cached");
    }

    #[test]
    fn a_missing_promtool_or_state_folder_still_gives_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        assert_eq!(
            Dialect::of(&missing.join("promtool"), &missing),
            Dialect::Prometheus2
        );
        let promtool = fake_promtool(dir.path(), "3.5.3");
        assert_eq!(Dialect::of(&promtool, &missing), Dialect::Prometheus3);
        assert_eq!(Dialect::of(&promtool, &missing), Dialect::Prometheus3);
        assert_eq!(
            runs(dir.path()),
            2,
            "nowhere to keep the answer: asked again"
        );

        // A promtool that does not say its version: 2, and not kept.
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let promtool = fake_promtool(dir.path(), "unknown");
        assert_eq!(Dialect::of(&promtool, &state), Dialect::Prometheus2);
        assert_eq!(Dialect::of(&promtool, &state), Dialect::Prometheus2);
        assert_eq!(runs(dir.path()), 4);
        assert!(!state.join(CACHE).exists());
    }
}
