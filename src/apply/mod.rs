//! The apply transaction of SPEC.md, the one place that puts the stages in
//! order: load → discover → render → gate → install → verify (→ roll back),
//! for each managed program in turn. `promfed check` runs the first stages of
//! the same code; the daemon only decides when to run it.

mod gate;
mod install;
mod isolate;
mod lock;
pub mod managed;
mod monitors;
pub mod outcome;
pub mod ownership;
pub mod rollback;
mod staged;
mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::task::JoinSet;

use crate::config::cluster::Cluster;
use crate::config::diagnostic::Diagnostic;
use crate::config::inventory::{self, Elsewhere, Entry, Inventory};
use crate::config::last_good::LastGood;
use crate::config::settings::{DiscoveryMode, Settings};
use crate::credentials;
use crate::discovery;
use crate::programs::ProgramKind;
use crate::render::{self, Base, Candidate};
use crate::targets::{self, ClusterTargets, RefreshError};
use managed::Managed;
use outcome::ConfigOutcome;
use serde::{Deserialize, Serialize};

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
    /// Whether to obtain the credentials that are due (`[exec]`,
    /// `[token_request]`) before discovering: `apply` does; the daemon's
    /// own tasks renew them, so that a hanging plugin delays no transaction.
    pub renew_credentials: bool,
}

impl Options<'_> {
    pub fn new(mode: Mode) -> Options<'static> {
        Options {
            mode,
            discover: &|_| true,
            renew_credentials: mode == Mode::Apply,
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
    /// One per managed program, Prometheus first.
    pub outcomes: Vec<(ProgramKind, ConfigOutcome)>,
    /// False when the transaction could not start (the lock): nothing was
    /// read, so the clusters above say nothing.
    pub started: bool,
    /// Said once: a file adopted in this transaction.
    pub notices: Vec<String>,
    /// Programs whose base is an adopted file: (program, base in use, the
    /// file it was adopted from).
    pub adopted: Vec<(ProgramKind, PathBuf, PathBuf)>,
    /// Valid clusters other hosts scrape (`[shard]`).
    pub elsewhere: Vec<Elsewhere>,
    /// The lists this transaction made, by cluster: the daemon's tasks
    /// watch on from them instead of listing again.
    pub resumes: BTreeMap<String, discovery::Resume>,
}

#[derive(Debug)]
pub struct ClusterReport {
    pub name: Option<String>,
    pub file: PathBuf,
    pub definition: Definition,
    /// `None` when discovery did not run in this transaction.
    pub discovery: Option<Result<ClusterTargets, RefreshError>>,
}

/// Which definition of a cluster is in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Definition {
    #[default]
    Current,
    KeptLastGood,
    Broken,
}

impl Report {
    /// A transaction that could not start or read its inputs: every program
    /// fails with `why`, and nothing was changed.
    fn failed(programs: &[Managed], why: String) -> Report {
        Report {
            problems: Vec::new(),
            warnings: Vec::new(),
            clusters: Vec::new(),
            in_force: Vec::new(),
            outcomes: programs
                .iter()
                .map(|p| (p.kind(), ConfigOutcome::Failed(why.clone())))
                .collect(),
            started: false,
            notices: Vec::new(),
            adopted: Vec::new(),
            elsewhere: Vec::new(),
            resumes: BTreeMap::new(),
        }
    }

    /// The outcome for one program, if it is managed.
    pub fn outcome(&self, kind: ProgramKind) -> Option<&ConfigOutcome> {
        self.outcomes
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, o)| o)
    }

    /// Whether every managed program now runs what promfed rendered.
    pub fn all_in_force(&self) -> bool {
        self.outcomes.iter().all(|(_, o)| o.in_force())
    }

    /// 0 success, 1 failure at run time, 78 configuration error (SPEC.md).
    pub fn exit_code(&self) -> u8 {
        let outcomes = || self.outcomes.iter().map(|(_, o)| o);
        let config_error =
            !self.problems.is_empty() || outcomes().any(ConfigOutcome::is_config_error);
        let runtime_error = outcomes().any(ConfigOutcome::worth_retrying)
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

pub async fn run(settings: &Settings, programs: &[Managed], options: &Options<'_>) -> Report {
    // Held until the report is made; `check` changes nothing and needs none.
    let _lock = match options.mode {
        Mode::Check => None,
        Mode::Apply => match lock::acquire(&settings.state_dir, lock::WAIT).await {
            Ok(lock) => Some(lock),
            Err(e) => return Report::failed(programs, e),
        },
    };
    let last_good = LastGood::new(&settings.last_good_dir());
    let started = std::time::Instant::now();
    let mut inventory = match load_inventory(settings).await {
        Ok(inventory) => inventory,
        // The machine's fault, not the configuration's: exit 1, retried.
        Err(problem) => return Report::failed(programs, problem.headline()),
    };
    tracing::debug!(stage = "load", took = ?started.elapsed(), clusters = inventory.entries.len());
    let issuing = credentials::Issuing::of(settings);
    credentials::bind_all(&mut inventory, &issuing.root);
    // `check` writes no placeholder token (`apply` does, below): its
    // candidate names a temporary empty file instead (see `StandIn`).
    let stand_in = match options.mode {
        Mode::Check => match credentials::StandIn::new() {
            Ok(s) => Some(s),
            Err(e) => {
                return Report::failed(
                    programs,
                    format!("cannot write a temporary file for the check: {e}"),
                );
            }
        },
        Mode::Apply => None,
    };
    if let Some(s) = &stand_in {
        s.apply(&mut inventory);
    }

    // Discover (file_sd only), concurrently; failures keep the last targets.
    let apply_file_sd = options.mode == Mode::Apply && settings.discovery == DiscoveryMode::FileSd;
    let mut warnings = inventory.warnings.clone();
    let mut discovered = Vec::new();
    let mut resumes = BTreeMap::new();
    if options.mode == Mode::Apply {
        let failed = obtain_credentials(&issuing, &mut inventory, options).await;
        warnings.extend(failed);
        warnings.extend(credentials::give_prometheus_copies(
            &mut inventory,
            settings,
            credentials::Copies::Write,
        ));
    }
    if apply_file_sd {
        let clusters = inventory.clusters();
        let wanted: Vec<&Cluster> = clusters
            .iter()
            .copied()
            .filter(|c| (options.discover)(c))
            .collect();
        (discovered, resumes) = discover_all(settings, &wanted).await;
        drop(clusters);
        monitors::attach(settings, &mut inventory, &mut warnings);
        let clusters = inventory.clusters();
        // Every rendered job needs its targets file, even before discovery.
        for c in &clusters {
            if let Err(e) = targets::ensure_files(&settings.targets_dir(), c) {
                warnings.push(format!("cannot write targets of {}: {e}", c.name));
            }
        }
    }
    if !apply_file_sd {
        monitors::attach(settings, &mut inventory, &mut warnings);
    }
    let mut report = Report {
        problems: Vec::new(),
        warnings,
        clusters: Vec::new(),
        in_force: Vec::new(),
        outcomes: Vec::new(),
        started: true,
        notices: Vec::new(),
        adopted: Vec::new(),
        elsewhere: inventory.elsewhere.clone(),
        resumes,
    };
    let mut held_back = Vec::new();
    for program in programs {
        let (mut outcome, mut base) = program
            .run(
                &inventory.clusters(),
                settings,
                options.mode,
                &mut report.problems,
            )
            .await;
        // Refused: if some clusters alone are the cause, hold them back
        // (their last good definitions stay) and try again without them.
        let refused = matches!(&outcome, ConfigOutcome::Rejected(e) if e.is_config_error());
        if let (true, Some(chosen)) = (refused, &base) {
            let clusters = inventory.clusters();
            let culprits = isolate::culprits(program, &chosen.path, &clusters, settings).await;
            drop(clusters);
            if let Some(culprits) = culprits {
                for culprit in culprits {
                    let kept =
                        inventory.hold_back(&culprit.name, &last_good, &settings.prometheus.user);
                    held_back.push(Diagnostic::file(
                        &culprit.file,
                        None,
                        format!(
                            "this cluster's configuration is refused ({}), so {}: {}",
                            program.kind().name(),
                            if kept {
                                "its last good definition stays in force"
                            } else {
                                "it is left out until it is fixed"
                            },
                            culprit.refusal
                        ),
                    ));
                }
                credentials::bind_all(&mut inventory, &issuing.root);
                if let Some(s) = &stand_in {
                    s.apply(&mut inventory);
                } else {
                    // The kept definitions are read anew: no copy named yet.
                    let copies = credentials::Copies::Write;
                    credentials::give_prometheus_copies(&mut inventory, settings, copies);
                }
                (outcome, base) = program
                    .run(
                        &inventory.clusters(),
                        settings,
                        options.mode,
                        &mut report.problems,
                    )
                    .await;
            }
        }
        if let Some(base) = base {
            report.notices.extend(base.adopted_now);
            if let Some(from) = base.adopted_from {
                report.adopted.push((program.kind(), base.path, from));
            }
        }
        report.outcomes.push((program.kind(), outcome));
    }
    // The report names the files the configuration will, not the stand-in.
    if stand_in.is_some() {
        credentials::bind_all(&mut inventory, &issuing.root);
    }
    let mut problems = inventory.problems.clone();
    problems.append(&mut held_back);
    problems.append(&mut report.problems);
    report.problems = problems;
    report.clusters = cluster_reports(&inventory, &mut discovered);
    report.in_force = inventory.clusters().into_iter().cloned().collect();
    if options.mode == Mode::Apply && report.all_in_force() {
        let started = std::time::Instant::now();
        record_success(settings, &inventory, &last_good, &mut report.warnings);
        tracing::debug!(stage = "record", took = ?started.elapsed());
    }
    report
}

/// Gives every cluster with `[exec]` or `[token_request]` its credential
/// file (an empty one until the first credential comes), and obtains the
/// credentials that are due when `options` asks. The failures, as
/// warnings: discovery then says what they cost.
async fn obtain_credentials(
    issuing: &credentials::Issuing,
    inventory: &mut Inventory,
    options: &Options<'_>,
) -> Vec<String> {
    let clusters = inventory.clusters();
    let mut warnings = credentials::placeholders(issuing, &clusters);
    if options.renew_credentials {
        for (name, e) in credentials::renew_due(issuing, &clusters).await {
            warnings.push(format!("cluster {name}: no new credential: {e}"));
        }
    }
    drop(clusters);
    // An exec plugin may have switched between a token and a certificate.
    credentials::bind_all(inventory, &issuing.root);
    warnings
}

/// After everything took: remember the applied definitions and forget the
/// targets of clusters that are gone.
fn record_success(
    settings: &Settings,
    inventory: &Inventory,
    last_good: &LastGood,
    warnings: &mut Vec<String>,
) {
    let applied: Vec<(&Cluster, &str)> = inventory
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Current(c, text) => Some((c, text.as_str())),
            _ => None,
        })
        .collect();
    let names = inventory.names();
    let cleanup = last_good
        .record(&applied, &settings.defaults, &names)
        .and_then(|()| targets::remove_others(&settings.targets_dir(), &names));
    if let Err(e) = cleanup {
        warnings.push(format!(
            "cannot update {}: {e}",
            settings.state_dir.display()
        ));
    }
}

/// Reads every cluster file on a thread of its own: many large files take
/// a while, and meanwhile the daemon must still answer SIGTERM at once.
async fn load_inventory(settings: &Settings) -> Result<Inventory, Diagnostic> {
    let dir = settings.clusters_dir.clone();
    let last_good_dir = settings.last_good_dir();
    let user = settings.prometheus.user.clone();
    let shard = settings.shard.clone();
    let defaults = settings.defaults.clone();
    tokio::task::spawn_blocking(move || {
        let last_good = LastGood::new(&last_good_dir);
        let mut inventory = inventory::load(&dir, &defaults, &last_good, &user)?;
        if let Some(shard) = &shard {
            inventory.assign(shard);
        }
        Ok(inventory)
    })
    .await
    .unwrap_or_else(|e| {
        Err(Diagnostic::file(
            &settings.clusters_dir,
            None,
            format!("reading the cluster files failed: {e}"),
        ))
    })
}

/// Why `promfed render` has nothing to show.
pub enum CannotRender {
    /// The clusters folder cannot be listed (a run-time failure).
    Unlistable(Diagnostic),
    /// The config file is the operator's (a configuration error).
    NotOurs(Diagnostic),
}

/// Loads every cluster file and renders the Prometheus candidate, for
/// `promfed render`. The candidate does not depend on discovery: targets
/// live in `file_sd` files.
pub fn load_and_render(
    settings: &Settings,
) -> Result<(Inventory, Result<Candidate, Vec<Diagnostic>>), CannotRender> {
    let last_good = LastGood::new(&settings.last_good_dir());
    let p = &settings.prometheus;
    let mut inventory = inventory::load(
        &settings.clusters_dir,
        &settings.defaults,
        &last_good,
        &p.user,
    )
    .map_err(CannotRender::Unlistable)?;
    credentials::bind_all(&mut inventory, &settings.credentials_dir());
    credentials::give_prometheus_copies(&mut inventory, settings, credentials::Copies::NameOnly);
    if let Some(shard) = &settings.shard {
        inventory.assign(shard);
    }
    monitors::attach(settings, &mut inventory, &mut Vec::new());
    let base = ownership::choose_base(
        ProgramKind::Prometheus,
        &p.config_file,
        &p.base_file,
        &settings.state_dir,
        Mode::Check,
    )
    .map_err(|why| CannotRender::NotOurs(Diagnostic::file(&p.config_file, None, why)))?;
    let candidate = Base::load(&base.path)
        .map_err(|d| vec![d])
        .and_then(|base| render::prometheus_config(&base, &inventory.clusters(), settings));
    Ok((inventory, candidate))
}

/// What each cluster's discovery gave, and the lists to watch on from.
type DiscoveredAll = (
    Vec<(String, Result<ClusterTargets, RefreshError>)>,
    BTreeMap<String, discovery::Resume>,
);

/// Discovers clusters concurrently and writes their targets; a failed
/// cluster keeps the targets it had.
async fn discover_all(settings: &Settings, clusters: &[&Cluster]) -> DiscoveredAll {
    let mut tasks = JoinSet::new();
    let limits = settings.discovery_limits();
    for cluster in clusters {
        let cluster = (*cluster).clone();
        tasks.spawn(async move {
            let result = discovery::discover(&cluster, limits).await;
            (cluster, result)
        });
    }
    let targets_dir = settings.targets_dir();
    let mut results = Vec::new();
    let mut resumes = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (cluster, result) = joined.expect("discovery tasks do not panic");
        let name = cluster.name.to_string();
        let result = result.map_err(RefreshError::from).and_then(|found| {
            resumes.insert(name.clone(), found.resume);
            write_targets(&targets_dir, &cluster, found.targets)
        });
        results.push((name, result));
    }
    (results, resumes)
}

/// Writes one cluster's targets files (only those that changed).
pub fn write_targets(
    targets_dir: &std::path::Path,
    cluster: &Cluster,
    found: ClusterTargets,
) -> Result<ClusterTargets, RefreshError> {
    targets::write_cluster(targets_dir, cluster, &found)
        .map(|_| found)
        .map_err(|source| RefreshError::StateWrite {
            dir: targets_dir.to_path_buf(),
            source,
        })
}

fn cluster_reports(
    inventory: &Inventory,
    discovered: &mut Vec<(String, Result<ClusterTargets, RefreshError>)>,
) -> Vec<ClusterReport> {
    let mut reports: Vec<ClusterReport> = inventory
        .entries
        .iter()
        .map(|entry| {
            let (name, file, definition) = match entry {
                Entry::Current(c, _) => (
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
