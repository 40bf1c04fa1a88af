//! When promtool (amtool) refuses a candidate, whose fault is it? One broken
//! cluster must never hold the others back, whatever the breakage, so the
//! clusters whose jobs make the tool refuse are found by bisection (about
//! 2·k·log₂ n checks for k culprits among n clusters) and held back.

use std::path::Path;

use super::managed::Managed;
use crate::config::cluster::Cluster;
use crate::config::names::ClusterName;
use crate::config::settings::Settings;

/// A cluster the tool refuses, and what it said.
pub struct Culprit {
    pub name: ClusterName,
    pub file: std::path::PathBuf,
    pub refusal: String,
}

/// The clusters whose configuration the tool refuses on its own, when the
/// base alone passes and so do the others together; `None` when the refusal
/// is not theirs (the base is refused, or only a mix of clusters is).
pub async fn culprits(
    program: &Managed,
    base: &Path,
    clusters: &[&Cluster],
    settings: &Settings,
) -> Option<Vec<Culprit>> {
    if program.refusal(base, &[], settings).await.is_some() {
        return None;
    }
    let mut found = Vec::new();
    let mut suspects: Vec<Vec<&Cluster>> = vec![clusters.to_vec()];
    while let Some(set) = suspects.pop() {
        let Some(refusal) = program.refusal(base, &set, settings).await else {
            continue;
        };
        if let [one] = set.as_slice() {
            found.push(Culprit {
                name: one.name.clone(),
                file: one.source.clone(),
                refusal,
            });
        } else {
            let (left, right) = set.split_at(set.len() / 2);
            suspects.push(right.to_vec());
            suspects.push(left.to_vec());
        }
    }
    let rest: Vec<&Cluster> = clusters
        .iter()
        .copied()
        .filter(|c| !found.iter().any(|f| f.name == c.name))
        .collect();
    if found.is_empty() || program.refusal(base, &rest, settings).await.is_some() {
        return None;
    }
    Some(found)
}
