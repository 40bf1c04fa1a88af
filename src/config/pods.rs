//! `[pods]` of a cluster file: every pod annotated `prometheus.io/scrape`,
//! scraped through the API server's pod proxy, as Istio's sample
//! Prometheus scrapes them (job `kubernetes-pods`).

use super::limits::{Limits, RawLimits};
use super::names;
use super::toml_fields::{Fields, Problems, Spanned};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pods {
    /// Empty: every namespace (one watch of all pods).
    pub namespaces: Vec<String>,
    /// More matching pods than this: reported, and the targets capped.
    pub max_targets: usize,
    pub limits: Limits,
}

mod defaults {
    pub const ENABLED: bool = false;
    pub const MAX_TARGETS: usize = 500;
}

/// `[pods]` as written.
pub struct RawPods {
    enabled: Option<Spanned<bool>>,
    namespaces: Option<Spanned<Vec<Spanned<String>>>>,
    max_targets: Option<Spanned<i64>>,
    limits: RawLimits,
}

impl RawPods {
    /// `None` when the file has no `[pods]`.
    pub fn read(root: &mut Fields, p: &mut Problems) -> Option<RawPods> {
        let mut t = root.table(p, "pods")?;
        let raw = RawPods {
            enabled: t.get(p, "enabled"),
            namespaces: t.string_list(p, "namespaces"),
            max_targets: t.get(p, "max_targets"),
            limits: RawLimits::read(&mut t, p),
        };
        t.finish(p);
        Some(raw)
    }

    /// `Some(None)`: valid, and off.
    pub fn validate(self, p: &mut Problems) -> Option<Option<Pods>> {
        let mut namespaces = Vec::new();
        let mut ok = true;
        for (i, ns) in self
            .namespaces
            .map(|n| n.value)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if names::is_label(&ns.value) {
                if !namespaces.contains(&ns.value) {
                    namespaces.push(ns.value);
                }
            } else {
                p.at(
                    ns.span,
                    &format!("pods.namespaces[{i}]"),
                    format!(
                        "`{}` is not a Kubernetes namespace name (lowercase letters, digits and `-`)",
                        ns.value
                    ),
                );
                ok = false;
            }
        }
        let max_targets = match self.max_targets {
            None => Some(defaults::MAX_TARGETS),
            Some(n) => match usize::try_from(n.value) {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    p.at(
                        n.span,
                        "pods.max_targets",
                        format!("{} is not a number of targets (1 or more)", n.value),
                    );
                    None
                }
            },
        };
        let limits = self.limits.validate(p, None);
        let max_targets = max_targets?;
        let limits = limits?;
        if !ok {
            return None;
        }
        let enabled = self.enabled.map_or(defaults::ENABLED, |b| b.value);
        Some(enabled.then(|| {
            namespaces.sort();
            Pods {
                namespaces,
                max_targets,
                limits,
            }
        }))
    }
}
