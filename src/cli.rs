//! The command line: parse arguments, load settings, run a command, map the
//! result to an exit code (0 ok, 1 run-time failure, 2 usage, 78 config).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::apply::managed::Managed;
use crate::apply::outcome::ConfigOutcome;
use crate::apply::rollback::RolledBack;
use crate::apply::{self, CannotRender, Definition, Mode, Options, Report};
use crate::config::settings::{DEFAULT_CONFIG, Settings};

const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "promfed",
    version,
    about = "Keeps one Prometheus host scraping many Kubernetes clusters through their API servers"
)]
struct Args {
    /// The settings file.
    #[arg(long, global = true, env = "PROMFED_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the settings and every cluster file, render and gate with promtool; change nothing.
    Check,
    /// Print the Prometheus configuration that would be installed; change nothing.
    /// With clusters: print each one's definition, [defaults] merged in, and where each value comes from.
    Render {
        /// Only show these clusters' definitions (names or files).
        clusters: Vec<String>,
    },
    /// Run one transaction now: discover, render, gate, install, reload, verify.
    Apply,
    /// The daemon: keep Prometheus (and Alertmanager) in step with the cluster files.
    Run,
    /// What the daemon last did, per cluster.
    Status {
        /// Print status.json as it is, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Check everything between this host and each cluster's targets; change nothing.
    Doctor {
        /// Only these clusters (names or files); all when none is given.
        clusters: Vec<String>,
        /// Print the checks as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print the Kubernetes RBAC manifests a cluster's enabled jobs need.
    Rbac {
        /// The namespace of promfed's service account.
        #[arg(long, default_value = "monitoring")]
        namespace: String,
        /// Print the TokenRequest variant (no long-lived token Secret), as a
        /// cluster file with [token_request] does without it.
        #[arg(long)]
        token_request: bool,
        /// With TokenRequest: the identity promfed signs in with (the base
        /// credential's user: a client certificate's CN, or
        /// system:serviceaccount:NS:NAME).
        #[arg(long, value_name = "USER", default_value = "promfed")]
        base_user: String,
        /// A cluster (name or file); the defaults when none is given.
        cluster: Option<String>,
    },
    /// Write a cluster file and its credentials from a kubeconfig context, then run doctor on it.
    AddCluster {
        /// The cluster's name: its file is CLUSTERS_DIR/NAME.toml.
        name: String,
        /// The kubeconfig to read.
        #[arg(long, value_name = "FILE")]
        kubeconfig: PathBuf,
        /// The context to read; the kubeconfig's current context by default.
        #[arg(long)]
        context: Option<String>,
        /// Replace a cluster that is already configured.
        #[arg(long)]
        force: bool,
    },
    /// Print which host scrapes which cluster ([shard]), and what another member list would move.
    ShardPlan {
        /// Another member list to compare with, e.g. mon-a,mon-b,mon-c,mon-d.
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<String>>,
        /// Print the plan as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (used to build the packages).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Command::Completions { shell } = args.command {
        use clap::CommandFactory;
        clap_complete::generate(
            shell,
            &mut Args::command(),
            "promfed",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if matches!(args.command, Command::Run) {
        crate::logging::init_daemon();
    } else {
        crate::logging::init_command();
    }
    if let Command::Rbac {
        namespace,
        cluster,
        token_request,
        base_user,
    } = &args.command
    {
        let token = TokenOptions {
            asked: *token_request,
            base: base_user,
        };
        return finish(rbac(&args.config, cluster.as_deref(), namespace, &token));
    }
    if let Command::Status { json } = args.command {
        // Needs only the state folder: it must work while the daemon runs on
        // its last good settings and promfed.toml is broken.
        let settings = Settings::load(&args.config);
        if let Err(problems) = &settings {
            tell!(
                "warning: {} has {} (`promfed check` shows them); the daemon keeps the settings it last read",
                args.config.display(),
                crate::output::counted(problems.len(), "problem", "problems")
            );
        }
        // Target health is Prometheus's to tell, asked now (not kept in
        // status.json), once; only with settings that say where it is.
        let runtime = match runtime() {
            Ok(r) => r,
            Err(code) => return code,
        };
        let prometheus = settings
            .as_ref()
            .ok()
            .map(|s| crate::status_view::Prometheus {
                url: s.prometheus.url.as_str(),
                ask: Box::new(|| crate::target_health::ask(&runtime, &s.prometheus.url)),
            });
        let code =
            crate::status_view::print(&Settings::state_dir_of(&args.config), json, prometheus);
        return finish(code);
    }
    let settings = match Settings::load(&args.config) {
        Ok(s) => s,
        Err(problems) => {
            for p in &problems {
                tell!("error: {p}");
            }
            tell!(
                "promfed: {} in {}; nothing was changed",
                crate::output::counted(problems.len(), "problem", "problems"),
                args.config.display()
            );
            return ExitCode::from(EX_CONFIG);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let code = match args.command {
        Command::Render { clusters } if clusters.is_empty() => render(&settings),
        Command::Render { clusters } => crate::render_cluster::print(&settings, &clusters),
        Command::Check => transaction(&runtime, &settings, Mode::Check),
        Command::Apply => transaction(&runtime, &settings, Mode::Apply),
        Command::Run => {
            let code = runtime.block_on(crate::daemon::run(settings));
            // A transaction stopped by SIGTERM may leave a thread reading
            // files: do not wait for it (the next run cleans up after it).
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            return finish(code);
        }
        Command::Doctor { clusters, json } => {
            let findings = runtime.block_on(crate::doctor::run(&settings, &clusters));
            crate::doctor::print(&findings, json);
            findings.exit_code()
        }
        Command::ShardPlan { members, json } => shard_plan(&settings, members, json),
        Command::Rbac { .. } => unreachable!("handled before the settings are read"),
        Command::AddCluster {
            name,
            kubeconfig,
            context,
            force,
        } => add_cluster(
            &runtime,
            &settings,
            &crate::add_cluster::Request {
                name: &name,
                kubeconfig: &kubeconfig,
                context: context.as_deref(),
                force,
            },
        ),
        Command::Status { .. } => unreachable!("handled before the settings are read"),
        Command::Completions { .. } => unreachable!("handled before the settings are read"),
    };
    finish(code)
}

/// A `--members` list that breaks the rules of `[shard] members` is a usage
/// error (2); a plan that cannot be made is the configuration's (78).
fn shard_plan(settings: &Settings, members: Option<Vec<String>>, json: bool) -> u8 {
    let replication = settings.shard.as_ref().map_or(1, |s| s.replication);
    let members = match members
        .map(|m| crate::shard_plan::members_argument(m, replication))
        .transpose()
    {
        Ok(members) => members,
        Err(why) => {
            tell!("error: {why}");
            return 2;
        }
    };
    match crate::shard_plan::print(settings, members, json) {
        Ok(()) => 0,
        Err(why) => {
            tell!("error: {why}");
            EX_CONFIG
        }
    }
}

/// `promfed rbac` needs from the settings only where cluster files are and
/// the discovery mode: on a workstation without promfed.toml (where kubectl
/// is) the defaults serve.
/// `promfed rbac --token-request --base-user USER`.
struct TokenOptions<'a> {
    asked: bool,
    base: &'a str,
}

fn rbac(
    config: &std::path::Path,
    cluster: Option<&str>,
    namespace: &str,
    token: &TokenOptions,
) -> u8 {
    if !crate::config::names::is_label(namespace) {
        tell!("error: --namespace `{namespace}` is not a Kubernetes namespace name");
        return 2;
    }
    if let Some(why) = crate::rbac::base_problem(token.base) {
        tell!("error: --base-user {why}");
        return 2;
    }
    let (clusters_dir, mode, defaults) = match Settings::load(config) {
        Ok(s) => (s.clusters_dir, s.discovery, s.defaults),
        Err(problems) => {
            tell!(
                "warning: {} cannot be used ({}); rbac uses the defaults: /etc/promfed.d, file_sd discovery",
                config.display(),
                crate::output::counted(problems.len(), "problem", "problems")
            );
            (
                std::path::PathBuf::from("/etc/promfed.d"),
                crate::config::settings::DiscoveryMode::FileSd,
                crate::config::defaults::Defaults::none(),
            )
        }
    };
    match crate::rbac::cluster_for(&clusters_dir, cluster, &defaults) {
        Ok(cluster) => {
            say_raw!(
                "{}",
                crate::rbac::manifests(&cluster, mode, namespace, token.asked, token.base)
            );
            0
        }
        Err(why) => {
            tell!("error: {why}");
            EX_CONFIG
        }
    }
}

fn add_cluster(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    request: &crate::add_cluster::Request,
) -> u8 {
    match crate::add_cluster::write(settings, request) {
        Ok((file, done)) => {
            for line in &done {
                say!("{line}");
            }
            say!(
                "cluster {} is in {}; the daemon picks it up. Checking it:",
                request.name,
                file.display()
            );
            let only = [request.name.to_string()];
            let findings = runtime.block_on(crate::doctor::run(settings, &only));
            crate::doctor::print(&findings, false);
            findings.exit_code()
        }
        Err(why) => {
            tell!("error: {why}");
            tell!("promfed: nothing was added");
            1
        }
    }
}

/// The exit code, unless what the command printed could not be written.
fn finish(code: u8) -> ExitCode {
    if crate::output::all_written() {
        ExitCode::from(code)
    } else {
        tell!("promfed: cannot write to standard output; the output is incomplete");
        ExitCode::from(1)
    }
}

/// `check` or `apply`: one transaction, reported.
fn transaction(runtime: &tokio::runtime::Runtime, settings: &Settings, mode: Mode) -> u8 {
    let programs = Managed::all(settings);
    let report = runtime.block_on(apply::run(settings, &programs, &Options::new(mode)));
    print_report(&report, &programs, &settings.clusters_dir);
    report.exit_code()
}

fn render(settings: &Settings) -> u8 {
    let (inventory, candidate) = match apply::load_and_render(settings) {
        Ok(loaded) => loaded,
        Err(CannotRender::Unlistable(problem)) => {
            tell!("error: {problem}");
            return 1;
        }
        Err(CannotRender::NotOurs(problem)) => {
            tell!("error: {problem}");
            return EX_CONFIG;
        }
    };
    for p in &inventory.problems {
        tell!("error: {p}");
    }
    match candidate {
        Ok(candidate) => {
            crate::output::failed(std::io::stdout().write_all(candidate.text().as_bytes()));
            if inventory.problems.is_empty() {
                0
            } else {
                EX_CONFIG
            }
        }
        Err(problems) => {
            for p in &problems {
                tell!("error: {p}");
            }
            EX_CONFIG
        }
    }
}

fn print_report(report: &Report, programs: &[Managed], clusters_dir: &std::path::Path) {
    for notice in &report.notices {
        tell!("notice: {notice}");
    }
    for p in &report.problems {
        tell!("error: {p}");
    }
    for w in &report.warnings {
        tell!("warning: {w}");
    }
    for c in &report.clusters {
        let name = c.name.as_deref().unwrap_or("?");
        let definition = match c.definition {
            Definition::Current => "",
            Definition::KeptLastGood => ", file invalid: keeping its last good configuration",
            Definition::Broken => ", file invalid: not monitored until it is fixed",
        };
        let discovery = match &c.discovery {
            None => String::new(),
            Some(Ok(t)) => format!(
                ", {}, {}{}{}{}",
                crate::output::counted(t.nodes.len(), "node", "nodes"),
                crate::output::counted(
                    t.node_exporters.len(),
                    "node-exporter pod",
                    "node-exporter pods"
                ),
                annotated_pods(t),
                exporter_targets(t),
                crate::output::skipped(&t.skipped)
            ),
            Some(Err(e)) => format!(
                ", discovery failed ({}): {e}; its last targets stay in place",
                e.reason()
            ),
        };
        say!(
            "cluster {name} ({}){definition}{discovery}",
            c.file.display()
        );
    }
    for e in &report.elsewhere {
        say!(
            "cluster {} ({}): scraped by {}, not by this host",
            e.name,
            e.file.display(),
            e.owners.join(" and ")
        );
    }
    if report.started && report.clusters.is_empty() && report.elsewhere.is_empty() {
        say!(
            "no cluster files in {}: nothing to monitor yet; add one with `promfed add-cluster NAME --kubeconfig FILE` (files ending in .toml are read)",
            clusters_dir.display()
        );
    }
    for program in programs {
        if let Some(outcome) = report.outcome(program.kind()) {
            print_outcome(program.kind().name(), program.config_file(), outcome);
        }
    }
}

/// With `[pods]`: how many annotated pods are scraped, and how many more
/// matched than `max_targets` allows.
/// `, kube-dns: 2 targets` for each exporter job, and why one has none.
fn exporter_targets(t: &crate::targets::ClusterTargets) -> String {
    let mut out: String = t
        .exporters
        .iter()
        .map(|(job, found)| {
            format!(
                ", {job}: {}",
                crate::output::counted(found.len(), "target", "targets")
            )
        })
        .collect();
    for note in &t.exporter_notes {
        out.push_str(&format!(" ({note})"));
    }
    if let Some(m) = &t.monitors {
        out.push_str(&format!(
            ", {}",
            crate::output::counted(m.jobs.len(), "monitor job", "monitor jobs")
        ));
        for note in &m.notes {
            out.push_str(&format!(" (monitors: {note})"));
        }
    }
    out
}

fn annotated_pods(t: &crate::targets::ClusterTargets) -> String {
    match t.pods_capped {
        Some(matched) => format!(
            ", {} annotated pods scraped of {matched} that match (more than [pods] max_targets; raise it or narrow [pods] namespaces)",
            t.pods.len()
        ),
        None if !t.pods.is_empty() => format!(
            ", {}",
            crate::output::counted(t.pods.len(), "annotated pod", "annotated pods")
        ),
        None => String::new(),
    }
}

fn print_outcome(program: &str, target: &std::path::Path, outcome: &ConfigOutcome) {
    let target = target.display();
    match outcome {
        ConfigOutcome::NotRendered => {
            say!("{program}: nothing rendered, {target} left as it is")
        }
        ConfigOutcome::Rejected(e) if e.is_config_error() => {
            tell!("error: {e}");
            say!("{program}: candidate rejected, {target} left as it is");
        }
        ConfigOutcome::Rejected(e) => {
            tell!("error: {e}");
            say!("{program}: the candidate could not be checked, {target} left as it is");
        }
        ConfigOutcome::Passed => {
            say!("{program}: candidate passes the gate and the file checks")
        }
        ConfigOutcome::Unchanged => say!("{program}: {target} is up to date, no reload needed"),
        ConfigOutcome::Applied(_) => {
            say!("{program}: {target} installed, reloaded and verified")
        }
        ConfigOutcome::InstalledUnverified(e) => {
            tell!("error: {e}");
            say!(
                "{program}: {target} installed but not verified; it is read when the program starts"
            );
        }
        ConfigOutcome::RolledBack(RolledBack { error, restore }) => {
            tell!("error: the new configuration did not take: {error}");
            match restore {
                Ok(()) => {
                    say!("{program}: rolled back to the previous {target}, reloaded and verified")
                }
                Err(e) => say!("{program}: rollback failed: {e}"),
            }
        }
        ConfigOutcome::Failed(e) => tell!("error: {e}"),
        ConfigOutcome::NotOurs(why) => {
            tell!("error: {why}");
            say!("{program}: {target} is not promfed's; left as it is");
        }
    }
}

/// The current-thread runtime every command runs on; failing to make one
/// (no file descriptors left) is an error to say, not a panic.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tell!("promfed: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}
