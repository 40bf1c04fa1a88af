//! The apply transaction of SPEC.md, in one place: load → discover → render →
//! gate → install → reload → verify (→ roll back). `promfed check` runs the
//! first steps of the same code; the daemon only decides when to run it.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::access::Identity;
use crate::cluster::Cluster;
use crate::diagnostic::Diagnostic;
use crate::discovery::{self, DiscoveryError};
use crate::fsutil;
use crate::gate::{self, GateError};
use crate::inventory::{self, Entry, Inventory};
use crate::last_good::LastGood;
use crate::prometheus_api::{self, PrometheusApi};
use crate::render::{self, Base};
use crate::settings::{DiscoveryMode, Settings};
use crate::targets::{self, ClusterTargets};
use crate::verify::{VerifyError, reload_and_verify};

/// How long one cluster's discovery may take before it counts as failed.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Validate, render and gate; change nothing.
    Check,
    /// The whole transaction.
    Apply,
}

/// What one run did, for the command line, the daemon's status and logs.
#[derive(Debug)]
pub struct Report {
    pub problems: Vec<Diagnostic>,
    pub warnings: Vec<String>,
    pub clusters: Vec<ClusterReport>,
    pub config: ConfigOutcome,
}

#[derive(Debug)]
pub struct ClusterReport {
    pub name: Option<String>,
    pub file: PathBuf,
    pub definition: Definition,
    /// `None` when discovery did not run (check mode, kubernetes_sd, broken).
    pub discovery: Option<Result<ClusterTargets, DiscoveryError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    Current,
    KeptLastGood,
    Broken,
}

#[derive(Debug)]
pub enum ConfigOutcome {
    /// The base file is unusable; nothing was rendered.
    NotRendered,
    Rejected(GateError),
    /// Check mode: the candidate passed the gate.
    Passed,
    Unchanged,
    Applied,
    /// Installed, but Prometheus could not be asked to load it.
    InstalledUnverified(VerifyError),
    RolledBack {
        error: VerifyError,
        restore: Result<(), String>,
    },
    Failed(String),
}

impl Report {
    /// 0 success, 1 failure at run time, 78 configuration error (SPEC.md).
    pub fn exit_code(&self) -> u8 {
        let config_error = !self.problems.is_empty()
            || matches!(
                self.config,
                ConfigOutcome::NotRendered | ConfigOutcome::Rejected(_)
            );
        let runtime_error = matches!(
            self.config,
            ConfigOutcome::InstalledUnverified(_)
                | ConfigOutcome::RolledBack { .. }
                | ConfigOutcome::Failed(_)
        ) || self
            .clusters
            .iter()
            .any(|c| matches!(c.discovery, Some(Err(_))));
        if config_error {
            78
        } else if runtime_error {
            1
        } else {
            0
        }
    }
}

pub async fn run(settings: &Settings, mode: Mode) -> Report {
    let mut report = Report {
        problems: Vec::new(),
        warnings: Vec::new(),
        clusters: Vec::new(),
        config: ConfigOutcome::NotRendered,
    };
    let prometheus_user = match Identity::lookup(&settings.prometheus.user) {
        Ok(id) => id,
        Err(e) => {
            report.config = ConfigOutcome::Failed(e);
            return report;
        }
    };
    let last_good = LastGood::new(&settings.last_good_dir());
    let (inventory, candidate) = load_and_render(settings, &last_good, &prometheus_user);
    let clusters = inventory.clusters();

    // Discover (file_sd only), concurrently; failures keep the last targets.
    let mut discovered = if mode == Mode::Apply && settings.discovery == DiscoveryMode::FileSd {
        discover_all(settings, &clusters).await
    } else {
        Vec::new()
    };
    report.clusters = cluster_reports(&inventory, &mut discovered);
    report.problems.clone_from(&inventory.problems);
    report.warnings.clone_from(&inventory.warnings);
    let candidate = match candidate {
        Ok(c) => c,
        Err(ds) => {
            report.problems.extend(ds);
            return report;
        }
    };

    // Gate.
    let target = &settings.prometheus.config_file;
    let checked = match gate::gate(
        candidate,
        target,
        &settings.prometheus.promtool,
        settings.prometheus.check_timeout,
        &prometheus_user,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            report.config = ConfigOutcome::Rejected(e);
            return report;
        }
    };
    if mode == Mode::Check {
        report.config = ConfigOutcome::Passed;
        return report;
    }

    // Install, reload, verify.
    let api = PrometheusApi::new(&settings.prometheus.url);
    report.config = install_and_verify(settings, checked, &api).await;
    if matches!(
        report.config,
        ConfigOutcome::Applied | ConfigOutcome::Unchanged
    ) {
        let applied: Vec<&Cluster> = inventory
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Current(c) => Some(c),
                _ => None,
            })
            .collect();
        let names = inventory.names();
        let cleanup = last_good
            .record(&applied, &names)
            .and_then(|()| targets::remove_others(&settings.targets_dir(), &names));
        if let Err(e) = cleanup {
            report.warnings.push(format!(
                "cannot update {}: {e}",
                settings.state_dir.display()
            ));
        }
    }
    report
}

/// Loads every cluster file and renders the candidate configuration. The
/// candidate does not depend on discovery: targets live in `file_sd` files.
pub fn load_and_render(
    settings: &Settings,
    last_good: &LastGood,
    prometheus_user: &Identity,
) -> (Inventory, Result<String, Vec<Diagnostic>>) {
    let inventory = inventory::load(&settings.clusters_dir, last_good, prometheus_user);
    let candidate = Base::load(&settings.prometheus.base_file)
        .map_err(|d| vec![d])
        .and_then(|base| render::prometheus_config(&base, &inventory.clusters(), settings));
    (inventory, candidate)
}

async fn discover_all(
    settings: &Settings,
    clusters: &[&Cluster],
) -> Vec<(String, Result<ClusterTargets, DiscoveryError>)> {
    let mut tasks = JoinSet::new();
    for cluster in clusters {
        let cluster = (*cluster).clone();
        tasks.spawn(async move {
            let result = discovery::discover(&cluster, DISCOVERY_TIMEOUT).await;
            (cluster, result)
        });
    }
    let targets_dir = settings.targets_dir();
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (cluster, result) = joined.expect("discovery tasks do not panic");
        let written = match &result {
            Ok(targets) => targets::write_cluster(&targets_dir, &cluster, targets).map(drop),
            // Keep what was discovered last; only make sure the files exist.
            Err(_) => targets::ensure_files(&targets_dir, &cluster),
        };
        let result = match written {
            Ok(()) => result,
            Err(e) => Err(DiscoveryError::Credentials {
                key: "state_dir",
                path: targets_dir.clone(),
                detail: format!("cannot write targets: {e}"),
            }),
        };
        results.push((cluster.name.to_string(), result));
    }
    results
}

fn cluster_reports(
    inventory: &Inventory,
    discovered: &mut Vec<(String, Result<ClusterTargets, DiscoveryError>)>,
) -> Vec<ClusterReport> {
    let mut reports: Vec<ClusterReport> = inventory
        .entries
        .iter()
        .map(|entry| {
            let (name, file, definition) = match entry {
                Entry::Current(c) => (
                    Some(c.name.to_string()),
                    c.source.clone(),
                    Definition::Current,
                ),
                Entry::KeptLastGood(c) => (
                    Some(c.name.to_string()),
                    c.source.clone(),
                    Definition::KeptLastGood,
                ),
                Entry::Broken { name, file } => (
                    name.as_ref().map(ToString::to_string),
                    file.clone(),
                    Definition::Broken,
                ),
            };
            let discovery = match (&name, definition) {
                (Some(n), Definition::Current | Definition::KeptLastGood) => discovered
                    .iter()
                    .position(|(d, _)| d == n)
                    .map(|i| discovered.swap_remove(i).1),
                _ => None,
            };
            ClusterReport {
                name,
                file,
                definition,
                discovery,
            }
        })
        .collect();
    reports.sort_by(|a, b| a.name.cmp(&b.name).then(a.file.cmp(&b.file)));
    reports
}

async fn install_and_verify(
    settings: &Settings,
    checked: gate::Checked,
    api: &PrometheusApi,
) -> ConfigOutcome {
    let target = &settings.prometheus.config_file;
    let method = &settings.prometheus.reload;
    let timeout = settings.prometheus.verify_timeout;
    let previous = std::fs::read(target).ok();
    let expected = prometheus_api::job_names(&String::from_utf8_lossy(&checked.bytes));

    if previous.as_deref() == Some(checked.bytes.as_slice()) {
        // Same bytes: nothing to do, unless Prometheus's last load failed
        // (someone reverted a bad file by hand) — then load it again.
        return match api.runtime_info().await {
            Ok(info) if !info.reload_config_success => {
                match reload_and_verify(method, api, &expected, timeout).await {
                    Ok(()) => ConfigOutcome::Applied,
                    Err(e) => ConfigOutcome::InstalledUnverified(e),
                }
            }
            _ => ConfigOutcome::Unchanged,
        };
    }

    if let Some(previous) = &previous {
        let copy = settings.last_good_dir().join("prometheus.yml");
        let saved = std::fs::create_dir_all(settings.last_good_dir())
            .and_then(|()| fsutil::write_atomic(&copy, previous, 0o644));
        if let Err(e) = saved {
            return ConfigOutcome::Failed(format!(
                "cannot keep the previous configuration in {}: {e}",
                copy.display()
            ));
        }
    }
    if let Err(e) = checked.staged.install() {
        return ConfigOutcome::Failed(format!("cannot install {}: {e}", target.display()));
    }

    match reload_and_verify(method, api, &expected, timeout).await {
        Ok(()) => ConfigOutcome::Applied,
        Err(error @ VerifyError::Unreachable(_)) => ConfigOutcome::InstalledUnverified(error),
        Err(error) => {
            let restore = match previous {
                Some(previous) => restore(target, &previous, method, api, timeout).await,
                None => Err("there was no previous configuration to restore".into()),
            };
            ConfigOutcome::RolledBack { error, restore }
        }
    }
}

async fn restore(
    target: &std::path::Path,
    previous: &[u8],
    method: &crate::settings::ReloadMethod,
    api: &PrometheusApi,
    timeout: Duration,
) -> Result<(), String> {
    fsutil::write_atomic(target, previous, 0o644)
        .map_err(|e| format!("cannot restore {}: {e}", target.display()))?;
    let expected = prometheus_api::job_names(&String::from_utf8_lossy(previous));
    reload_and_verify(method, api, &expected, timeout)
        .await
        .map_err(|e| format!("restored {}, but: {e}", target.display()))
}
