//! Each cluster's last applied definition, kept in the state folder so that a
//! cluster whose file breaks keeps being monitored as it was. What is kept is
//! the file's text and where it was, and the `[defaults]` it was applied
//! with, so a kept definition is validated by the same code as a current
//! one and means what it meant then: a default changed since is not applied
//! to a definition it was never checked with (it applies once the file is
//! fixed, and the kept copy is replaced at the next apply that takes).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cluster::Cluster;
use super::defaults::Defaults;
use super::diagnostic::SourceText;
use super::names::ClusterName;
use crate::fsutil;

pub struct LastGood {
    dir: PathBuf,
}

/// One kept cluster file.
#[derive(Serialize, Deserialize)]
struct Kept {
    file: PathBuf,
    text: String,
    /// `[defaults]` as they were (absent in copies kept before there were
    /// defaults, which were applied without any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    defaults: Option<KeptDefaults>,
}

#[derive(Serialize, Deserialize)]
struct KeptDefaults {
    file: PathBuf,
    text: String,
}

impl LastGood {
    pub fn new(last_good_dir: &Path) -> Self {
        Self {
            dir: last_good_dir.join("clusters"),
        }
    }

    fn path(&self, name: &ClusterName) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The kept definition of `name`, if there is one and it is still valid
    /// for this version of promfed.
    pub fn load(&self, name: &ClusterName) -> Option<Cluster> {
        let bytes = std::fs::read(self.path(name)).ok()?;
        let kept: Kept = serde_json::from_slice(&bytes).ok()?;
        let stem = kept.file.file_stem()?.to_str()?.to_string();
        let defaults = kept
            .defaults
            .map_or_else(Defaults::none, |d| Defaults::from_snapshot(d.file, d.text));
        let source = SourceText::new(kept.file, kept.text);
        let parsed = Cluster::parse_with(&source, &stem, &defaults).ok()?;
        (parsed.cluster.name == *name).then_some(parsed.cluster)
    }

    /// Records the clusters that were just applied, from the texts they were
    /// read from with `defaults` under them, and forgets the ones that are
    /// gone.
    pub fn record(
        &self,
        applied: &[(&Cluster, &str)],
        defaults: &Defaults,
        keep: &[&ClusterName],
    ) -> std::io::Result<()> {
        fsutil::create_dir(&self.dir, 0o750)?;
        let snapshot = defaults.snapshot();
        for (cluster, text) in applied {
            let kept = Kept {
                file: cluster.source.clone(),
                text: (*text).to_string(),
                defaults: snapshot.as_ref().map(|(file, text)| KeptDefaults {
                    file: file.clone(),
                    text: text.clone(),
                }),
            };
            let json = serde_json::to_vec_pretty(&kept).expect("a kept file serialises");
            fsutil::write_if_changed(&self.path(&cluster.name), &json, 0o600)?;
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            // A kept definition this version no longer accepts (one an
            // older version kept with a password in a URL, say) could
            // never be used again: it goes, and what it holds with it.
            let wanted = applied.iter().any(|(c, _)| c.name.as_str() == stem)
                || keep
                    .iter()
                    .any(|n| n.as_str() == stem && self.load(n).is_some());
            if !wanted {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}
