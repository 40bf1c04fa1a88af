//! The inputs, read in two stages: each file into a raw form that keeps
//! every key's position, then validated into the types the rest of promfed
//! uses (`Settings`, `Cluster`). Only validation builds those types.

pub mod cluster;
pub mod credential_source;
pub mod defaults;
#[cfg(test)]
mod defaults_tests;
pub mod diagnostic;
pub mod dialect;
pub mod duration;
pub mod exporter;
pub mod federate;
pub mod inventory;
pub mod label_selector;
pub mod last_good;
pub mod limits;
pub mod merge;
pub mod monitors;
pub mod names;
pub mod origins;
pub mod pods;
pub mod presets;
#[cfg(test)]
mod properties;
pub mod quoting;
pub mod relabel;
pub mod selector;
pub mod settings;
pub mod shard;
pub mod tls_files;
pub mod toml_fields;
pub mod values;
