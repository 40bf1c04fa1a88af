//! What the daemon knows about itself and each cluster, turned into
//! `status.json`, the metrics file and systemd's one-line STATUS.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;

use crate::apply::{Definition, Report};
use crate::config::cluster::Cluster;
use crate::config::settings::Settings;
use crate::config::shard::ShardSettings;
use crate::credential_expiry::Credential;
use crate::credentials::file::{Files, Meta};
use crate::credentials::renewal::Attempt;
use crate::discovery::health::Health;
#[cfg(test)]
use crate::discovery::health::Which;
use crate::metrics::Metrics;
use crate::programs::ProgramKind;
use crate::status::{
    Adopted, CredentialStatus, DiscoveryState, DiscoveryStatus, LastApply, PrometheusWatches,
    ShardShare, Status, WatchStatus,
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
            for (credential, expires) in crate::credential_expiry::of_files(&cluster.auth) {
                self.credential_expires(&name, credential, expires);
            }
            // A credential promfed renews knows its own end, whatever its
            // file tells (an EKS token is no JWT).
            if cluster.auth.source.is_some() {
                if let Some(meta) = Files::of(credentials_dir, &cluster.name).meta() {
                    self.credential_expires(&name, renewed_kind(&meta), meta.expires);
                }
            }
        }
    }

    /// Takes in when one of a cluster's credentials expires (`None`: it
    /// has no known end). Every source of an expiry comes through here.
    pub fn credential_expires(
        &mut self,
        cluster: &str,
        credential: Credential,
        expires: Option<i64>,
    ) {
        let shown = expires.and_then(rfc3339);
        if let Some(s) = self.status.clusters.get_mut(cluster) {
            match credential {
                Credential::Token => s.token_expiry = shown,
                Credential::Certificate => s.certificate_expiry = shown,
            }
        }
        if let Some(m) = self.metrics.clusters.get_mut(cluster) {
            match credential {
                Credential::Token => m.token_expiry = expires,
                Credential::Certificate => m.certificate_expiry = expires,
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
        self.credential_expires(name, renewed_kind(&meta), meta.expires);
        let Some(status) = self.status.clusters.get_mut(name) else {
            return false;
        };
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

    /// Takes in each cluster's discovery task (`None`: it has none).
    pub fn watched_by(&mut self, health: impl Fn(&str) -> Option<Arc<Health>>) {
        for (name, m) in &mut self.metrics.clusters {
            m.health = health(name);
        }
    }

    /// Copies each cluster's last list and watch events into status.json;
    /// returns whether they changed. The metrics read them as they are
    /// written.
    pub fn refresh_health(&mut self) -> bool {
        let mut changed = false;
        for (name, m) in &self.metrics.clusters {
            let Some(status) = self.status.clusters.get_mut(name) else {
                continue;
            };
            let (last_list, watches) = match m.health.as_deref() {
                Some(health) => (
                    health.last_list().and_then(rfc3339),
                    health
                        .last_events()
                        .filter_map(|(resource, at)| {
                            Some(WatchStatus {
                                resource: resource.into(),
                                last_event: rfc3339(at)?,
                            })
                        })
                        .collect(),
                ),
                None => (None, Vec::new()),
            };
            let d = &mut status.discovery;
            if d.last_list != last_list || d.watches != watches {
                (d.last_list, d.watches) = (last_list, watches);
                changed = true;
            }
        }
        changed
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

fn rfc3339(second: i64) -> Option<String> {
    Timestamp::from_second(second).ok().map(|t| t.to_string())
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// Which of a cluster's credentials promfed renewed last.
fn renewed_kind(meta: &Meta) -> Credential {
    match meta.kind.as_str() {
        "certificate" => Credential::Certificate,
        _ => Credential::Token,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_health::{Level, assess};
    use crate::config::diagnostic::SourceText;
    use crate::discovery::health::Health;
    use crate::status::ClusterStatus;
    use std::time::Duration;

    fn cluster() -> Cluster {
        let text =
            "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"/t\"\nca_file = \"/ca\"\n";
        Cluster::parse(&SourceText::new("/etc/promfed.d/c.toml", text), "c")
            .map(|p| p.cluster)
            .map_err(|_| "invalid")
            .unwrap()
    }

    /// The nodes watch says nothing while the EndpointSlices' bookmarks
    /// come every minute: yellow past 330 s, red past 660 s, and only the
    /// silent watch is named, in status.json as in the metrics.
    #[tokio::test(start_paused = true)]
    async fn a_silent_watch_turns_yellow_then_red_as_time_passes() {
        let health = Arc::new(Health::of(&cluster()));
        let mut state = State::new();
        state.status.clusters.insert(
            "c".into(),
            ClusterStatus {
                discovery: DiscoveryStatus {
                    state: DiscoveryState::Ok,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        state
            .metrics
            .clusters
            .insert("c".into(), Default::default());
        state.watched_by(|_| Some(health.clone()));
        health.listed();
        health.opened(Which::Nodes);
        health.opened(Which::Slices);
        let opened = health.now();
        let mut seen = Vec::new();
        for minute in 1..=12 {
            tokio::time::advance(Duration::from_secs(60)).await;
            health.heard(Which::Slices);
            assert!(state.refresh_health(), "the bookmark is news");
            let h = assess(&state.status.clusters["c"], None, health.now());
            seen.push((minute, h.level, h.causes.join("; ")));
        }
        assert_eq!(seen[4], (5, Level::Ok, String::new()));
        assert_eq!(
            seen[5],
            (6, Level::Yellow, "watch on nodes silent for 6m".into())
        );
        // 660 s is not more than 660 s.
        assert_eq!(seen[10].1, Level::Yellow);
        assert_eq!(
            seen[11],
            (12, Level::Red, "watch on nodes silent for 12m".into())
        );
        let metrics = state.metrics.render();
        assert!(
            metrics.contains(&format!(
                "promfed_cluster_watch_last_event_timestamp_seconds{{cluster=\"c\",resource=\"nodes\"}} {opened}\n"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "promfed_cluster_watch_last_event_timestamp_seconds{{cluster=\"c\",resource=\"endpointslices\"}} {}\n",
                opened + 720
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains("promfed_cluster_last_list_success_timestamp_seconds{cluster=\"c\"} "),
            "{metrics}"
        );
        assert!(!state.refresh_health(), "nothing new: nothing to write");
    }
}
