//! `promfed doctor`: a read-only check of everything between this host and
//! each cluster's targets, one line per check, every failure with its fix.
//! Nothing is written and nothing is reloaded.

mod api;
mod files;
mod host;
mod load;
mod network;
mod remote_write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use crate::config::cluster::Cluster;
use crate::config::inventory;
use crate::config::settings::Settings;
use crate::output::plural;

/// How long each network step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

/// One check's result.
#[derive(Debug, Serialize)]
pub struct Check {
    /// The cluster's name, or `host`.
    pub scope: String,
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a failure or a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The checks of one scope, in order.
pub struct Checks {
    scope: String,
    pub list: Vec<Check>,
}

impl Checks {
    fn new(scope: &str) -> Checks {
        Checks {
            scope: scope.to_string(),
            list: Vec::new(),
        }
    }

    fn pass(&mut self, check: &'static str, detail: impl Into<String>) {
        self.push(check, Verdict::Pass, detail.into(), None);
    }

    fn warn(&mut self, check: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Verdict::Warn, detail.into(), Some(fix.into()));
    }

    fn fail(&mut self, check: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Verdict::Fail, detail.into(), Some(fix.into()));
    }

    fn push(&mut self, check: &'static str, verdict: Verdict, detail: String, fix: Option<String>) {
        self.list.push(Check {
            scope: self.scope.clone(),
            check,
            verdict,
            detail,
            fix,
        });
    }
}

/// Every check's result, clusters first, then this host.
#[derive(Serialize)]
pub struct Findings {
    pub checks: Vec<Check>,
    pub passed: usize,
    pub warnings: usize,
    pub failed: usize,
}

impl Findings {
    fn new(checks: Vec<Check>) -> Findings {
        let count = |v| checks.iter().filter(|c| c.verdict == v).count();
        Findings {
            passed: count(Verdict::Pass),
            warnings: count(Verdict::Warn),
            failed: count(Verdict::Fail),
            checks,
        }
    }

    /// 0 when nothing failed (warnings included), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failed > 0)
    }
}

/// Checks the clusters named in `only` (by name or file; all when empty),
/// then this host. A name that matches no cluster file fails.
pub async fn run(settings: &Settings, only: &[String]) -> Findings {
    let mut checks = Vec::new();
    let files = match inventory::list_cluster_files(&settings.clusters_dir) {
        Ok(files) => files,
        Err(e) => {
            let mut host = Checks::new("host");
            host.fail(
                "clusters",
                format!(
                    "cannot list the clusters folder {}: {e}",
                    settings.clusters_dir.display()
                ),
                "create it, or set clusters_dir in promfed.toml",
            );
            return Findings::new(host.list);
        }
    };
    let mut matched = vec![false; only.len()];
    let mut clusters = Vec::new();
    for file in &files {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let parsed = inventory::read_definition(file, &settings.defaults).map(|mut c| {
            crate::credentials::bind(&mut c, &settings.credentials_dir());
            c
        });
        let name = match &parsed {
            Ok(c) => c.name.to_string(),
            Err(_) => stem.to_string(),
        };
        let wanted = only.is_empty()
            || only.iter().enumerate().any(|(i, o)| {
                let hit = *o == name || *o == stem || Path::new(o) == file.as_path();
                matched[i] |= hit;
                hit
            });
        if wanted {
            clusters.push((file.clone(), name, parsed));
        }
    }
    let mut host = Checks::new("host");
    for (o, _) in only.iter().zip(&matched).filter(|(_, m)| !**m) {
        host.fail(
            "clusters",
            format!(
                "no cluster file in {} is named `{o}`",
                settings.clusters_dir.display()
            ),
            "`ls` the folder: cluster files end in .toml",
        );
    }
    if files.is_empty() {
        host.warn(
            "clusters",
            format!(
                "no cluster files in {}: nothing is monitored",
                settings.clusters_dir.display()
            ),
            "add one with `promfed add-cluster NAME --kubeconfig FILE`",
        );
    }
    // Prometheus watches the targets of the clusters this host scrapes.
    let in_force: Vec<Cluster> = clusters
        .iter()
        .filter_map(|(_, _, parsed)| parsed.as_ref().ok())
        .filter(|c| {
            settings
                .shard
                .as_ref()
                .is_none_or(|s| s.is_mine(c.name.as_str()))
        })
        .cloned()
        .collect();
    // A few clusters at a time, each one's checks in order, the report in
    // file order: a thousand clusters take a minute, not ten.
    let reports: Vec<Checks> = futures_util::stream::iter(
        clusters
            .into_iter()
            .map(|(file, name, parsed)| check_cluster(settings, file, name, parsed)),
    )
    .buffered(CLUSTERS_AT_ONCE)
    .collect()
    .await;
    for report in reports {
        checks.extend(report.list);
    }
    host::check(settings, &in_force, files.len(), &mut host).await;
    checks.extend(host.list);
    Findings::new(checks)
}

/// How many clusters are checked at once.
const CLUSTERS_AT_ONCE: usize = 8;

/// Every check of one cluster.
async fn check_cluster(
    settings: &Settings,
    file: PathBuf,
    name: String,
    parsed: Result<Cluster, Vec<String>>,
) -> Checks {
    let mut c = Checks::new(&name);
    let cluster = match parsed {
        Ok(cluster) => cluster,
        Err(problems) => {
            c.fail(
                "file",
                format!("{} is not valid: {}", file.display(), problems.join("; ")),
                format!(
                    "`promfed check` shows each problem with its line; fix {}",
                    file.display()
                ),
            );
            return c;
        }
    };
    if let Some(shard) = &settings.shard {
        let owners = shard.owners(cluster.name.as_str());
        let here = if owners.contains(&shard.me.as_str()) {
            "this host among them"
        } else {
            "not this host; checked all the same, for when it moves here"
        };
        c.pass(
            "shard",
            format!("scraped by {} ({here})", owners.join(" and ")),
        );
    }
    inherited(settings, &file, &mut c);
    // Without its files, nothing further can be tried.
    let reachable = files::check(&cluster, &settings.prometheus.user, &mut c)
        && network::check(&cluster, &mut c).await;
    if reachable {
        api::check(&cluster, settings, &mut c).await;
    }
    c
}

/// With `[defaults]`: which values the cluster takes from them, with their
/// lines in promfed.toml, and which it overrides.
fn inherited(settings: &Settings, file: &Path, c: &mut Checks) {
    if settings.defaults.is_empty() {
        return;
    }
    let origins = inventory::read_cluster_file(file).ok().and_then(|text| {
        let source = crate::config::diagnostic::SourceText::new(file, text);
        crate::config::origins::of(&source, &settings.defaults).ok()
    });
    if let Some(o) = origins {
        c.pass(
            "defaults",
            format!("{} ({})", o.summary(), settings.source.display()),
        );
    }
}

/// One line per check, grouped by scope, and a count.
pub fn print(findings: &Findings, json: bool) {
    if json {
        say!(
            "{}",
            serde_json::to_string_pretty(findings).expect("findings serialise")
        );
        return;
    }
    let mut scope = "";
    for c in &findings.checks {
        if c.scope != scope {
            scope = &c.scope;
            match scope {
                "host" => say!("this host"),
                name => say!("cluster {name}"),
            }
        }
        let mark = match c.verdict {
            Verdict::Pass => "✔",
            Verdict::Warn => "!",
            Verdict::Fail => "✘",
        };
        say!("  {mark} {}: {}", c.check, c.detail);
        if let Some(fix) = &c.fix {
            say!("      fix: {fix}");
        }
    }
    say!(
        "promfed doctor: {} passed, {} {}, {} failed",
        findings.passed,
        findings.warnings,
        plural(findings.warnings, "warning", "warnings"),
        findings.failed
    );
}
