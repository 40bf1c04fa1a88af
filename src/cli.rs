//! The command line: parse arguments, load settings, run a command, map the
//! result to an exit code (0 ok, 1 run-time failure, 2 usage, 78 config).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::access::Identity;
use crate::last_good::LastGood;
use crate::settings::{DEFAULT_CONFIG, Settings};
use crate::transaction::{self, ConfigOutcome, Definition, Mode, Report};

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
    Render,
    /// Run one transaction now: discover, render, gate, install, reload, verify.
    Apply,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let settings = match Settings::load(&args.config) {
        Ok(s) => s,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!(
                "promfed: {} problem(s) in {}; nothing was changed",
                problems.len(),
                args.config.display()
            );
            return ExitCode::from(EX_CONFIG);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let code = match args.command {
        Command::Render => render(&settings),
        Command::Check => {
            let report = runtime.block_on(transaction::run(&settings, Mode::Check));
            print_report(&report, &settings);
            report.exit_code()
        }
        Command::Apply => {
            let report = runtime.block_on(transaction::run(&settings, Mode::Apply));
            print_report(&report, &settings);
            report.exit_code()
        }
    };
    ExitCode::from(code)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROMFED_LOG")
        .unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn render(settings: &Settings) -> u8 {
    let user = match Identity::lookup(&settings.prometheus.user) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let (inventory, candidate) =
        transaction::load_and_render(settings, &LastGood::new(&settings.last_good_dir()), &user);
    for p in &inventory.problems {
        eprintln!("error: {p}");
    }
    match candidate {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            if inventory.problems.is_empty() {
                0
            } else {
                EX_CONFIG
            }
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            EX_CONFIG
        }
    }
}

fn print_report(report: &Report, settings: &Settings) {
    for p in &report.problems {
        eprintln!("error: {p}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
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
                ", {} nodes, {} node-exporter pods",
                t.nodes.len(),
                t.node_exporters.len()
            ),
            Some(Err(e)) => format!(
                ", discovery failed ({}): {e}; its last targets stay in place",
                e.reason()
            ),
        };
        println!(
            "cluster {name} ({}){definition}{discovery}",
            c.file.display()
        );
    }
    let target = settings.prometheus.config_file.display();
    match &report.config {
        ConfigOutcome::NotRendered => {
            println!("prometheus: nothing rendered, {target} left as it is")
        }
        ConfigOutcome::Rejected(e) => {
            eprintln!("error: {e}");
            println!("prometheus: candidate rejected, {target} left as it is");
        }
        ConfigOutcome::Passed => {
            println!("prometheus: candidate passes promtool and the file checks")
        }
        ConfigOutcome::Unchanged => {
            println!("prometheus: {target} is up to date, no reload needed")
        }
        ConfigOutcome::Applied => println!("prometheus: {target} installed, reloaded and verified"),
        ConfigOutcome::InstalledUnverified(e) => {
            eprintln!("error: {e}");
            println!(
                "prometheus: {target} installed but not verified; Prometheus will read it when it starts"
            );
        }
        ConfigOutcome::RolledBack { error, restore } => {
            eprintln!("error: the new configuration did not take: {error}");
            match restore {
                Ok(()) => println!(
                    "prometheus: rolled back to the previous {target}, reloaded and verified"
                ),
                Err(e) => println!("prometheus: rollback failed: {e}"),
            }
        }
        ConfigOutcome::Failed(e) => eprintln!("error: {e}"),
    }
}
