//! Where log lines go: the journal with structured fields under systemd,
//! readable lines on stderr otherwise. `PROMFED_LOG` sets the filter.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// For one-shot commands: only warnings, unless asked.
pub fn init_command() {
    tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// For the daemon: systemd sets `JOURNAL_STREAM` when stderr is the journal;
/// then fields (cluster, file, stage) are sent as journal fields.
pub fn init_daemon() {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter("info"))
                .with(
                    journald
                        .with_syslog_identifier("promfed".into())
                        .with_field_prefix(None),
                )
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("PROMFED_LOG").unwrap_or_else(|_| default.into())
}
