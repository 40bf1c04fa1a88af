//! `promfed run`: keeps Prometheus (and Alertmanager) in step with the
//! cluster files, on its own. It decides *when* to run the transaction —
//! after a burst of file events settles, on SIGHUP, on retry — and keeps one
//! discovery task per cluster. The transaction itself is shared with `apply`.

mod cluster_task;
mod state;
mod systemd;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::time::{Instant, sleep_until};

use crate::discovery::DiscoveryError;
use crate::settings::Settings;
use crate::targets::ClusterTargets;
use crate::transaction::{self, Mode, Options};
use cluster_task::ClusterTask;
use state::State;
use watch::FolderWatch;

/// A failed apply is retried after 1 s, 2 s, 4 s … up to this.
const MAX_RETRY: Duration = Duration::from_secs(300);

pub enum Event {
    FileChanged(PathBuf),
    Discovered {
        cluster: String,
        result: Result<ClusterTargets, DiscoveryError>,
    },
}

/// Why a transaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Start,
    Files,
    Hangup,
    Retry,
}

struct Daemon {
    settings: Settings,
    events: UnboundedSender<Event>,
    watch: Option<FolderWatch>,
    tasks: BTreeMap<String, ClusterTask>,
    state: State,
    /// The last install of each file was not verified: reload even if the
    /// bytes do not change.
    unverified: (bool, bool),
    retry: Option<(Instant, Duration)>,
    /// A burst of file events: when it began and when to apply.
    pending: Option<(Instant, Instant)>,
    /// The last STATUS= sent, so that an unchanged one is not sent again.
    told_systemd: String,
}

pub async fn run(settings: Settings) -> u8 {
    let (events, mut incoming) = unbounded_channel();
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return 1;
    };
    let watch = match FolderWatch::new(events.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch folders; changes need `systemctl reload promfed`");
            None
        }
    };
    let mut daemon = Daemon {
        state: State::new(),
        settings,
        events,
        watch,
        tasks: BTreeMap::new(),
        unverified: (false, false),
        retry: None,
        pending: None,
        told_systemd: String::new(),
    };
    let watchdog = systemd::watchdog_interval();
    let mut next_watchdog = watchdog.map(|w| Instant::now() + w);

    tracing::info!(stage = "start", config = %daemon.settings.source.display(), "promfed {} starting", env!("CARGO_PKG_VERSION"));
    tokio::select! {
        () = daemon.apply(Trigger::Start) => {}
        _ = terminate.recv() => return daemon.stop(),
        _ = interrupt.recv() => return daemon.stop(),
    }
    daemon.ready();

    loop {
        let wake = [
            daemon.pending.map(|(_, due)| due),
            daemon.retry.map(|(at, _)| at),
            next_watchdog,
        ]
        .into_iter()
        .flatten()
        .min();
        let timer = sleep_until(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
        tokio::select! {
            Some(event) = incoming.recv() => daemon.handle(event),
            _ = hangup.recv() => {
                tracing::info!(stage = "reload", "SIGHUP: re-reading everything");
                systemd::reloading();
                tokio::select! {
                    () = daemon.apply(Trigger::Hangup) => {}
                    _ = terminate.recv() => return daemon.stop(),
                    _ = interrupt.recv() => return daemon.stop(),
                }
                daemon.ready();
            }
            _ = terminate.recv() => return daemon.stop(),
            _ = interrupt.recv() => return daemon.stop(),
            () = timer => {
                let now = Instant::now();
                if next_watchdog.is_some_and(|t| t <= now) {
                    systemd::watchdog();
                    next_watchdog = watchdog.map(|w| now + w);
                }
                let trigger = if daemon.pending.is_some_and(|(_, due)| due <= now) {
                    Some(Trigger::Files)
                } else if daemon.retry.is_some_and(|(at, _)| at <= now) {
                    Some(Trigger::Retry)
                } else {
                    None
                };
                if let Some(trigger) = trigger {
                    tokio::select! {
                        () = daemon.apply(trigger) => {}
                        _ = terminate.recv() => return daemon.stop(),
                        _ = interrupt.recv() => return daemon.stop(),
                    }
                }
            }
        }
    }
}

impl Daemon {
    fn handle(&mut self, event: Event) {
        match event {
            Event::FileChanged(path) => {
                if !self.relevant(&path) {
                    return;
                }
                tracing::debug!(file = %path.display(), stage = "watch", "changed");
                let now = Instant::now();
                let first = self.pending.map_or(now, |(first, _)| first);
                let d = &self.settings.daemon;
                self.pending = Some((first, (now + d.debounce).min(first + d.max_delay)));
            }
            Event::Discovered { cluster, result } => {
                if self.tasks.contains_key(&cluster) {
                    self.state
                        .discovered(&cluster, &result, &self.tasks[&cluster].definition);
                    self.publish();
                }
            }
        }
    }

    /// Files promfed writes itself, or that no input depends on, are not news.
    fn relevant(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let own_output = std::iter::once(&self.settings.prometheus.config_file)
            .chain(self.settings.alertmanager.as_ref().map(|a| &a.config_file))
            .any(|f| f == path);
        !(name.contains(".promfed-") || own_output || path.starts_with(&self.settings.state_dir))
    }

    async fn apply(&mut self, trigger: Trigger) {
        self.pending = None;
        match Settings::load(&self.settings.source) {
            Ok(s) => self.settings = s,
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
        let is_new = |c: &crate::cluster::Cluster| !tasks.contains_key(c.name.as_str());
        let options = Options {
            mode: Mode::Apply,
            discover: &is_new,
            force_reload_prometheus: self.unverified.0,
            force_reload_alertmanager: self.unverified.1,
        };
        let report = transaction::run(&self.settings, &options).await;

        self.unverified = (
            matches!(
                report.prometheus,
                crate::install::ConfigOutcome::InstalledUnverified(_)
            ),
            matches!(
                report.alertmanager,
                Some(crate::install::ConfigOutcome::InstalledUnverified(_))
            ),
        );
        let retry = std::iter::once(&report.prometheus)
            .chain(report.alertmanager.as_ref())
            .any(|o| o.worth_retrying());
        self.retry = retry.then(|| {
            let backoff = self
                .retry
                .map_or(Duration::from_secs(1), |(_, b)| (b * 2).min(MAX_RETRY));
            tracing::warn!(stage = "apply", retry_in = ?backoff, "will try again");
            (Instant::now() + backoff, backoff)
        });

        self.state.applied(&report);
        self.update_tasks(&report, trigger);
        self.update_watch();
        self.publish();
    }

    /// One discovery task per cluster in force; a changed definition gets a
    /// new task, a removed cluster loses its task.
    fn update_tasks(&mut self, report: &transaction::Report, trigger: Trigger) {
        let wanted: BTreeSet<String> = report.in_force.iter().map(|c| c.name.to_string()).collect();
        self.tasks.retain(|name, _| wanted.contains(name));
        if self.settings.discovery != crate::settings::DiscoveryMode::FileSd {
            self.tasks.clear();
            return;
        }
        for cluster in &report.in_force {
            let name = cluster.name.to_string();
            if self
                .tasks
                .get(&name)
                .is_some_and(|t| t.definition == *cluster)
            {
                if trigger != Trigger::Retry {
                    self.tasks[&name].poke(); // credentials may have rotated
                }
                continue;
            }
            let discovered = report
                .clusters
                .iter()
                .any(|c| c.name.as_deref() == Some(&name) && c.discovery.is_some());
            let task = ClusterTask::start(
                cluster.clone(),
                self.settings.targets_dir(),
                self.settings.daemon.resync_interval,
                self.events.clone(),
                discovered,
            );
            self.tasks.insert(name, task);
        }
    }

    /// The folders whose changes matter: settings, cluster files and their
    /// credential folders, base files.
    fn update_watch(&mut self) {
        let Some(watch) = &mut self.watch else { return };
        let s = &self.settings;
        let mut folders = BTreeSet::new();
        let mut add_parent = |p: &Path| {
            if let Some(parent) = p.parent() {
                folders.insert(parent.to_path_buf());
            }
        };
        add_parent(&s.source);
        add_parent(&s.prometheus.base_file);
        if let Some(am) = &s.alertmanager {
            add_parent(&am.base_file);
        }
        for task in self.tasks.values() {
            for (_, file) in task.definition.credential_files() {
                add_parent(file);
            }
        }
        folders.insert(s.clusters_dir.clone());
        if let Ok(entries) = std::fs::read_dir(&s.clusters_dir) {
            folders.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for problem in watch.set(folders) {
            tracing::warn!(stage = "watch", "{problem}");
        }
    }

    fn ready(&mut self) {
        self.told_systemd = self.state.summary();
        systemd::ready(&self.told_systemd);
    }

    /// Writes status.json and the metrics file, and tells systemd.
    fn publish(&mut self) {
        if let Err(e) = self.state.write(&self.settings) {
            tracing::warn!(stage = "status", error = %e, "cannot write status or metrics");
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
