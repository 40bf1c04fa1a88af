//! promfed keeps one Prometheus host scraping many Kubernetes clusters through
//! their API servers. See README.md for the whole story, and its section
//! "How it is built" for where each stage of the transaction lives.
#![deny(unsafe_code)]

#[macro_use]
mod output;

mod access;
mod add_cluster;
mod apply;
mod cli;
mod cluster_health;
mod config;
mod credential_expiry;
mod credentials;
mod daemon;
mod digest;
mod discovery;
mod discovery_error;
mod doctor;
mod fsutil;
mod inotify;
mod jwt;
mod logging;
mod memory;
mod metrics;
mod permissions;
mod programs;
mod proxy_auth;
mod rbac;
mod render;
mod render_cluster;
mod shard;
mod shard_plan;
mod status;
mod status_view;
mod target_health;
mod targets;
mod yaml_depth;

pub use cli::main;
/// For the fuzzers in `fuzz/`: the decoders of what API servers send.
#[doc(hidden)]
pub use credentials::fuzzing as credential_fuzzing;
pub use discovery::fuzzing;
