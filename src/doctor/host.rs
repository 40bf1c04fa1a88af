//! On this host: Prometheus answers, its configured reload method can work,
//! and it has the inotify instances promfed's file_sd jobs need.

use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::Checks;
use crate::config::cluster::Cluster;
use crate::config::settings::{DiscoveryMode, ReloadMethod, ServiceSettings, Settings};
use crate::programs::http_api::HttpApi;

pub async fn check(settings: &Settings, clusters: &[Cluster], files: usize, checks: &mut Checks) {
    if files > 0 {
        checks.pass(
            "clusters",
            format!(
                "{files} cluster {} in {}",
                crate::output::plural(files, "file", "files"),
                settings.clusters_dir.display()
            ),
        );
    }
    if reachable("prometheus", &settings.prometheus, checks).await {
        reload(&settings.prometheus, checks).await;
        super::remote_write::check(settings, checks).await;
    }
    if let Some(alertmanager) = &settings.alertmanager {
        reachable("alertmanager", alertmanager, checks).await;
    }
    if settings.discovery == DiscoveryMode::FileSd {
        inotify(clusters, checks);
    }
}

async fn reachable(check: &'static str, program: &ServiceSettings, checks: &mut Checks) -> bool {
    let api = HttpApi::new(&program.url, super::STEP_TIMEOUT);
    match api.get_text("/-/ready").await {
        Ok(_) => {
            checks.pass(check, format!("answers at {}", program.url));
            true
        }
        Err(e) => {
            checks.fail(
                check,
                format!("does not answer: {e}"),
                format!(
                    "is it running (systemctl status {})? Is url in promfed.toml's [{check}] its address?",
                    if check == "prometheus" { "prometheus" } else { "prometheus-alertmanager" }
                ),
            );
            false
        }
    }
}

async fn reload(program: &ServiceSettings, checks: &mut Checks) {
    match &program.reload {
        ReloadMethod::Http => {
            let api = HttpApi::new(&program.url, super::STEP_TIMEOUT);
            // Read-only: the flags say whether POST /-/reload would be
            // refused (403 without --web.enable-lifecycle).
            let flags = api.get_text("/api/v1/status/flags").await;
            let lifecycle = flags.as_ref().ok().and_then(|text| {
                let v: serde_json::Value = serde_json::from_str(text).ok()?;
                Some(v["data"]["web.enable-lifecycle"].as_str()? == "true")
            });
            match lifecycle {
                Some(true) => checks.pass(
                    "reload",
                    "reload = \"http\": Prometheus runs with --web.enable-lifecycle",
                ),
                Some(false) => checks.fail(
                    "reload",
                    "reload = \"http\", but Prometheus runs without --web.enable-lifecycle: POST /-/reload answers 403 and no change would take",
                    "add --web.enable-lifecycle to ARGS in /etc/default/prometheus and restart Prometheus, or set reload = \"signal\" in promfed.toml's [prometheus]",
                ),
                None => checks.warn(
                    "reload",
                    format!(
                        "cannot read Prometheus's flags: {}",
                        flags.err().unwrap_or_else(|| "no web.enable-lifecycle in them".into())
                    ),
                    "make sure Prometheus runs with --web.enable-lifecycle",
                ),
            }
        }
        ReloadMethod::Signal(process) => match crate::programs::process::find_process(process) {
            Ok(pid) => match kill(Pid::from_raw(pid), None) {
                Ok(()) => checks.pass(
                    "reload",
                    format!("reload = \"signal\": process {pid} found, and promfed may signal it"),
                ),
                Err(e) => checks.fail(
                    "reload",
                    format!("reload = \"signal\": process {pid} cannot be signalled: {e}"),
                    "run promfed as the package installs it (its unit grants CAP_KILL), or set reload = \"http\"",
                ),
            },
            Err(e) => checks.fail(
                "reload",
                format!("reload = \"signal\": {e}"),
                "start Prometheus, or set pid_file (or reload = \"http\") in promfed.toml's [prometheus]",
            ),
        },
    }
}

/// Prometheus 2.42 takes one inotify instance per `file_sd_configs` block
/// (one per cluster, see `render`); past the per-user limit a job silently
/// stops following its targets.
fn inotify(clusters: &[Cluster], checks: &mut Checks) {
    let needed = crate::targets::file_sd_watchers(clusters);
    let Some(limit) = crate::inotify::max_user_instances() else {
        checks.warn(
            "inotify",
            "cannot read fs.inotify.max_user_instances",
            "nothing to do unless Prometheus logs \"Error adding file watcher\"",
        );
        return;
    };
    let detail = format!(
        "Prometheus needs about {needed} inotify {} for promfed's jobs; fs.inotify.max_user_instances is {limit} per user",
        crate::output::plural(needed, "instance", "instances")
    );
    let fix = "raise it: the package ships /usr/lib/sysctl.d/30-promfed.conf (`sysctl --system` applies it)";
    // Prometheus and the user's other programs take some too.
    if needed as u64 + 8 > limit {
        checks.fail("inotify", detail, fix);
    } else if (needed as u64) * 5 > limit * 4 {
        checks.warn("inotify", detail, fix);
    } else {
        checks.pass("inotify", detail);
    }
}
