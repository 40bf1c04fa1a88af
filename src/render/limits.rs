//! The interval and limits each generated job is rendered with, in one
//! place: `render` writes them, `doctor` measures samples against them.

use crate::config::cluster::Cluster;
use crate::config::duration::PromDuration;
use crate::config::exporter::Exporter;
use crate::config::limits::{self, Effective, Limits};
use crate::config::monitors::MonitorJob;
use crate::config::settings::Settings;
use crate::targets::JobKind;

/// A job's interval and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLimits {
    pub interval: PromDuration,
    pub limits: Effective,
}

/// Those of one of promfed's own jobs of `cluster`.
pub fn builtin(cluster: &Cluster, kind: JobKind, settings: &Settings) -> JobLimits {
    let none = Limits::default();
    let (interval, written, defaults) = match kind {
        JobKind::Kubelet => (
            &cluster.kubelet.scrape_interval,
            &cluster.kubelet.limits,
            limits::KUBELET,
        ),
        JobKind::Cadvisor => (
            &cluster.cadvisor.component.scrape_interval,
            &cluster.cadvisor.component.limits,
            limits::CADVISOR,
        ),
        JobKind::Apiserver => (
            &cluster.apiserver.scrape_interval,
            &cluster.apiserver.limits,
            limits::APISERVER,
        ),
        JobKind::NodeExporter => (
            &cluster.node_exporter.component.scrape_interval,
            &cluster.node_exporter.component.limits,
            limits::NODE_EXPORTER,
        ),
        JobKind::Federate => match &cluster.federate {
            Some(f) => (&f.scrape_interval, &f.limits, limits::FEDERATE),
            None => (&None, &none, limits::FEDERATE),
        },
        JobKind::Pods => (
            &None,
            cluster.pods.as_ref().map_or(&none, |p| &p.limits),
            limits::PODS,
        ),
    };
    make(interval, written, &defaults, settings)
}

/// Those of an `[exporter.<job>]`.
pub fn exporter(e: &Exporter, settings: &Settings) -> JobLimits {
    make(&e.scrape_interval, &e.limits, &e.limit_defaults, settings)
}

/// Those of a monitor's endpoint: an exporter's defaults, under what the
/// monitor itself says (`interval`, `scrapeTimeout`, `sampleLimit`).
pub fn monitor(m: &MonitorJob, settings: &Settings) -> JobLimits {
    let written = Limits {
        sample_limit: m.sample_limit,
        body_size_limit: None,
        scrape_timeout: m.timeout.clone(),
    };
    make(&m.interval, &written, &limits::PODS, settings)
}

fn make(
    interval: &Option<PromDuration>,
    written: &Limits,
    defaults: &limits::Defaults,
    settings: &Settings,
) -> JobLimits {
    let interval = interval
        .clone()
        .unwrap_or_else(|| settings.scrape_interval.clone());
    JobLimits {
        limits: written.effective(defaults, &interval, settings.scrape_timeout.as_ref()),
        interval,
    }
}
