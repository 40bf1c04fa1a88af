//! promfed's integration tests: one binary over one harness (`support`), so
//! the harness is compiled once and every helper is used somewhere. Each
//! module is one concern; each test gets its own temporary tree, and runs
//! the real `promfed` binary against real promtool, Prometheus, Alertmanager
//! and node-exporter, with only the Kubernetes API server faked.

mod support;

mod add_cluster;
mod bad_input;
mod crash;
mod credentials;
mod daemon;
mod doctor;
mod e2e;
mod edge;
mod exporters;
mod fake_apiserver;
mod federate;
mod first_contact;
mod fleet_defaults;
mod folder_watch;
mod golden;
mod health;
mod hostile;
mod limits;
mod monitors;
mod pods;
mod prometheus3;
mod rules;
mod secrets_and_files;
mod shapes;
mod shard;
mod shipped_defaults;
mod tls_files;
