//! Each cluster's last applied definition, kept in the state folder so that a
//! cluster whose file breaks keeps being monitored as it was. What is kept is
//! the file's text and where it was, so a kept definition is validated by
//! the same code as a current one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cluster::Cluster;
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
        let parsed = Cluster::parse(&SourceText::new(kept.file, kept.text), &stem).ok()?;
        (parsed.cluster.name == *name).then_some(parsed.cluster)
    }

    /// Records the clusters that were just applied, from the texts they were
    /// read from, and forgets the ones that are gone.
    pub fn record(
        &self,
        applied: &[(&Cluster, &str)],
        keep: &[&ClusterName],
    ) -> std::io::Result<()> {
        fsutil::create_dir(&self.dir, 0o750)?;
        for (cluster, text) in applied {
            let kept = Kept {
                file: cluster.source.clone(),
                text: (*text).to_string(),
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
