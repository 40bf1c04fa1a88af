//! Each cluster's last applied definition, kept in the state folder so that a
//! cluster whose file breaks keeps being monitored as it was.

use std::path::{Path, PathBuf};

use crate::config::cluster::Cluster;
use crate::config::names::ClusterName;
use crate::fsutil;

pub struct LastGood {
    dir: PathBuf,
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

    pub fn load(&self, name: &ClusterName) -> Option<Cluster> {
        let bytes = std::fs::read(self.path(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records the clusters that were just applied and forgets the ones that
    /// are gone.
    pub fn record(&self, applied: &[&Cluster], keep: &[&ClusterName]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        for cluster in applied {
            let json = serde_json::to_vec_pretty(cluster).expect("a cluster serialises");
            fsutil::write_if_changed(&self.path(&cluster.name), &json, 0o600)?;
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let wanted = applied.iter().any(|c| c.name.as_str() == stem)
                || keep.iter().any(|n| n.as_str() == stem);
            if !wanted {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}
