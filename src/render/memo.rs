//! Each cluster's jobs as YAML, kept from one render to the next: the
//! daemon renders every cluster on every change, and at 1000 clusters the
//! YAML of all of them took half a second, for one cluster that changed.
//! A cluster is rendered again only when its definition or the settings its
//! jobs read differ from last time. Rendering stays a pure function of its
//! inputs; this only remembers answers.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::cluster::Cluster;
use crate::config::settings::Settings;

use super::files::NamedFile;
use super::jobs;

struct Remembered {
    /// A keyed digest of the definition: a copy would double what the
    /// daemon holds per cluster.
    cluster: u64,
    /// The settings the jobs read, as `settings_key` gives them.
    settings: String,
    yaml: jobs::JobsYaml,
    files: Vec<NamedFile>,
}

static MEMO: Mutex<Option<HashMap<String, Remembered>>> = Mutex::new(None);

/// What of `settings` a cluster's jobs depend on.
fn settings_key(settings: &Settings) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?}",
        settings.scrape_interval,
        settings.scrape_timeout,
        settings.targets_dir(),
        settings.discovery,
        settings.dialect()
    )
}

/// The jobs of `clusters`, in order, as one YAML block list, and the files
/// they name. Forgets the clusters not asked for, so the memo holds what is
/// in force and no more.
pub fn jobs_yaml(clusters: &[&Cluster], settings: &Settings) -> (String, Vec<NamedFile>) {
    let key = settings_key(settings);
    let mut guard = MEMO.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous = guard.take().unwrap_or_default();
    let mut previous = previous;
    let mut kept = HashMap::with_capacity(clusters.len());
    let mut out = String::new();
    let mut files = Vec::new();
    for cluster in clusters {
        let name = cluster.name.as_str();
        let digest = crate::digest::keyed(*cluster);
        let remembered = match previous.remove(name) {
            Some(r) if r.cluster == digest && r.settings == key => r,
            _ => {
                let (yaml, named) = jobs::cluster_yaml(cluster, settings);
                Remembered {
                    cluster: digest,
                    settings: key.clone(),
                    yaml,
                    files: named,
                }
            }
        };
        for (own, drops) in &remembered.yaml {
            out.push_str(own);
            out.push_str(drops);
        }
        files.extend(remembered.files.iter().cloned());
        kept.insert(name.to_string(), remembered);
    }
    *guard = Some(kept);
    (out, files)
}
