//! `promfed run`: keeps Prometheus (and Alertmanager) in step with the
//! cluster files, on its own. It decides *when* to run the transaction —
//! after a burst of file events settles, on SIGHUP, on retry — and keeps one
//! discovery task per cluster. The transaction itself is shared with `apply`.

mod budget;
mod cluster_task;
mod schedule;
mod state;
mod systemd;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::time::{MissedTickBehavior, interval, sleep_until};

use crate::apply::managed::Managed;
use crate::apply::{self, Mode, Options};
use crate::config::inventory::is_cluster_file;
use crate::config::settings::Settings;
use crate::programs::ProgramKind;
use crate::programs::prometheus::Prometheus;
use crate::status::PrometheusWatches;
use crate::targets::{ClusterTargets, RefreshError};
use budget::WatchBudget;
use cluster_task::ClusterTask;
use schedule::{Action, Event as Timing, Schedule, Trigger};
use state::State;
use watch::{Change, FileEvent, FolderWatch};

/// How often Prometheus's count of failed file watchers is read besides
/// after each reload (a restarted Prometheus reloads nothing of promfed's).
const BUDGET_INTERVAL: Duration = Duration::from_secs(60);

pub enum Event {
    FileChanged(FileEvent),
    /// Something may have changed that no event told: a watch was set up
    /// after its folder was read, or (`rearm`) the kernel lost events.
    Rescan {
        rearm: bool,
    },
    Discovered {
        cluster: String,
        result: Result<ClusterTargets, RefreshError>,
    },
    /// A credential renewal of a cluster with `[exec]` or `[token_request]`.
    Credential {
        cluster: String,
        attempt: crate::credentials::renewal::Attempt,
    },
    /// A reading of Prometheus's `prometheus_sd_file_watcher_errors_total`.
    WatcherErrors(Result<u64, String>),
}

struct Daemon {
    settings: Settings,
    events: UnboundedSender<Event>,
    watch: FolderWatch,
    tasks: BTreeMap<String, ClusterTask>,
    state: State,
    schedule: Schedule,
    /// Inputs being written (created or modified, not yet closed): no
    /// transaction reads them half-written, unless `max_delay` passes.
    writing: BTreeSet<PathBuf>,
    /// Whether Prometheus could watch every targets file.
    budget: WatchBudget,
    /// The inotify instances Prometheus needs for promfed's jobs.
    watches_needed: usize,
    /// The last STATUS= sent, so that an unchanged one is not sent again.
    told_systemd: String,
    /// The digest of each cluster's monitor jobs in force (`[monitors]`).
    monitors_in_force: BTreeMap<String, u64>,
    /// The token files of the clusters in force: with a copy per token for
    /// Prometheus, a change of one needs a transaction.
    token_files: BTreeSet<PathBuf>,
    /// Something left freed memory behind since it was last given back: a
    /// discovery report (lists, events) or Prometheus's metrics read (see
    /// `memory`).
    trim_due: bool,
}

/// The signals that stop the daemon.
struct Stop {
    terminate: Signal,
    interrupt: Signal,
}

impl Stop {
    async fn requested(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

fn is_unauthorized(result: &Result<ClusterTargets, RefreshError>) -> bool {
    matches!(
        result,
        Err(RefreshError::Discovery(
            crate::discovery::DiscoveryError::Unauthorized { .. }
        ))
    )
}

pub async fn run(settings: Settings) -> u8 {
    let (events, mut incoming) = unbounded_channel();
    let (mut hangup, terminate, interrupt) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(h), Ok(t), Ok(i)) => (h, t, i),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    let mut stop = Stop {
        terminate,
        interrupt,
    };
    let watch = FolderWatch::new(events.clone());
    let mut daemon = Daemon {
        state: State::new(),
        schedule: Schedule::new(settings.daemon.debounce, settings.daemon.max_delay),
        settings,
        events,
        watch,
        tasks: BTreeMap::new(),
        writing: BTreeSet::new(),
        budget: WatchBudget::default(),
        watches_needed: 0,
        told_systemd: String::new(),
        monitors_in_force: BTreeMap::new(),
        token_files: BTreeSet::new(),
        trim_due: false,
    };
    let mut check_folders = interval(watch::CHECK_INTERVAL);
    check_folders.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut check_budget = interval(BUDGET_INTERVAL);
    check_budget.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut watchdog = systemd::watchdog_interval().map(|every| {
        let mut timer = interval(every);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer
    });

    tracing::info!(stage = "start", config = %daemon.settings.source.display(), "promfed {} starting", env!("CARGO_PKG_VERSION"));
    let first = daemon.schedule.start();
    if !daemon.act(first, &mut stop).await {
        return daemon.stop();
    }
    daemon.ready();

    loop {
        let wake = daemon
            .schedule
            .wake()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let action = tokio::select! {
            Some(event) = incoming.recv() => daemon.handle(event),
            _ = hangup.recv() => {
                tracing::info!(stage = "reload", "SIGHUP: re-reading everything");
                daemon.watch.rearm();
                daemon.schedule.on(Timing::Hangup, Instant::now())
            }
            _ = check_folders.tick() => {
                if std::mem::take(&mut daemon.trim_due) {
                    crate::memory::give_back();
                }
                daemon.check_folders()
            }
            _ = check_budget.tick() => {
                daemon.sample_watchers(Duration::ZERO);
                // Watch events alone never write the files: their times
                // are published with other news, or at this tick.
                if daemon.state.refresh_health() {
                    daemon.publish();
                }
                // After the start-up lists, a resync or a burst of events.
                crate::memory::give_back();
                // Once a minute at least: the metrics file's age tells a
                // live daemon from a stopped or stuck one.
                daemon.publish();
                Action::Ignore
            }
            () = stop.requested() => return daemon.stop(),
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                systemd::watchdog();
                Action::Ignore
            }
            () = sleep_until(wake.into()) => daemon.schedule.on(Timing::Timer, Instant::now()),
        };
        if !daemon.act(action, &mut stop).await {
            return daemon.stop();
        }
    }
}

impl Daemon {
    fn handle(&mut self, event: Event) -> Action {
        match event {
            Event::FileChanged(event) => self.file_changed(event),
            Event::Rescan { rearm } => {
                if rearm {
                    tracing::warn!(
                        stage = "watch",
                        "the kernel lost file events: watching every folder again"
                    );
                    self.watch.rearm();
                }
                self.schedule.on(self.settled(), Instant::now())
            }
            Event::Discovered { cluster, result } => {
                self.trim_due = true;
                let Some(task) = self.tasks.get(&cluster) else {
                    return Action::Ignore;
                };
                if is_unauthorized(&result) {
                    task.unauthorized();
                }
                self.state.discovered(&cluster, &result, &task.definition);
                self.publish();
                if self.monitor_jobs_changed(&cluster, &result) {
                    tracing::info!(
                        cluster = cluster,
                        stage = "discovery",
                        "cluster {cluster}: its monitors' jobs changed: applying"
                    );
                    return self.schedule.on(self.settled(), Instant::now());
                }
                Action::Ignore
            }
            Event::Credential { cluster, attempt } => self.renewed(&cluster, attempt),
            Event::WatcherErrors(Ok(errors)) => {
                self.trim_due = true;
                self.took_watcher_errors(errors);
                Action::Ignore
            }
            Event::WatcherErrors(Err(e)) => {
                tracing::debug!(stage = "budget", "cannot read Prometheus's metrics: {e}");
                Action::Ignore
            }
        }
    }

    /// Whether discovery found monitor jobs other than those in force: a
    /// job is a change of the configuration (a transaction, like a changed
    /// cluster file), where targets are only file_sd. Coalesced by the
    /// schedule with whatever else arrives.
    fn monitor_jobs_changed(
        &self,
        cluster: &str,
        result: &Result<ClusterTargets, RefreshError>,
    ) -> bool {
        let Ok(Some(found)) = result.as_ref().map(|t| t.monitors.as_ref()) else {
            return false;
        };
        let found = crate::digest::keyed(&found.jobs);
        self.monitors_in_force.get(cluster) != Some(&found)
    }

    /// A renewal's outcome: status, metrics and the journal; discovery
    /// tries again at once if it was failing. A credential of another
    /// kind (token, certificate) needs a new configuration, and so does
    /// every new token when each is a new file for Prometheus.
    fn renewed(&mut self, cluster: &str, attempt: crate::credentials::renewal::Attempt) -> Action {
        let Some(task) = self.tasks.get(cluster) else {
            return Action::Ignore;
        };
        let failing = self
            .state
            .credential(cluster, &task.definition, &attempt, &self.settings);
        if attempt.result.is_ok() && failing {
            task.poke();
        }
        self.publish();
        let new_token = attempt.result.is_ok() && self.settings.new_file_per_token();
        if attempt.kind_changed {
            self.schedule.on(self.settled(), Instant::now())
        } else if let (true, Ok(expires)) = (new_token, &attempt.result) {
            let lifetime = expires.map(crate::credentials::renewal::lifetime);
            let within = schedule::renewed_within(lifetime);
            self.schedule.on(Timing::Renewed { within }, Instant::now())
        } else {
            Action::Ignore
        }
    }

    fn file_changed(&mut self, event: FileEvent) -> Action {
        let FileEvent {
            path,
            change,
            relinked,
        } = event;
        // A watched folder replaced, moved or removed is watched again at
        // once, and is news even where its name alone is not (a credential
        // folder removed): its files may have changed unseen meanwhile.
        let rewatched = relinked && self.watch.relinked(&path);
        if !rewatched && !self.relevant(&path) {
            return Action::Ignore;
        }
        tracing::debug!(file = %path.display(), stage = "watch", ?change, "{} changed ({change:?})", path.display());
        match change {
            Change::Writing => self.writing.insert(path),
            Change::Complete => self.writing.remove(&path),
        };
        self.schedule.on(self.settled(), Instant::now())
    }

    /// A change is complete, unless an input is still being written: then
    /// no transaction reads it half-written.
    fn settled(&self) -> Timing {
        if self.writing.is_empty() {
            Timing::Written
        } else {
            Timing::Writing
        }
    }

    /// The periodic check of the watched folders (replaced folders, polling
    /// when degraded); a change found there counts as a file event.
    fn check_folders(&mut self) -> Action {
        let changed = self.watch.check();
        if self.state.set_watch(self.watch.degraded()) {
            self.publish();
        }
        if changed {
            self.schedule.on(self.settled(), Instant::now())
        } else {
            Action::Ignore
        }
    }

    /// Does what the schedule asked; a transaction runs until it ends or a
    /// stop is requested. Returns false when the daemon is to stop.
    async fn act(&mut self, action: Action, stop: &mut Stop) -> bool {
        let Action::Apply(trigger) = action else {
            return true;
        };
        if trigger == Trigger::Hangup {
            systemd::reloading();
        }
        tokio::select! {
            () = self.apply(trigger) => {}
            () = stop.requested() => return false,
        }
        crate::memory::give_back();
        if trigger == Trigger::Hangup {
            self.ready();
        }
        true
    }

    /// Reads Prometheus's count of failed file watchers `after` a while, on
    /// a task of its own (its metrics are megabytes at 1000 clusters).
    fn sample_watchers(&self, after: Duration) {
        if self.settings.discovery != crate::config::settings::DiscoveryMode::FileSd {
            return;
        }
        let prometheus = Prometheus::new(&self.settings.prometheus);
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let errors = prometheus.file_sd_watcher_errors().await;
            let _ = events.send(Event::WatcherErrors(errors));
        });
    }

    fn took_watcher_errors(&mut self, errors: u64) {
        let changed = self.budget.sample(errors);
        let watches = PrometheusWatches {
            needed: self.watches_needed,
            limit: crate::inotify::max_user_instances(),
            exhausted: self.budget.exhausted(),
        };
        if changed && watches.exhausted {
            tracing::error!(
                stage = "budget",
                needed = watches.needed,
                limit = ?watches.limit,
                "{}",
                crate::status::WATCHES_EXHAUSTED
            );
        } else if changed {
            tracing::info!(
                stage = "budget",
                "Prometheus watches every targets file again"
            );
        }
        if self.state.set_prometheus_watches(watches) {
            self.publish();
        }
    }

    /// Files promfed writes itself, or that no input depends on, are not
    /// news. In the clusters folder only cluster files and folders count:
    /// an operator's `prod.toml.tmp` or an editor's swap file would
    /// otherwise start a transaction that finds nothing new.
    fn relevant(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let own_output = std::iter::once(&self.settings.prometheus.config_file)
            .chain(self.settings.alertmanager.as_ref().map(|a| &a.config_file))
            .any(|f| f == path);
        let in_clusters_dir = path.parent() == Some(self.settings.clusters_dir.as_path());
        if in_clusters_dir && !is_cluster_file(path) && !path.is_dir() {
            return self.gives_prometheus_a_copy(path);
        }
        !(name.contains(".promfed-") || own_output || path.starts_with(&self.settings.state_dir))
    }

    /// A token file beside the cluster files, of a cluster in force, when
    /// each new token is a new file for Prometheus: a new token there
    /// needs a new configuration.
    fn gives_prometheus_a_copy(&self, path: &Path) -> bool {
        self.settings.new_file_per_token() && self.token_files.contains(path)
    }

    async fn apply(&mut self, trigger: Trigger) {
        let started = Instant::now();
        self.apply_once(trigger).await;
        tracing::debug!(stage = "transaction", took = ?started.elapsed());
    }

    async fn apply_once(&mut self, trigger: Trigger) {
        // Whatever is still open for writing is read as it is now.
        self.writing.clear();
        match Settings::load(&self.settings.source) {
            Ok(s) => {
                self.schedule
                    .set_timing(s.daemon.debounce, s.daemon.max_delay);
                self.settings = s;
            }
            Err(problems) => {
                for p in &problems {
                    tracing::error!(file = %p.file.display(), stage = "settings", "{}", p.headline());
                }
                tracing::error!(
                    stage = "settings",
                    "keeping the settings in force until {} is fixed",
                    self.settings.source.display()
                );
            }
        }
        // Discover inline only clusters that are new, so that their jobs start
        // with targets; a changed cluster's task rediscovers right after, and
        // its old targets serve until then.
        let tasks = &self.tasks;
        let is_new = |c: &crate::config::cluster::Cluster| !tasks.contains_key(c.name.as_str());
        let options = Options {
            mode: Mode::Apply,
            discover: &is_new,
            renew_credentials: false,
        };
        let programs = Managed::all(&self.settings);
        let mut report = apply::run(&self.settings, &programs, &options).await;

        let retry = report.outcomes.iter().any(|(_, o)| o.worth_retrying());
        self.schedule.on(Timing::Applied { retry }, Instant::now());
        if let Some(backoff) = self.schedule.retry_in() {
            let failed: Vec<String> = report
                .outcomes
                .iter()
                .filter(|(_, o)| o.worth_retrying())
                .filter_map(|(kind, o)| Some(format!("{}: {}", kind.name(), o.failure()?)))
                .collect();
            tracing::warn!(
                stage = "apply",
                retry_in = ?backoff,
                "will try again in {:.1} s: {}",
                backoff.as_secs_f64(),
                failed.join("; ")
            );
        }
        if !report.started {
            for (_, outcome) in &report.outcomes {
                if let Some(why) = outcome.failure() {
                    tracing::error!(stage = "apply", "{why}");
                }
            }
            return; // nothing was read: keep every cluster's task and status
        }

        self.state
            .applied(&report, &self.settings.credentials_dir());
        self.state.share(self.settings.shard.as_ref(), &report);
        self.watches_needed = crate::targets::file_sd_watchers(&report.in_force);
        let reloaded = report
            .outcome(ProgramKind::Prometheus)
            .is_some_and(|o| o.reloads() != (0, 0));
        if reloaded {
            self.budget.reloaded();
            // Prometheus makes its watchers as the reload returns.
            self.sample_watchers(Duration::from_secs(2));
        }
        self.monitors_in_force = report
            .in_force
            .iter()
            .filter(|c| c.monitors.is_some())
            .map(|c| (c.name.to_string(), c.monitor_jobs_digest()))
            .collect();
        let resumes = std::mem::take(&mut report.resumes);
        self.update_tasks(&report, resumes, trigger);
        self.token_files = report
            .in_force
            .iter()
            .filter_map(|c| c.auth.token_file.clone())
            .collect();
        let tasks = &self.tasks;
        // A task that only renews has no discovery to report on.
        self.state.watched_by(|name| {
            let following = tasks.get(name).filter(|t| t.follows());
            following.map(|t| t.health.clone())
        });
        self.update_watch();
        self.publish();
    }

    /// One task per cluster in force: it discovers (file_sd mode) and
    /// renews the cluster's credential; in `kubernetes_sd` mode only
    /// clusters with a credential to renew have one. A changed definition
    /// gets a new task, a removed cluster loses its task.
    fn update_tasks(
        &mut self,
        report: &apply::Report,
        mut resumes: BTreeMap<String, crate::discovery::Resume>,
        trigger: Trigger,
    ) {
        let follows = self.settings.discovery == crate::config::settings::DiscoveryMode::FileSd;
        let wanted: BTreeSet<String> = report
            .in_force
            .iter()
            .filter(|c| follows || c.auth.source.is_some())
            .map(|c| c.name.to_string())
            .collect();
        self.tasks
            .retain(|name, t| wanted.contains(name) && t.follows() == follows);
        for cluster in report
            .in_force
            .iter()
            .filter(|c| wanted.contains(c.name.as_str()))
        {
            let name = cluster.name.to_string();
            if let Some(task) = self
                .tasks
                .get_mut(&name)
                .filter(|t| t.definition.same_definition(cluster))
            {
                match trigger {
                    Trigger::Hangup => task.poke(),
                    _ => task.poke_if_rotated(),
                }
                continue;
            }
            let following = follows.then(|| cluster_task::Following {
                listed: resumes.remove(&name),
                targets_dir: self.settings.targets_dir(),
                resync: self.settings.daemon.resync_interval,
                limits: self.settings.discovery_limits(),
            });
            let issuing = crate::credentials::Issuing::of(&self.settings);
            let task =
                ClusterTask::start(cluster.clone(), following, self.events.clone(), &issuing);
            self.tasks.insert(name, task);
        }
    }

    /// The folders whose changes matter: settings, cluster files and their
    /// credential folders, base files.
    fn update_watch(&mut self) {
        let s = &self.settings;
        let mut folders = BTreeSet::new();
        let add_parent = |folders: &mut BTreeSet<PathBuf>, p: &Path| {
            if let Some(parent) = p.parent() {
                folders.insert(parent.to_path_buf());
            }
        };
        add_parent(&mut folders, &s.source);
        add_parent(&mut folders, &s.prometheus.base_file);
        if let Some(am) = &s.alertmanager {
            add_parent(&mut folders, &am.base_file);
        }
        for task in self.tasks.values() {
            for (_, file) in task.definition.credential_files() {
                add_parent(&mut folders, file);
            }
        }
        folders.insert(s.clusters_dir.clone());
        if let Ok(entries) = std::fs::read_dir(&s.clusters_dir) {
            for path in entries.flatten().map(|e| e.path()) {
                if path.is_dir() {
                    folders.insert(path);
                } else if let Ok(target) = std::fs::canonicalize(&path) {
                    // A linked cluster file is edited where it lives.
                    add_parent(&mut folders, &target);
                }
            }
        }
        let armed = self.watch.set(folders);
        for problem in &armed.failed {
            tracing::warn!(stage = "watch", "{problem}");
        }
        if armed.any {
            // This transaction read those folders before they were watched
            // (again): a change in between would never be seen.
            let _ = self.events.send(Event::Rescan { rearm: false });
        }
        self.state.set_watch(self.watch.degraded());
    }

    fn ready(&mut self) {
        self.told_systemd = self.state.summary();
        systemd::ready(&self.told_systemd);
    }

    /// Writes status.json and the metrics file, and tells systemd.
    fn publish(&mut self) {
        self.state.refresh_health();
        if let Err(e) = self.state.write(&self.settings) {
            tracing::warn!(stage = "status", error = %e, "cannot write status or metrics: {e}");
        }
        let summary = self.state.summary();
        if summary != self.told_systemd {
            systemd::status(&summary);
            self.told_systemd = summary;
        }
    }

    fn stop(self) -> u8 {
        tracing::info!(stage = "stop", "stopping");
        systemd::stopping();
        drop(self); // aborts the discovery tasks; staged files remove themselves
        0
    }
}
