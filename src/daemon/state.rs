//! What the daemon knows about itself and each cluster, turned into
//! `status.json`, the metrics file and systemd's one-line STATUS.

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::apply::{Definition, Report};
use crate::config::cluster::Cluster;
use crate::config::settings::Settings;
use crate::config::shard::ShardSettings;
use crate::credentials::file::Files;
use crate::credentials::renewal::Attempt;
use crate::metrics::Metrics;
use crate::programs::ProgramKind;
use crate::status::{
    Adopted, CredentialStatus, DiscoveryState, DiscoveryStatus, LastApply, PrometheusWatches,
    ShardShare, Status,
};
use crate::targets::{ClusterTargets, JobKind, RefreshError};

pub struct State {
    status: Status,
    metrics: Metrics,
}

/// Now, to the second: sub-second times would make every write differ.
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid time")
}

impl State {
    pub fn new() -> State {
        State {
            status: Status {
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                started: now().to_string(),
                ..Status::default()
            },
            metrics: Metrics::default(),
        }
    }

    /// Takes in the result of a transaction.
    /// This host's share of the clusters, after a transaction that read them.
    pub fn share(&mut self, shard: Option<&ShardSettings>, report: &Report) {
        if !report.started {
            return;
        }
        self.status.shard = shard.map(|s| {
            let here = report.in_force.len();
            ShardShare {
                me: s.me.clone(),
                members: s.members.clone(),
                replication: s.replication,
                clusters: here + report.elsewhere.len(),
                scraped_here: here,
            }
        });
        self.metrics.shard = self
            .status
            .shard
            .as_ref()
            .map(|s| (s.members.len(), s.clusters, s.scraped_here));
    }

    pub fn applied(&mut self, report: &Report, credentials_dir: &std::path::Path) {
        for p in &report.problems {
            tracing::error!(file = %p.file.display(), stage = "load", "{}", p.headline());
        }
        for w in &report.warnings {
            tracing::warn!(stage = "load", "{w}");
        }
        for notice in &report.notices {
            tracing::warn!(stage = "adopt", "{notice}");
        }
        if report.started {
            self.status.adopted = report
                .adopted
                .iter()
                .map(|(kind, base, from)| Adopted {
                    program: kind.name().into(),
                    base: base.clone(),
                    from: from.clone(),
                })
                .collect();
        }
        let time = now();
        let mut errors = Vec::new();
        for (kind, outcome) in &report.outcomes {
            let program = kind.name();
            let (ok, failed) = outcome.reloads();
            for (result, n) in [("success", ok), ("failure", failed)] {
                if n > 0 {
                    *self
                        .metrics
                        .reloads
                        .entry((program.into(), result.into()))
                        .or_default() += u64::from(n);
                }
            }
            match outcome.failure() {
                Some(e) => {
                    tracing::error!(stage = "apply", program, outcome = %outcome.kind(), "{program}: {e}");
                    errors.push(format!("{program}: {e}"));
                }
                None => tracing::info!(
                    stage = "apply",
                    program,
                    outcome = %outcome.kind(),
                    "{program} configuration {}",
                    outcome.kind()
                ),
            }
        }
        let kind_of = |program| report.outcome(program).map(|o| o.kind());
        let prometheus = kind_of(ProgramKind::Prometheus).expect("Prometheus is always managed");
        *self
            .metrics
            .applies
            .entry(prometheus.word().into())
            .or_default() += 1;
        if report.all_in_force() {
            self.status.last_success = Some(time.to_string());
            self.metrics.last_apply_success = Some(time.as_second());
        }
        self.status.last_apply = Some(LastApply {
            time: time.to_string(),
            prometheus,
            alertmanager: kind_of(ProgramKind::Alertmanager),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        });
        self.status.problems = report.problems.iter().map(|d| d.headline()).collect();
        self.status.warnings.clone_from(&report.warnings);

        let mut seen = BTreeSet::new();
        for c in &report.clusters {
            let key = c
                .name
                .clone()
                .unwrap_or_else(|| c.file.display().to_string());
            seen.insert(key.clone());
            let entry = self.status.clusters.entry(key.clone()).or_default();
            entry.file = c.file.clone();
            entry.definition = c.definition;
            if c.definition == Definition::Broken {
                entry.discovery = DiscoveryStatus {
                    state: DiscoveryState::None,
                    ..Default::default()
                };
            } else if entry.discovery.state == DiscoveryState::None {
                entry.discovery.state = DiscoveryState::Pending;
            }
            self.metrics.clusters.entry(key).or_default().config_valid =
                c.definition == Definition::Current;
        }
        self.status.clusters.retain(|k, _| seen.contains(k));
        self.metrics.clusters.retain(|k, _| seen.contains(k));
        for cluster in &report.in_force {
            let name = cluster.name.to_string();
            if let Some(Some(result)) = report
                .clusters
                .iter()
                .find(|c| c.name.as_deref() == Some(&name))
                .map(|c| &c.discovery)
            {
                self.discovered(&name, result, cluster);
            }
            let expiry = crate::credentials::expiry_of(cluster, credentials_dir);
            if let Some(s) = self.status.clusters.get_mut(&name) {
                s.token_expiry = expiry
                    .and_then(|t| Timestamp::from_second(t).ok())
                    .map(|t| t.to_string());
            }
            if let Some(m) = self.metrics.clusters.get_mut(&name) {
                m.token_expiry = expiry;
            }
        }
    }

    /// Takes in one credential renewal of a cluster; whether its discovery
    /// is failing (and so worth trying again now).
    pub fn credential(
        &mut self,
        name: &str,
        cluster: &Cluster,
        attempt: &Attempt,
        settings: &Settings,
    ) -> bool {
        let files = Files::of(&settings.credentials_dir(), &cluster.name);
        let next = Timestamp::now().as_second()
            + i64::try_from(attempt.next_in.as_secs()).unwrap_or(i64::MAX / 2);
        let mut meta = files.meta().unwrap_or_default();
        meta.next_renewal = Some(next);
        if let Err(e) = files.write_meta(&meta) {
            tracing::warn!(
                cluster = name,
                stage = "credential",
                "cannot write {}: {e}",
                files.meta.display()
            );
        }
        let source = cluster.auth.source.as_ref().map_or("", |s| s.word());
        let shown = |t: Option<i64>| {
            t.and_then(|t| Timestamp::from_second(t).ok())
                .map(|t| t.to_string())
        };
        match &attempt.result {
            Ok(expires) => tracing::info!(
                cluster = name,
                stage = "credential",
                "cluster {name}: new credential from [{source}], {}; next renewal in {} s",
                expires.map_or("with no expiry".into(), |t| format!("valid until {t}")),
                attempt.next_in.as_secs()
            ),
            Err(e) => tracing::error!(
                cluster = name,
                stage = "credential",
                "cluster {name}: renewing the credential ([{source}]) failed: {e}; next attempt in {} s",
                attempt.next_in.as_secs()
            ),
        }
        if let Some(expires) = meta.expires.filter(|e| *e < next) {
            tracing::warn!(
                cluster = name,
                stage = "credential",
                "cluster {name}: the credential expires at {} before the next renewal attempt at {}",
                shown(Some(expires)).unwrap_or_default(),
                shown(Some(next)).unwrap_or_default()
            );
        }
        let (Some(status), Some(metrics)) = (
            self.status.clusters.get_mut(name),
            self.metrics.clusters.get_mut(name),
        ) else {
            return false;
        };
        status.token_expiry = shown(meta.expires);
        metrics.token_expiry = meta.expires;
        status.credential = Some(CredentialStatus {
            source: source.into(),
            renewed: shown(meta.renewed),
            next_renewal: shown(Some(next)),
            error: attempt.result.as_ref().err().cloned(),
        });
        status.discovery.state != DiscoveryState::Ok
    }

    /// Takes in one discovery result of a cluster.
    pub fn discovered(
        &mut self,
        name: &str,
        result: &Result<ClusterTargets, RefreshError>,
        cluster: &Cluster,
    ) {
        let (Some(status), Some(metrics)) = (
            self.status.clusters.get_mut(name),
            self.metrics.clusters.get_mut(name),
        ) else {
            return;
        };
        let d = &mut status.discovery;
        let was = d.state;
        match result {
            Ok(found) => {
                d.state = DiscoveryState::Ok;
                d.reason = None;
                d.error = None;
                d.nodes = found.nodes.len();
                if !found.skipped.is_empty() {
                    tracing::warn!(
                        cluster = name,
                        stage = "discovery",
                        "cluster {name}: the API server gave names that are not Kubernetes names{}",
                        crate::output::skipped(&found.skipped)
                    );
                }
                d.node_exporters = found.node_exporters.len();
                took_monitors(name, d, found.monitors.as_deref());
                if let (Some(matched), Some(pods)) = (found.pods_capped, &cluster.pods) {
                    tracing::warn!(
                        cluster = name,
                        stage = "discovery",
                        "cluster {name}: {matched} pods are annotated for scraping, more than [pods] max_targets = {}: only the first {} (by namespace and name) are scraped; raise max_targets or narrow [pods] namespaces",
                        pods.max_targets,
                        pods.max_targets
                    );
                }
                metrics.discovery_healthy = true;
                metrics.targets = JobKind::ALL
                    .into_iter()
                    .filter(|k| k.enabled_in(cluster))
                    .map(|k| {
                        let n = match k {
                            JobKind::Kubelet | JobKind::Cadvisor => found.nodes.len(),
                            JobKind::Apiserver | JobKind::Federate => 1,
                            JobKind::NodeExporter => found.node_exporters.len(),
                            JobKind::Pods => found.pods.len(),
                        };
                        (k.slug().to_string(), n)
                    })
                    .chain(
                        found
                            .exporters
                            .iter()
                            .map(|(job, t)| (job.clone(), t.len())),
                    )
                    .chain(found.monitors.iter().flat_map(|m| {
                        m.jobs.iter().map(|j| {
                            let n = m.targets.get(&j.file_name()).map_or(0, Vec::len);
                            (j.operator_name(), n)
                        })
                    }))
                    .collect();
                for note in &found.exporter_notes {
                    tracing::warn!(
                        cluster = name,
                        stage = "discovery",
                        "cluster {name}: {note}: that job has no targets"
                    );
                }
                if was != DiscoveryState::Ok {
                    tracing::info!(
                        cluster = name,
                        stage = "discovery",
                        nodes = d.nodes,
                        node_exporters = d.node_exporters,
                        "cluster {name}: discovery ok again, {}, {}",
                        crate::output::counted(d.nodes, "node", "nodes"),
                        crate::output::counted(
                            d.node_exporters,
                            "node-exporter pod",
                            "node-exporter pods"
                        )
                    );
                }
            }
            Err(e) => {
                d.state = DiscoveryState::Failing;
                d.reason = Some(e.reason().into());
                d.error = Some(e.to_string());
                metrics.discovery_healthy = false;
                *metrics.errors.entry(e.reason().into()).or_default() += 1;
                tracing::warn!(
                    cluster = name,
                    stage = "discovery",
                    reason = e.reason(),
                    "cluster {name}: {e}; keeping the last targets"
                );
            }
        }
        if was != d.state {
            d.since = Some(now().to_string());
        }
    }

    /// Takes in whether the folders are polled; returns whether that changed.
    pub fn set_watch(&mut self, degraded: Option<&str>) -> bool {
        let degraded = degraded.map(str::to_string);
        if self.status.degraded == degraded {
            return false;
        }
        self.metrics.watch_degraded = degraded.is_some();
        self.status.degraded = degraded;
        true
    }

    /// Prometheus's inotify budget; returns whether it changed.
    pub fn set_prometheus_watches(&mut self, watches: PrometheusWatches) -> bool {
        if self.status.prometheus_watches.as_ref() == Some(&watches) {
            return false;
        }
        self.metrics.prometheus_watches = Some((watches.needed, watches.limit, watches.exhausted));
        self.status.prometheus_watches = Some(watches);
        true
    }

    /// systemd's STATUS=: clusters OK and failing, and the last apply.
    pub fn summary(&self) -> String {
        let clusters = &self.status.clusters;
        let ok = clusters.values().filter(|c| c.is_healthy()).count();
        let failing: Vec<&str> = clusters
            .iter()
            .filter(|(_, c)| !c.is_healthy())
            .map(|(n, _)| n.as_str())
            .collect();
        let mut line = format!(
            "{ok} {} OK, {} failing",
            crate::output::plural(ok, "cluster", "clusters"),
            failing.len()
        );
        if !failing.is_empty() {
            line.push_str(&format!(" ({})", failing.join(", ")));
        }
        if self.status.degraded.is_some() {
            line.push_str("; degraded: polling");
        }
        if self
            .status
            .prometheus_watches
            .as_ref()
            .is_some_and(|w| w.exhausted)
        {
            line.push_str("; Prometheus file watches exhausted");
        }
        if let Some(a) = &self.status.last_apply {
            line.push_str(&format!("; last apply {} {}", a.time, a.prometheus));
            if let Some(am) = &a.alertmanager {
                line.push_str(&format!(", alertmanager {am}"));
            }
        }
        line
    }

    /// The metrics first, status.json last: whoever sees a new status.json
    /// finds the metrics of the same moment. A metrics folder promfed may
    /// not write does not keep status.json from being written.
    /// Writes both; what failed names its file.
    pub fn write(&self, settings: &Settings) -> Result<(), String> {
        let metrics = settings
            .daemon
            .metrics_file
            .as_ref()
            .map_or(Ok(()), |path| {
                path.parent()
                    .map_or(Ok(()), |dir| crate::fsutil::create_dir(dir, 0o755))
                    // Rewritten even when unchanged: its mtime
                    // (node_textfile_mtime_seconds) is the heartbeat the
                    // shipped rules watch.
                    .and_then(|()| {
                        crate::fsutil::write_atomic(path, self.metrics.render().as_bytes(), 0o644)
                    })
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
        let status = crate::status::write(settings, &self.status).map_err(|e| {
            format!(
                "{}: {e}",
                crate::status::path(&settings.state_dir).display()
            )
        });
        metrics.and(status)
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// Records what `[monitors]` found; each skip is told in the journal once,
/// when it first appears, not at every event.
fn took_monitors(
    name: &str,
    d: &mut crate::status::DiscoveryStatus,
    found: Option<&crate::targets::MonitorsFound>,
) {
    let Some(found) = found else {
        d.monitors = None;
        return;
    };
    let before = d.monitors.take().unwrap_or_default();
    for note in found.notes.iter().filter(|n| !before.skipped.contains(n)) {
        tracing::warn!(
            cluster = name,
            stage = "discovery",
            "cluster {name}: monitors: {note}"
        );
    }
    d.monitors = Some(crate::status::MonitorsStatus {
        jobs: found.jobs.len(),
        skipped: found.notes.clone(),
    });
}
