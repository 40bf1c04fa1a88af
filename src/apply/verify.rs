//! Stage 4, reload and verify: `Installed → Verified`. The program is asked
//! to re-read its file, then what it has in force is compared with what was
//! installed; anything but an exact match is an error.
//!
//! The comparison reads the whole configuration back (Prometheus's
//! `/api/v1/status/config`: 8.7 MB and over a second at 1000 clusters), so
//! it is made once per run of the program. A program reads the same file for
//! as long as it runs: once one run was shown to load promfed's file, a
//! newer successful load in that run is a load of promfed's file.

use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::install::Installed;
use crate::fsutil;
use crate::programs::{LastLoad, Program, VerifyError};

/// Proof that a program runs exactly an installed configuration. Only this
/// stage makes one.
#[derive(Debug)]
pub struct Verified(());

pub async fn verify(
    program: &impl Program,
    installed: &Installed,
    proof: &Path,
) -> Result<Verified, VerifyError> {
    reload_and_verify(program, installed.text(), proof).await
}

/// What promfed saw when it last verified a file: the load time the program
/// reported and a fingerprint of the bytes. Load times have whole seconds,
/// so "loaded after the file was written" cannot tell a load in the same
/// second before the install from one after it; this record can.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Proof {
    /// The verified load happened in these seconds (inclusive).
    loaded_after: i64,
    loaded_until: i64,
    fingerprint: u64,
    /// The run of the program that was shown to load promfed's file.
    instance: Option<String>,
}

impl Proof {
    fn read(path: &Path) -> Option<Proof> {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Whether `instance` is a run already shown to read our file.
    fn knows_run(&self, instance: Option<&String>) -> bool {
        instance.is_some() && self.instance.as_ref() == instance
    }

    /// Whether `last` is the load this proof is about, of `text`.
    fn is_load_of(&self, last: &LastLoad, text: &str) -> bool {
        self.fingerprint == fingerprint(text)
            && (self.loaded_after..=self.loaded_until).contains(&last.success_second)
            && (last.instance.is_none() || self.instance == last.instance)
    }
}

/// FNV-1a: enough to tell one generated file from another.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// When a file was last written, in whole seconds since the epoch.
fn modified_second(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    i64::try_from(modified.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// Reloads and proves that `config` is the configuration in force, and
/// records the proof; also used for the file a rollback restores.
pub(super) async fn reload_and_verify(
    program: &impl Program,
    config: &str,
    proof: &Path,
) -> Result<Verified, VerifyError> {
    let started = std::time::Instant::now();
    let reloaded = program.reload().await?;
    tracing::debug!(stage = "reload", program = program.name(), took = ?started.elapsed());
    let known_run = Proof::read(proof).is_some_and(|p| p.knows_run(reloaded.instance.as_ref()));
    if !known_run {
        let loaded = program
            .in_force()
            .await
            .map_err(|e| VerifyError::Unreachable(program.name(), e))?;
        compare(&program.expected(config), &loaded)?;
    }
    // Without the record the next transaction reloads once more: no harm.
    let record = Proof {
        loaded_after: reloaded.after,
        loaded_until: reloaded.until,
        fingerprint: fingerprint(config),
        instance: reloaded.instance,
    };
    let json = serde_json::to_vec(&record).expect("a proof serialises");
    let _ = proof
        .parent()
        .map_or(Ok(()), |dir| fsutil::create_dir(dir, 0o750))
        .and_then(|()| fsutil::write_atomic(proof, &json, 0o644));
    Ok(Verified(()))
}

/// Whether the program runs the installed file: its last load succeeded and
/// has exactly the file's jobs (routes), and it either came after the file
/// was written or is the very load promfed verified for these bytes. Equal
/// bytes alone prove nothing: a reload may have been lost.
pub async fn in_force(
    program: &impl Program,
    installed: &Installed,
    proof: &Path,
) -> Result<bool, String> {
    runs(program, installed.target(), installed.text(), proof).await
}

/// Whether the program runs `text`, which is what `target` holds: the
/// question of `in_force`, asked before anything is gated or installed.
pub async fn runs(
    program: &impl Program,
    target: &Path,
    text: &str,
    proof: &Path,
) -> Result<bool, String> {
    let last = program.last_load().await?;
    if !last.successful {
        return Ok(false);
    }
    let installed_second = modified_second(target).unwrap_or(i64::MAX);
    let proof = Proof::read(proof);
    let verified = proof.as_ref().is_some_and(|p| p.is_load_of(&last, text));
    if last.success_second <= installed_second && !verified {
        return Ok(false);
    }
    if proof.is_some_and(|p| p.knows_run(last.instance.as_ref())) {
        return Ok(true);
    }
    let loaded = program.in_force().await?;
    Ok(compare(&program.expected(text), &loaded).is_ok())
}

fn compare(expected: &[String], loaded: &[String]) -> Result<(), VerifyError> {
    let missing: Vec<String> = expected
        .iter()
        .filter(|j| !loaded.contains(j))
        .cloned()
        .collect();
    let unexpected: Vec<String> = loaded
        .iter()
        .filter(|j| !expected.contains(j))
        .cloned()
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::Differs {
            missing,
            unexpected,
        })
    }
}
