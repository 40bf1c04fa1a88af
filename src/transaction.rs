//! The apply transaction of SPEC.md, in one place: load → discover → render →
//! gate → install → reload → verify (→ roll back), for Prometheus and then
//! Alertmanager. `promfed check` runs the first steps of the same code; the
//! daemon only decides when to run it.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::access::Identity;
use crate::cluster::Cluster;
use crate::diagnostic::Diagnostic;
use crate::discovery::{self, DiscoveryError};
use crate::gate::{self, CheckTool};
use crate::install::{ConfigOutcome, install_and_verify};
use crate::inventory::{self, Entry, Inventory};
use crate::last_good::LastGood;
use crate::render::{self, Base};
use crate::settings::{DiscoveryMode, ServiceSettings, Settings};
use crate::targets::{self, ClusterTargets};
use crate::verify::{Alertmanager, Prometheus, Service};

/// How long one cluster's discovery may take before it counts as failed.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Validate, render and gate; change nothing.
    Check,
    /// The whole transaction.
    Apply,
}

/// How one run is to be done.
pub struct Options<'a> {
    pub mode: Mode,
    /// Which clusters to discover before rendering: every one for `apply`;
    /// the daemon's own tasks discover the clusters it already knows.
    pub discover: &'a dyn Fn(&Cluster) -> bool,
    /// Reload even when the bytes are unchanged: the last install of that
    /// file was not verified.
    pub force_reload_prometheus: bool,
    pub force_reload_alertmanager: bool,
}

impl Options<'_> {
    pub fn new(mode: Mode) -> Options<'static> {
        Options {
            mode,
            discover: &|_| true,
            force_reload_prometheus: false,
            force_reload_alertmanager: false,
        }
    }
}

/// What one run did, for the command line, the daemon's status and logs.
#[derive(Debug)]
pub struct Report {
    pub problems: Vec<Diagnostic>,
    pub warnings: Vec<String>,
    pub clusters: Vec<ClusterReport>,
    /// The definitions rendered, for the daemon's discovery tasks.
    pub in_force: Vec<Cluster>,
    pub prometheus: ConfigOutcome,
    /// `None` when Alertmanager is not managed.
    pub alertmanager: Option<ConfigOutcome>,
}

#[derive(Debug)]
pub struct ClusterReport {
    pub name: Option<String>,
    pub file: PathBuf,
    pub definition: Definition,
    /// `None` when discovery did not run in this transaction.
    pub discovery: Option<Result<ClusterTargets, DiscoveryError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    Current,
    KeptLastGood,
    Broken,
}

impl Definition {
    pub fn word(self) -> &'static str {
        match self {
            Definition::Current => "current",
            Definition::KeptLastGood => "kept_last_good",
            Definition::Broken => "broken",
        }
    }
}

impl Report {
    fn outcomes(&self) -> impl Iterator<Item = &ConfigOutcome> {
        std::iter::once(&self.prometheus).chain(self.alertmanager.as_ref())
    }

    /// 0 success, 1 failure at run time, 78 configuration error (SPEC.md).
    pub fn exit_code(&self) -> u8 {
        let config_error =
            !self.problems.is_empty() || self.outcomes().any(ConfigOutcome::is_config_error);
        let runtime_error = self.outcomes().any(ConfigOutcome::worth_retrying)
            || self
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

pub async fn run(settings: &Settings, options: &Options<'_>) -> Report {
    let mut report = Report {
        problems: Vec::new(),
        warnings: Vec::new(),
        clusters: Vec::new(),
        in_force: Vec::new(),
        prometheus: ConfigOutcome::NotRendered,
        alertmanager: settings
            .alertmanager
            .as_ref()
            .map(|_| ConfigOutcome::NotRendered),
    };
    let prometheus_user = match Identity::lookup(&settings.prometheus.user) {
        Ok(id) => id,
        Err(e) => {
            report.prometheus = ConfigOutcome::Failed(e);
            return report;
        }
    };
    let last_good = LastGood::new(&settings.last_good_dir());
    let (inventory, prometheus_candidate) = load_and_render(settings, &last_good, &prometheus_user);
    let clusters = inventory.clusters();
    report.in_force = clusters.iter().map(|c| (*c).clone()).collect();

    // Discover (file_sd only), concurrently; failures keep the last targets.
    let mut discovered =
        if options.mode == Mode::Apply && settings.discovery == DiscoveryMode::FileSd {
            let wanted: Vec<&Cluster> = clusters
                .iter()
                .copied()
                .filter(|c| (options.discover)(c))
                .collect();
            discover_all(settings, &wanted).await
        } else {
            Vec::new()
        };
    if options.mode == Mode::Apply && settings.discovery == DiscoveryMode::FileSd {
        // Every rendered job needs its targets file, even before discovery.
        for c in &clusters {
            if let Err(e) = targets::ensure_files(&settings.targets_dir(), c) {
                report
                    .warnings
                    .push(format!("cannot write targets of {}: {e}", c.name));
            }
        }
    }
    report.clusters = cluster_reports(&inventory, &mut discovered);
    report.problems.clone_from(&inventory.problems);
    report.warnings.clone_from(&inventory.warnings);

    report.prometheus = apply_one(
        &settings.prometheus,
        prometheus_candidate,
        CheckTool::promtool(&settings.prometheus.check_tool),
        &prometheus_user,
        &Prometheus::new(&settings.prometheus),
        &settings.last_good_dir().join("prometheus.yml"),
        options.mode,
        options.force_reload_prometheus,
        &mut report.problems,
    )
    .await;

    if let Some(am) = &settings.alertmanager {
        let candidate = Base::load(&am.base_file)
            .map_err(|d| vec![d])
            .and_then(|base| render::alertmanager_config(&base, &clusters, &settings.clusters_dir));
        // Usually the same user as Prometheus's: look it up only if not.
        let am_user = if am.user == prometheus_user.name {
            Ok(prometheus_user.clone())
        } else {
            Identity::lookup(&am.user)
        };
        let am_user = match am_user {
            Ok(id) => id,
            Err(e) => {
                report.alertmanager = Some(ConfigOutcome::Failed(e));
                return report;
            }
        };
        report.alertmanager = Some(
            apply_one(
                am,
                candidate,
                CheckTool::amtool(&am.check_tool),
                &am_user,
                &Alertmanager::new(am),
                &settings.last_good_dir().join("alertmanager.yml"),
                options.mode,
                options.force_reload_alertmanager,
                &mut report.problems,
            )
            .await,
        );
    }

    let all_in_force = report.outcomes().all(ConfigOutcome::in_force);
    if options.mode == Mode::Apply && all_in_force {
        record_success(settings, &inventory, &last_good, &mut report.warnings);
    }
    report
}

/// Gate, then (in apply mode) install, reload and verify one program's file.
#[allow(clippy::too_many_arguments)]
async fn apply_one(
    service_settings: &ServiceSettings,
    candidate: Result<String, Vec<Diagnostic>>,
    tool: CheckTool<'_>,
    reader: &Identity,
    service: &impl Service,
    previous_copy: &std::path::Path,
    mode: Mode,
    force_reload: bool,
    problems: &mut Vec<Diagnostic>,
) -> ConfigOutcome {
    let candidate = match candidate {
        Ok(c) => c,
        Err(ds) => {
            problems.extend(ds);
            return ConfigOutcome::NotRendered;
        }
    };
    let target = &service_settings.config_file;
    let checked = match gate::gate(
        candidate,
        target,
        tool,
        service_settings.check_timeout,
        reader,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return ConfigOutcome::Rejected(e),
    };
    match mode {
        Mode::Check => ConfigOutcome::Passed,
        Mode::Apply => {
            install_and_verify(service, target, previous_copy, checked, force_reload).await
        }
    }
}

/// After everything took: remember the applied definitions and forget the
/// targets of clusters that are gone.
fn record_success(
    settings: &Settings,
    inventory: &Inventory,
    last_good: &LastGood,
    warnings: &mut Vec<String>,
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
        warnings.push(format!(
            "cannot update {}: {e}",
            settings.state_dir.display()
        ));
    }
}

/// Loads every cluster file and renders the Prometheus candidate. The
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

/// Discovers clusters concurrently and writes their targets; a failed
/// cluster keeps the targets it had.
pub async fn discover_all(
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
        let result = result.and_then(|targets| write_targets(&targets_dir, &cluster, targets));
        results.push((cluster.name.to_string(), result));
    }
    results
}

/// Writes one cluster's targets files (only those that changed).
pub fn write_targets(
    targets_dir: &std::path::Path,
    cluster: &Cluster,
    found: ClusterTargets,
) -> Result<ClusterTargets, DiscoveryError> {
    targets::write_cluster(targets_dir, cluster, &found)
        .map(|_| found)
        .map_err(|e| DiscoveryError::Credentials {
            key: "state_dir",
            path: targets_dir.to_path_buf(),
            detail: format!("cannot write targets: {e}"),
        })
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
