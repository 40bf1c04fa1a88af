//! promfed keeps one Prometheus host scraping many Kubernetes clusters through
//! their API servers. See README.md for the whole story.
#![forbid(unsafe_code)]

pub mod access;
pub mod alertmanager_api;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod diagnostic;
pub mod discovery;
pub mod duration;
pub mod fsutil;
pub mod gate;
pub mod http_api;
pub mod install;
pub mod inventory;
pub mod jwt;
pub mod last_good;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod prometheus_api;
pub mod reload;
pub mod render;
pub mod settings;
pub mod status;
pub mod targets;
pub mod toml_fields;
pub mod transaction;
pub mod verify;
