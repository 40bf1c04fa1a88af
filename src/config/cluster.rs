//! One cluster file in `/etc/promfed.d/`: parsed and validated into a `Cluster`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use url::Url;

use super::credential_source::{RawExec, RawTokenRequest, Source};
use super::defaults::Defaults;
use super::diagnostic::{Diagnostic, SourceText};
use super::duration::PromDuration;
use super::exporter::{self, Exporter, RawExporter};
use super::federate::{Federate, RawFederate};
use super::limits::{Limits, RawLimits};
use super::monitors::{MonitorJob, Monitors, RawMonitors};
use super::names::{ClusterName, LabelName};
use super::pods::{Pods, RawPods};
use super::toml_fields::{self, Fields, Problems, Spanned, StringOrInteger};
use super::values::{self, Key};
// Re-exported for discovery and render, which import it from here.
pub use super::values::{ClientCert, PortRef};

/// A validated cluster definition. Only `Cluster::parse` builds one, from a
/// file's text (the last good definition, too, is kept as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cluster {
    pub name: ClusterName,
    pub source: PathBuf,
    pub api_server: ApiServer,
    pub auth: Auth,
    pub tls: Tls,
    pub labels: BTreeMap<LabelName, String>,
    /// The Alertmanager receiver for this cluster's alerts, if any.
    pub receiver: Option<String>,
    pub kubelet: Component,
    pub cadvisor: Cadvisor,
    pub apiserver: Component,
    pub node_exporter: NodeExporter,
    /// `[federate]`: an in-cluster Prometheus's `/federate`, if any.
    pub federate: Option<Federate>,
    /// `[pods]`: annotated pods, when enabled.
    pub pods: Option<Pods>,
    /// `[exporter.<job>]`: the enabled ones, sorted by job.
    pub exporters: Vec<Exporter>,
    /// `[monitors]`, when enabled.
    pub monitors: Option<Monitors>,
    /// The jobs of the monitors last discovered (`[monitors]`), sorted:
    /// not written in the file, attached by the transaction.
    pub monitor_jobs: Vec<MonitorJob>,
}

impl Cluster {
    /// The same cluster file, whatever monitor jobs each was rendered with
    /// and whichever copy of the token Prometheus was given: neither needs
    /// a new discovery task.
    pub fn same_definition(&self, other: &Cluster) -> bool {
        let strip = |c: &Cluster| Cluster {
            monitor_jobs: Vec::new(),
            auth: Auth {
                prometheus_token_file: None,
                ..c.auth.clone()
            },
            ..c.clone()
        };
        strip(self) == strip(other)
    }

    /// A digest of the monitor jobs in force, to tell when discovery found
    /// others.
    pub fn monitor_jobs_digest(&self) -> u64 {
        crate::digest::keyed(&self.monitor_jobs)
    }
}

/// The API server's URL, split the way scrape configs need it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiServer {
    pub url: Url,
    /// `host:port`, the `__address__` of every target of this cluster.
    pub address: String,
    /// A path prefix when the API server sits behind a proxy (Rancher,
    /// for example), without a trailing slash; usually empty.
    pub path_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Auth {
    /// What Prometheus and discovery present: the file written, or (with
    /// `source`) the file promfed keeps renewed under the state folder, once
    /// bound there (`credentials::bind`).
    pub token_file: Option<PathBuf>,
    pub client_cert: Option<ClientCert>,
    /// `[exec]` or `[token_request]`: promfed obtains the credential.
    pub source: Option<Source>,
    /// Prometheus's own copy of the token, when each new token must be a
    /// new file (`credentials::published`): not written in the file,
    /// attached by the transaction. Discovery reads `token_file`.
    pub prometheus_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// Name to verify the API server's certificate against, when the URL
    /// holds an IP the certificate does not list.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Component {
    pub enabled: bool,
    pub scrape_interval: Option<PromDuration>,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cadvisor {
    pub component: Component,
    /// The high-cardinality drops kube-prometheus-stack makes.
    pub drop_high_cardinality: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeExporter {
    pub component: Component,
    pub namespace: String,
    pub service: String,
    pub port: PortRef,
}

impl Cluster {
    /// Every credential file this cluster names, with the key that names it.
    pub fn credential_files(&self) -> Vec<(&'static str, &Path)> {
        let mut files = Vec::new();
        if let Some(t) = &self.auth.token_file {
            files.push(("token_file", t.as_path()));
        }
        if let Some(c) = &self.auth.client_cert {
            files.push(("cert_file", c.cert_file.as_path()));
            files.push(("key_file", c.key_file.as_path()));
        }
        if let Some(ca) = &self.tls.ca_file {
            files.push(("ca_file", ca.as_path()));
        }
        if let Some(f) = &self.federate {
            files.extend(f.credential_files());
        }
        files
    }

    /// The credential only promfed reads: TokenRequest's base, which
    /// Prometheus never needs.
    pub fn base_files(&self) -> Vec<(&'static str, &Path)> {
        let Some(Source::TokenRequest(t)) = &self.auth.source else {
            return Vec::new();
        };
        let mut files = Vec::new();
        if let Some(f) = &t.base_token_file {
            files.push(("token_file", f.as_path()));
        }
        if let Some(c) = &t.base_client_cert {
            files.push(("cert_file", c.cert_file.as_path()));
            files.push(("key_file", c.key_file.as_path()));
        }
        files
    }

    /// Parses one cluster file. `default_name` is the file's stem. A broken
    /// file still tells the name it gives, when it can be read that far.
    /// Without `[defaults]`: the tests' shorthand.
    #[cfg(test)]
    pub fn parse(source: &SourceText, default_name: &str) -> Result<Parsed, Broken> {
        Self::parse_with(source, default_name, &Defaults::none())
    }

    /// Parses one cluster file with promfed.toml's `[defaults]` merged
    /// under it (as TOML, before anything is read).
    pub fn parse_with(
        source: &SourceText,
        default_name: &str,
        defaults: &Defaults,
    ) -> Result<Parsed, Broken> {
        let broken = |d| Broken {
            name: ClusterName::parse(default_name).ok(),
            problems: vec![d],
        };
        let doc = toml_fields::parse(source).map_err(broken)?;
        let layered = defaults.under(doc, source).map_err(broken)?;
        let mut p = layered.problems();
        let raw = RawCluster::read(&layered.table, &mut p);
        let spans = raw.spans();
        let name_given = raw.name.as_ref().map(|n| n.value.clone());
        match raw.validate(&mut p, source, default_name) {
            Some(cluster) if p.is_empty() => Ok(Parsed { cluster, spans }),
            _ => {
                let problems = p.into_sorted();
                Err(Broken {
                    name: ClusterName::parse(name_given.as_deref().unwrap_or(default_name)).ok(),
                    problems,
                })
            }
        }
    }
}

/// A valid cluster file: the definition, and where its keys are written.
#[derive(Debug)]
pub struct Parsed {
    pub cluster: Cluster,
    pub spans: KeySpans,
}

/// A file that does not give a valid cluster.
#[derive(Debug)]
pub struct Broken {
    /// The name it gives (or its stem gives), to keep the last good definition.
    pub name: Option<ClusterName>,
    pub problems: Vec<Diagnostic>,
}

/// Where top-level keys are written, so that later stages can point at a key
/// without reading the file again.
#[derive(Debug, Default)]
pub struct KeySpans(Vec<(&'static str, Range<usize>)>);

impl KeySpans {
    pub fn get(&self, key: &str) -> Range<usize> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0..0, |(_, span)| span.clone())
    }
}

/// The documented defaults of a cluster file, in one place.
mod defaults {
    pub const ENABLED: bool = true;
    pub const INSECURE_SKIP_VERIFY: bool = false;
    pub const DROP_HIGH_CARDINALITY: bool = true;
    pub const NODE_EXPORTER_NAMESPACE: &str = "monitoring";
    pub const NODE_EXPORTER_SERVICE: &str = "prometheus-node-exporter";
    pub const NODE_EXPORTER_PORT: u16 = 9100;
}

/// A cluster file as written: each key that is there, of the right type,
/// with where it is written. Nothing is judged yet but types and names.
struct RawCluster {
    name: Key,
    api_server: Key,
    token_file: Key,
    cert_file: Key,
    key_file: Key,
    ca_file: Key,
    insecure_skip_verify: Option<Spanned<bool>>,
    tls_server_name: Key,
    labels: Vec<(Spanned<String>, Spanned<String>)>,
    receiver: Key,
    kubelet: RawComponent,
    cadvisor: RawComponent,
    drop_high_cardinality: Option<Spanned<bool>>,
    apiserver: RawComponent,
    node_exporter: RawComponent,
    namespace: Key,
    service: Key,
    port: Option<Spanned<StringOrInteger>>,
    federate: Option<RawFederate>,
    pods: Option<RawPods>,
    exporters: Vec<RawExporter>,
    monitors: Option<RawMonitors>,
    exec: Option<RawExec>,
    token_request: Option<RawTokenRequest>,
    /// Credential keys that are written, whether or not their values are
    /// good: only the others are missing.
    credentials_written: Vec<&'static str>,
}

/// `[kubelet]`, `[cadvisor]`, `[apiserver]` or `[node_exporter]`.
#[derive(Default)]
struct RawComponent {
    enabled: Option<Spanned<bool>>,
    scrape_interval: Key,
    /// `section.scrape_interval`, for messages.
    interval_key: String,
    limits: RawLimits,
}

impl RawCluster {
    fn read(doc: &toml_edit::Table, p: &mut Problems) -> RawCluster {
        let mut root = Fields::root(doc);
        let mut raw = RawCluster {
            name: root.get(p, "name"),
            api_server: root.get(p, "api_server"),
            token_file: root.get(p, "token_file"),
            cert_file: root.get(p, "cert_file"),
            key_file: root.get(p, "key_file"),
            ca_file: root.get(p, "ca_file"),
            insecure_skip_verify: root.get(p, "insecure_skip_verify"),
            tls_server_name: root.get(p, "tls_server_name"),
            labels: root.string_map(p, "labels").unwrap_or_default(),
            receiver: root.get(p, "receiver"),
            kubelet: RawComponent::default(),
            cadvisor: RawComponent::default(),
            drop_high_cardinality: None,
            apiserver: RawComponent::default(),
            node_exporter: RawComponent::default(),
            namespace: None,
            service: None,
            port: None,
            federate: None,
            pods: None,
            exporters: Vec::new(),
            monitors: None,
            exec: None,
            token_request: None,
            credentials_written: Vec::new(),
        };
        raw.credentials_written = ["token_file", "cert_file", "key_file", "ca_file"]
            .into_iter()
            .filter(|k| root.is_written(k))
            .collect();
        raw.kubelet = RawComponent::read(&mut root, p, "kubelet", |_, _| {});
        raw.cadvisor = RawComponent::read(&mut root, p, "cadvisor", |t, p| {
            raw.drop_high_cardinality = t.get(p, "drop_high_cardinality");
        });
        raw.apiserver = RawComponent::read(&mut root, p, "apiserver", |_, _| {});
        raw.node_exporter = RawComponent::read(&mut root, p, "node_exporter", |t, p| {
            raw.namespace = t.get(p, "namespace");
            raw.service = t.get(p, "service");
            raw.port = t.get(p, "port");
        });
        raw.federate = RawFederate::read(&mut root, p);
        raw.pods = RawPods::read(&mut root, p);
        raw.exporters = exporter::read_all(&mut root, p);
        raw.monitors = RawMonitors::read(&mut root, p);
        raw.exec = RawExec::read(&mut root, p);
        raw.token_request = RawTokenRequest::read(&mut root, p);
        root.finish(p);
        raw
    }

    fn spans(&self) -> KeySpans {
        let keys = [
            ("name", &self.name),
            ("api_server", &self.api_server),
            ("token_file", &self.token_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("ca_file", &self.ca_file),
        ];
        KeySpans(
            keys.into_iter()
                .filter_map(|(k, v)| Some((k, v.as_ref()?.span.clone())))
                .chain(self.federate.iter().flat_map(RawFederate::spans))
                .collect(),
        )
    }

    /// Judges every value and the rules between keys, filling in defaults.
    fn validate(
        mut self,
        p: &mut Problems,
        source: &SourceText,
        default_name: &str,
    ) -> Option<Cluster> {
        let dir = source.path.parent().unwrap_or(Path::new("/"));
        let sections = (self.exec.take(), self.token_request.take());
        let name = match &self.name {
            Some(s) => ClusterName::parse(&s.value)
                .map_err(|e| p.at(s.span.clone(), "name", e))
                .ok(),
            None => ClusterName::parse(default_name)
                .map_err(|e| p.missing("name", format!("the file name gives the cluster name: {e}; rename the file or set `name`")))
                .ok(),
        };
        let api_server = match &self.api_server {
            Some(s) => values::url(p, "api_server", s, API_SERVER_CREDENTIALS).and_then(|url| {
                api_server(url, &s.value)
                    .map_err(|e| p.at(s.span.clone(), "api_server", e))
                    .ok()
            }),
            None => {
                p.missing(
                    "api_server",
                    "missing: the API server's URL, for example \"https://203.0.113.10:6443\"",
                );
                None
            }
        };
        let token_file = values::path_in(p, dir, "token_file", &self.token_file);
        let cert_file = values::path_in(p, dir, "cert_file", &self.cert_file);
        let key_file = values::path_in(p, dir, "key_file", &self.key_file);
        let ca_file = values::path_in(p, dir, "ca_file", &self.ca_file);
        let insecure = self
            .insecure_skip_verify
            .map_or(defaults::INSECURE_SKIP_VERIFY, |b| b.value);

        let client_cert = match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientCert {
                cert_file,
                key_file,
            }),
            _ => None,
        };
        let written = |key| self.credentials_written.contains(&key);
        match (written("cert_file"), written("key_file")) {
            (true, false) => p.missing("key_file", "cert_file is set, so key_file is needed too"),
            (false, true) => p.missing("cert_file", "key_file is set, so cert_file is needed too"),
            _ => {}
        }
        let any_written = written("token_file") || written("cert_file") || written("key_file");
        let credentials = credential_source(p, dir, sections, any_written, token_file, client_cert);
        if !written("ca_file") && !insecure {
            p.missing("ca_file", "missing: the CA that signed the API server's certificate (or insecure_skip_verify = true, not recommended)");
        }

        let mut labels = BTreeMap::new();
        for (k, v) in self.labels {
            match LabelName::parse(&k.value) {
                Ok(name) => {
                    labels.insert(name, v.value);
                }
                Err(e) => p.at(k.span, &format!("labels.{}", k.value), e),
            }
        }
        let receiver = self.receiver.and_then(|s| {
            if s.value.is_empty() {
                p.at(s.span, "receiver", "must not be empty");
                None
            } else {
                Some(s.value)
            }
        });
        let port = values::port(
            p,
            "node_exporter.port",
            &self.port,
            defaults::NODE_EXPORTER_PORT,
        );
        // They go into API paths: only Kubernetes names.
        let namespace = values::kubernetes_name(
            p,
            "node_exporter.namespace",
            &self.namespace,
            defaults::NODE_EXPORTER_NAMESPACE,
        );
        let service = values::kubernetes_name(
            p,
            "node_exporter.service",
            &self.service,
            defaults::NODE_EXPORTER_SERVICE,
        );
        let kubelet = self.kubelet.validate(p);
        let cadvisor = self.cadvisor.validate(p);
        let apiserver = self.apiserver.validate(p);
        let node_exporter = self.node_exporter.validate(p);
        let federate = match self.federate {
            None => Some(None),
            Some(f) => f.validate(p, dir).map(Some),
        };
        let pods = match self.pods {
            None => Some(None),
            Some(raw) => raw.validate(p),
        };
        let exporters = exporter::validate_all(self.exporters, p);
        let monitors = match self.monitors {
            None => Some(None),
            Some(raw) => raw.validate(p),
        };
        let (token_file, client_cert, credential_source) = credentials?;

        Some(Cluster {
            name: name?,
            source: source.path.clone(),
            api_server: api_server?,
            auth: Auth {
                token_file,
                client_cert,
                source: credential_source,
                prometheus_token_file: None,
            },
            tls: Tls {
                ca_file,
                insecure_skip_verify: insecure,
                server_name: self.tls_server_name.map(|s| s.value),
            },
            labels,
            receiver,
            kubelet: kubelet?,
            cadvisor: Cadvisor {
                component: cadvisor?,
                drop_high_cardinality: self
                    .drop_high_cardinality
                    .map_or(defaults::DROP_HIGH_CARDINALITY, |b| b.value),
            },
            apiserver: apiserver?,
            node_exporter: NodeExporter {
                component: node_exporter?,
                namespace: namespace?,
                service: service?,
                port: port?,
            },
            federate: federate?,
            pods: pods?,
            exporters: exporters?,
            monitors: monitors?,
            monitor_jobs: Vec::new(),
        })
    }
}

/// What `Cluster` keeps of the credential keys: the files Prometheus
/// presents, and where promfed obtains them from.
type Credentials = (Option<PathBuf>, Option<ClientCert>, Option<Source>);

/// The rules between `token_file`/`cert_file`, `[exec]` and
/// `[token_request]`: exactly one way to authenticate, and TokenRequest's
/// base credential besides.
fn credential_source(
    p: &mut Problems,
    dir: &Path,
    sections: (Option<RawExec>, Option<RawTokenRequest>),
    files_written: bool,
    token_file: Option<PathBuf>,
    client_cert: Option<ClientCert>,
) -> Option<Credentials> {
    match sections {
        (None, None) => {
            if !files_written {
                p.missing(
                        "token_file",
                        "missing: set token_file (a service-account token) or cert_file and key_file, or an [exec] or [token_request] section",
                    );
            }
            Some((token_file, client_cert, None))
        }
        (Some(exec), None) => {
            if files_written {
                p.at(exec.span(), "exec", "[exec] gives this cluster's credential: token_file, cert_file and key_file go with no [exec]");
            }
            let exec = exec.validate(p, dir)?;
            Some((None, None, Some(Source::Exec(exec))))
        }
        (None, Some(request)) => {
            if !files_written {
                p.at(request.span(), "token_request", "[token_request] needs a base credential allowed to `create serviceaccounts/token`: set token_file, or cert_file and key_file");
            }
            let request = request.validate(p, token_file, client_cert)?;
            Some((None, None, Some(Source::TokenRequest(request))))
        }
        (Some(_), Some(request)) => {
            p.at(
                request.span(),
                "token_request",
                "give either [exec] or [token_request], not both",
            );
            None
        }
    }
}

impl RawComponent {
    /// Reads `[section]` with `enabled`, `scrape_interval` and the limits, then lets
    /// `extra` take the section's own keys.
    fn read(
        root: &mut Fields,
        p: &mut Problems,
        key: &'static str,
        extra: impl FnOnce(&mut Fields, &mut Problems),
    ) -> RawComponent {
        let mut c = RawComponent {
            interval_key: root.path(&format!("{key}.scrape_interval")),
            ..RawComponent::default()
        };
        if let Some(mut t) = root.table(p, key) {
            c.enabled = t.get(p, "enabled");
            c.scrape_interval = t.get(p, "scrape_interval");
            c.limits = RawLimits::read(&mut t, p);
            extra(&mut t, p);
            t.finish(p);
        }
        c
    }

    fn validate(self, p: &mut Problems) -> Option<Component> {
        let scrape_interval = match self.scrape_interval {
            None => Some(None),
            Some(s) => PromDuration::parse(&s.value)
                .map(Some)
                .map_err(|e| p.at(s.span, &self.interval_key, e))
                .ok(),
        };
        let limits = self
            .limits
            .validate(p, scrape_interval.as_ref().and_then(Option::as_ref));
        Some(Component {
            enabled: self.enabled.map_or(defaults::ENABLED, |b| b.value),
            scrape_interval: scrape_interval?,
            limits: limits?,
        })
    }
}

/// Where an `api_server` with a password is told to put credentials.
const API_SERVER_CREDENTIALS: &str = "authenticate with token_file (a service-account token) or cert_file and key_file, files beside the cluster file";

/// An `api_server` URL (already refused if it holds credentials) split the
/// way scrape configs need it.
fn api_server(url: Url, text: &str) -> Result<ApiServer, String> {
    let shown = values::shown_url(text);
    if url.scheme() != "https" {
        return Err(format!(
            "{shown}: the API server must be reached over https:// (tokens would travel in clear text)"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("{shown} has no host"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{shown}: give only scheme, host, port and an optional path prefix"
        ));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    Ok(ApiServer {
        address: format!("{host}:{port}"),
        path_prefix: url.path().trim_end_matches('/').to_string(),
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Cluster, Vec<String>> {
        Cluster::parse(&SourceText::new("/etc/promfed.d/stage.toml", text), "stage")
            .map(|p| p.cluster)
            .map_err(|b| b.problems.iter().map(|d| d.headline()).collect())
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let c = parse("api_server = \"https://10.0.0.1:6443/\"\ntoken_file = \"stage/token\"\nca_file = \"/ca.crt\"\n").unwrap();
        assert_eq!(c.name.as_str(), "stage");
        assert_eq!(c.api_server.address, "10.0.0.1:6443");
        assert_eq!(c.api_server.path_prefix, "");
        assert_eq!(
            c.auth.token_file.as_deref(),
            Some(Path::new("/etc/promfed.d/stage/token"))
        );
        assert_eq!(c.tls.ca_file.as_deref(), Some(Path::new("/ca.crt")));
        assert_eq!(c.node_exporter.port, PortRef::Number(9100));
        assert_eq!(c.node_exporter.namespace, "monitoring");
        assert!(
            c.kubelet.enabled && c.cadvisor.component.enabled && c.cadvisor.drop_high_cardinality
        );
    }

    #[test]
    fn every_problem_names_line_and_key() {
        let errors = parse(concat!(
            "api_server = \"http://10.0.0.1:6443\"\n",
            "token_file = \"t\"\n",
            "labels = { cluster = \"x\", \"bad-name\" = \"y\" }\n",
            "colour = \"blue\"\n",
            "[node_exporter]\n",
            "port = 70000\n",
            "[cadvisor]\n",
            "scrape_interval = \"10\"\n",
        ))
        .unwrap_err();
        // In file order; missing keys, which have no place, first.
        assert_eq!(
            errors,
            [
                "/etc/promfed.d/stage.toml: key `ca_file`: missing: the CA that signed the API server's certificate (or insecure_skip_verify = true, not recommended) — add it at the top level, above the first [table]",
                "/etc/promfed.d/stage.toml:1:14: key `api_server`: `http://10.0.0.1:6443`: the API server must be reached over https:// (tokens would travel in clear text)",
                "/etc/promfed.d/stage.toml:3:12: key `labels.cluster`: `cluster` is set by promfed itself and cannot be overridden",
                "/etc/promfed.d/stage.toml:3:27: key `labels.bad-name`: `bad-name` is not a valid label name: use letters, digits and `_`, not starting with a digit",
                "/etc/promfed.d/stage.toml:4:1: key `colour`: unknown key (allowed here: api_server, apiserver, ca_file, cadvisor, cert_file, exec, exporter, federate, insecure_skip_verify, key_file, kubelet, labels, monitors, name, node_exporter, pods, receiver, tls_server_name, token_file, token_request)",
                "/etc/promfed.d/stage.toml:6:8: key `node_exporter.port`: 70000 is not a port number (1-65535)",
                "/etc/promfed.d/stage.toml:8:19: key `cadvisor.scrape_interval`: `10` is not a duration (examples: 30s, 1m30s, 500ms, 2h)",
            ]
        );
    }

    /// With a user, without one, without a scheme, with a space: refused
    /// at the value, and the password never repeated.
    #[test]
    fn a_password_in_the_api_server_url_is_refused_and_never_repeated() {
        for url in [
            "https://u:SECRET@h:6443",
            "https://:SECRET@h",
            "u:SECRET@h:6443",
            "https://u:SE CRET@h",
            "https://u:SE/CRET@h",
        ] {
            let errors = parse(&format!(
                "api_server = \"{url}\"\ntoken_file = \"t\"\nca_file = \"c\"\n"
            ))
            .unwrap_err();
            assert_eq!(errors.len(), 1, "{url}: {errors:?}");
            let e = &errors[0];
            assert!(
                e.starts_with("/etc/promfed.d/stage.toml:1:14: key `api_server`: ")
                    && !e.contains("SECRET")
                    && !e.contains("CRET"),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn every_component_takes_limits_and_each_bad_one_is_named() {
        let head = "api_server = \"https://h\"\ntoken_file = \"t\"\nca_file = \"c\"\n";
        let c = parse(&format!("{head}[kubelet]\nsample_limit = 0\n[cadvisor]\nbody_size_limit = \"8MiB\"\n[node_exporter]\nscrape_timeout = \"3s\"\n")).unwrap();
        assert_eq!(c.kubelet.limits.sample_limit, Some(0));
        assert_eq!(
            c.cadvisor
                .component
                .limits
                .body_size_limit
                .map(|b| b.bytes()),
            Some(8 << 20)
        );
        assert_eq!(
            c.node_exporter
                .component
                .limits
                .scrape_timeout
                .map(|t| t.to_string()),
            Some("3s".into())
        );
        assert_eq!(c.apiserver.limits, Limits::default());
        let errors = parse(&format!("{head}[kubelet]\nsample_limit = -5\n[cadvisor]\nbody_size_limit = \"10 megs\"\n[apiserver]\nscrape_interval = \"10s\"\nscrape_timeout = \"20s\"\n")).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].contains("5:16: key `kubelet.sample_limit`: -5 is not a number of samples"),
            "{errors:#?}"
        );
        assert!(
            errors[1].contains("7:19: key `cadvisor.body_size_limit`: `10 megs` is not a size"),
            "{errors:#?}"
        );
        assert!(
            errors[2].contains(
                "10:18: key `apiserver.scrape_timeout`: 20s is longer than scrape_interval 10s"
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_broken_file_still_tells_its_name() {
        let name = |text: &str, stem: &str| {
            Cluster::parse(&SourceText::new("/x/f.toml", text), stem)
                .unwrap_err()
                .name
                .map(|n| n.to_string())
        };
        // Valid TOML with a bad key elsewhere: the `name` key still counts.
        assert_eq!(
            name("name = \"prod\"\ncolour = 1\n", "f"),
            Some("prod".into())
        );
        // Not TOML at all: only the file's stem is left.
        assert_eq!(name("name = \"prod\"\nx = \n", "f"), Some("f".into()));
        // A stem that is no valid name gives no name.
        assert_eq!(name("x = \n", ".hidden"), None);
    }

    #[test]
    fn names_that_go_into_api_paths_must_be_kubernetes_names() {
        let errors = parse("api_server = \"https://h\"\ntoken_file = \"t\"\nca_file = \"c\"\n[node_exporter]\nnamespace = \"../../secrets\"\nservice = \"Node Exporter\"\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "/etc/promfed.d/stage.toml:5:13: key `node_exporter.namespace`: `../../secrets` is not a Kubernetes name (lowercase letters, digits and `-`)",
                "/etc/promfed.d/stage.toml:6:11: key `node_exporter.service`: `Node Exporter` is not a Kubernetes name (lowercase letters, digits and `-`)",
            ]
        );
    }

    #[test]
    fn credentials_given_but_invalid_are_not_also_reported_missing() {
        let errors =
            parse("api_server = \"https://h\"\ntoken_file = \"\"\nca_file = 3\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "/etc/promfed.d/stage.toml:2:14: key `token_file`: must not be empty",
                "/etc/promfed.d/stage.toml:3:11: key `ca_file`: expected a string",
            ]
        );
    }

    #[test]
    fn required_keys_of_the_wrong_type_are_not_also_reported_missing() {
        let errors = parse(
            "api_server = 6443\ntoken_file = \"t\"\nca_file = \"c\"\n[federate]\nservice = \"prometheus\"\nmatch = \"up\"\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "/etc/promfed.d/stage.toml:1:14: key `api_server`: expected a string",
                "/etc/promfed.d/stage.toml:6:9: key `federate.match`: expected a list of strings",
            ]
        );
    }

    #[test]
    fn spans_point_at_the_keys_for_later_stages() {
        let text =
            "name = \"prod\"\napi_server = \"https://h\"\ntoken_file = \"t\"\nca_file = \"c\"\n";
        let parsed = Cluster::parse(&SourceText::new("/x/f.toml", text), "f").unwrap();
        assert_eq!(&text[parsed.spans.get("token_file")], "\"t\"");
        assert_eq!(&text[parsed.spans.get("name")], "\"prod\"");
        assert_eq!(parsed.spans.get("cert_file"), 0..0);
    }
}

/// `[federate]` read within a whole cluster file, as promfed reads it. Here,
/// not in federate.rs, so that federate.rs does not depend on this module.
#[cfg(test)]
mod federate_tests {
    use super::*;
    use crate::config::federate::Source;

    const HEAD: &str =
        "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"t\"\nca_file = \"ca.crt\"\n";

    fn parse(federate: &str) -> Result<Option<Federate>, Vec<String>> {
        let text = format!("{HEAD}{federate}");
        Cluster::parse(&SourceText::new("/etc/promfed.d/mesh.toml", text), "mesh")
            .map(|p| p.cluster.federate)
            .map_err(|b| b.problems.iter().map(|d| d.headline()).collect())
    }

    #[test]
    fn through_the_api_server_by_default_with_istios_addon() {
        let f = parse("[federate]\nmatch = ['{job=\"kubernetes-pods\"}']\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            f.source,
            Source::Service {
                namespace: "istio-system".into(),
                service: "prometheus".into(),
                port: PortRef::Number(9090),
            }
        );
        assert_eq!(f.matchers, ["{job=\"kubernetes-pods\"}"]);
        assert_eq!(f.replica_labels, ["prometheus_replica", "replica"]);
        assert!(!f.keep_source_cluster);
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn directly_with_mutual_tls_paths_relative_to_the_file() {
        let f = parse("[federate]\nurl = \"https://prom.mesh.example:8443/p/\"\nmatch = ['up']\nca_file = \"mesh/ca.crt\"\ncert_file = \"mesh/c.crt\"\nkey_file = \"/k/c.key\"\ntls_server_name = \"prom.mesh\"\n")
            .unwrap()
            .unwrap();
        let Source::Url {
            url,
            ca_file,
            client_cert,
            server_name,
            token_file,
        } = f.source
        else {
            panic!("url mode");
        };
        assert_eq!(url.as_str(), "https://prom.mesh.example:8443/p/");
        assert_eq!(ca_file.unwrap(), Path::new("/etc/promfed.d/mesh/ca.crt"));
        let cert = client_cert.unwrap();
        assert_eq!(cert.cert_file, Path::new("/etc/promfed.d/mesh/c.crt"));
        assert_eq!(cert.key_file, Path::new("/k/c.key"));
        assert_eq!(server_name.as_deref(), Some("prom.mesh"));
        assert_eq!(token_file, None);
    }

    /// Each mistake is named with its line, column and key.
    #[test]
    fn every_mistake_names_line_column_and_key() {
        let cases = [
            (
                "[federate]\nmatch = []\n",
                "5:9: key `federate.match`: must hold at least one selector",
            ),
            (
                "[federate]\nservice = \"prometheus\"\n",
                "4:1: key `federate.match`: missing",
            ),
            (
                "[federate]\nmatch = ['{job=~\".*\"}']\n",
                "5:10: key `federate.match[0]`: `{job=~\".*\"}` is not a series selector: at least one matcher",
            ),
            (
                "[federate]\nmatch = ['up', '{job=\"a\"']\n",
                "5:16: key `federate.match[1]`",
            ),
            (
                "[federate]\nmatch = ['up']\nurl = \"https://p.example\"\nservice = \"prometheus\"\n",
                "7:11: key `federate.service`: give either `url`",
            ),
            (
                "[federate]\nmatch = ['up']\nca_file = \"ca\"\n",
                "6:11: key `federate.ca_file`: applies to `url` only",
            ),
            (
                "[federate]\nmatch = ['up']\nurl = \"http://p.example\"\ntoken_file = \"t\"\n",
                "7:14: key `federate.token_file`: `http://p.example` is plain http://",
            ),
            (
                "[federate]\nmatch = ['up']\nurl = \"https://p.example\"\ncert_file = \"c\"\n",
                "7:13: key `federate.key_file`: cert_file is set",
            ),
            (
                "[federate]\nmatch = ['up']\nport = 0\n",
                "6:8: key `federate.port`: 0 is not a port number",
            ),
            (
                "[federate]\nmatch = ['up']\nmatchers = ['up']\n",
                "6:1: key `federate.matchers`: unknown key",
            ),
            (
                "[federate]\nmatch = 'up'\n",
                "5:9: key `federate.match`: expected a list of strings",
            ),
            (
                "[federate]\nmatch = ['up']\nurl = \"ftp://p.example\"\n",
                "6:7: key `federate.url`: `ftp://p.example`: an http:// or https:// URL",
            ),
        ];
        for (text, expected) in cases {
            let problems = parse(text).expect_err(text);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{text}\nexpected {expected}\ngot {problems:#?}"
            );
        }
    }

    #[test]
    fn a_key_of_the_wrong_type_is_reported_once_not_also_taken_for_absent() {
        let cases = [
            (
                "[federate]\nmatch = ['up']\nurl = 8443\nca_file = \"ca\"\n",
                "6:7: key `federate.url`: expected a string",
            ),
            (
                "[federate]\nmatch = ['up']\nurl = \"https://p.example\"\ncert_file = \"c\"\nkey_file = 1\n",
                "8:12: key `federate.key_file`: expected a string",
            ),
        ];
        for (text, expected) in cases {
            let problems = parse(text).expect_err(text);
            assert_eq!(problems.len(), 1, "{text}\n{problems:#?}");
            assert!(problems[0].contains(expected), "{text}\n{problems:#?}");
        }
    }
}

/// `[exporter.<job>]` read within a whole cluster file.
#[cfg(test)]
mod exporter_tests {
    use super::*;
    use crate::config::exporter::{Per, Selection};

    const HEAD: &str =
        "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"t\"\nca_file = \"ca.crt\"\n";

    fn parse(tables: &str) -> Result<Vec<Exporter>, Vec<String>> {
        let text = format!("{HEAD}{tables}");
        Cluster::parse(&SourceText::new("/etc/promfed.d/c.toml", text), "c")
            .map(|p| p.cluster.exporters)
            .map_err(|b| b.problems.iter().map(|d| d.headline()).collect())
    }

    #[test]
    fn a_preset_needs_no_keys_and_any_key_overrides_it() {
        let all = parse("[exporter.kube-state-metrics]\n[exporter.kube-dns]\n").unwrap();
        let (dns, ksm) = (&all[0], &all[1]);
        assert_eq!(ksm.job, "kube-state-metrics");
        assert_eq!(ksm.namespaces, ["kube-system", "monitoring"]);
        assert_eq!(
            ksm.selection,
            Selection::Selector(vec![(
                "app.kubernetes.io/name".into(),
                "kube-state-metrics".into()
            )])
        );
        assert_eq!(
            ksm.ports,
            [PortRef::Name("http-metrics".into()), PortRef::Number(8080)]
        );
        assert_eq!(
            (ksm.per, ksm.honor_labels, ksm.path.as_str()),
            (Per::Service, true, "/metrics")
        );
        assert_eq!(
            (dns.job.as_str(), dns.per, dns.honor_labels),
            ("kube-dns", Per::Endpoint, false)
        );
        assert_eq!(dns.namespaces, ["kube-system"]);

        let sharded = parse("[exporter.kube-state-metrics]\nper = \"endpoint\"\nnamespace = \"obs\"\nservice = \"ksm\"\nport = 8081\nhonor_labels = false\n").unwrap();
        let s = &sharded[0];
        assert_eq!((s.per, s.honor_labels), (Per::Endpoint, false));
        assert_eq!(
            (s.namespaces.as_slice(), &s.selection),
            (&["obs".to_string()][..], &Selection::Service("ksm".into()))
        );
        assert_eq!(s.ports, [PortRef::Number(8081)]);
        // `preset` lends a preset to a job of another name.
        let other = parse("[exporter.dns]\npreset = \"kube-dns\"\n").unwrap();
        assert_eq!(
            (other[0].job.as_str(), other[0].per),
            ("dns", Per::Endpoint)
        );
    }

    #[test]
    fn an_exporter_of_ones_own_with_every_key() {
        let all = parse(concat!(
            "[exporter.traefik]\nnamespace = \"traefik\"\nselector = { \"app.kubernetes.io/name\" = \"traefik\" }\n",
            "port = \"metrics\"\nper = \"service\"\npath = \"/m\"\nscheme = \"https\"\nparams = { format = \"prometheus\", x = [\"a\", \"b\"] }\n",
            "scrape_interval = \"1m\"\nscrape_timeout = \"20s\"\nhonor_labels = true\nkeep_metrics = \"traefik_.*\"\ndrop_metrics = \"go_.*\"\n",
            "sample_limit = 5000\nbody_size_limit = \"10MB\"\n",
            "[exporter.off]\nenabled = false\nnamespace = \"x\"\nservice = \"x\"\nport = 1\n",
        ))
        .unwrap();
        assert_eq!(all.len(), 1, "a disabled exporter is no job");
        let t = &all[0];
        assert_eq!(
            (t.per, t.https, t.path.as_str()),
            (Per::Service, true, "/m")
        );
        assert_eq!(t.params["x"], ["a", "b"]);
        assert_eq!(t.params["format"], ["prometheus"]);
        assert_eq!(t.keep_metrics.as_deref(), Some("traefik_.*"));
        assert_eq!(
            (
                t.limits.sample_limit,
                t.limits.body_size_limit.as_ref().map(|s| s.to_string())
            ),
            (Some(5000), Some("10MB".to_string()))
        );
        assert_eq!(
            t.limits.scrape_timeout.as_ref().map(|d| d.as_str()),
            Some("20s")
        );
    }

    /// Each mistake is named with its line, column and key.
    #[test]
    fn every_mistake_names_line_column_and_key() {
        let cases = [
            (
                "[exporter.kubelet]\n",
                "4:11: key `exporter.kubelet`: `kubelet` is the name of one of promfed's own jobs",
            ),
            (
                "[exporter.kubernetes-pods]\npreset = \"kube-dns\"\n",
                "4:11: key `exporter.kubernetes-pods`: `kubernetes-pods` is the name",
            ),
            (
                "[exporter.Traefik]\npreset = \"kube-dns\"\n",
                "4:11: key `exporter.Traefik`: `Traefik` is not a job name",
            ),
            (
                "[exporter.traefik]\n",
                "4:11: key `exporter.traefik`: `traefik` is no preset (presets: kube-dns, kube-state-metrics)",
            ),
            (
                "[exporter.x]\npreset = \"kube-dsn\"\n",
                "5:10: key `exporter.x.preset`: `kube-dsn` is no preset",
            ),
            (
                "[exporter.t]\nnamespace = \"t\"\nservice = \"t\"\nselector = \"app=t\"\nport = 9100\n",
                "7:12: key `exporter.t.selector`: give either `service`",
            ),
            (
                "[exporter.t]\nnamespace = \"t\"\nservice = \"t\"\nport = \"Web_Metrics\"\n",
                "7:8: key `exporter.t.port`: `Web_Metrics` is not a port number or a Kubernetes port name",
            ),
            (
                "[exporter.t]\nnamespace = \"t\"\nselector = \"app in (a,b)\"\nport = 1\n",
                "6:12: key `exporter.t.selector`: `app in (a,b)`: only `label=value`",
            ),
            (
                "[exporter.t]\nnamespace = \"t\"\nselector = { \"bad key\" = \"x\" }\nport = 1\n",
                "6:14: key `exporter.t.selector`: `bad key` is not a Kubernetes label key",
            ),
            (
                "[exporter.t]\nnamespace = \"t\"\nport = 1\n",
                "4:1: key `exporter.t.service`: missing",
            ),
            (
                "[exporter.t]\nservice = \"t\"\nport = 1\n",
                "4:1: key `exporter.t.namespace`: missing",
            ),
            (
                "[exporter.t]\nnamespace = \"t\"\nservice = \"t\"\n",
                "4:1: key `exporter.t.port`: missing",
            ),
            (
                "[exporter.kube-dns]\nper = \"pod\"\n",
                "5:7: key `exporter.kube-dns.per`: `pod` is neither",
            ),
            (
                "[exporter.kube-dns]\npath = \"/../secrets\"\n",
                "5:8: key `exporter.kube-dns.path`",
            ),
            (
                "[exporter.kube-dns]\nscheme = \"ftp\"\n",
                "5:10: key `exporter.kube-dns.scheme`",
            ),
            (
                "[exporter.kube-dns]\nkeep_metrics = \"(\"\n",
                "5:16: key `exporter.kube-dns.keep_metrics`: not a valid regular expression",
            ),
            (
                "[exporter.kube-dns]\nscrape_interval = \"10s\"\nscrape_timeout = \"20s\"\n",
                "6:18: key `exporter.kube-dns.scrape_timeout`: 20s is longer",
            ),
            (
                "[exporter.kube-dns]\nbody_size_limit = \"10 megs\"\n",
                "5:19: key `exporter.kube-dns.body_size_limit`",
            ),
            (
                "[exporter.kube-dns]\nsample_limit = -1\n",
                "5:16: key `exporter.kube-dns.sample_limit`",
            ),
            (
                "[exporter.kube-dns]\nnamespaces = [\"a\"]\n",
                "5:1: key `exporter.kube-dns.namespaces`: unknown key",
            ),
            (
                "[exporter.kube-dns]\nnamespace = \"Kube System\"\n",
                "5:13: key `exporter.kube-dns.namespace`: `Kube System` is not a Kubernetes name",
            ),
            (
                "[exporter]\nkube-dns = 1\n",
                "5:1: key `exporter.kube-dns`: expected a table",
            ),
        ];
        for (text, expected) in cases {
            let problems = parse(text).expect_err(text);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{text}\nexpected {expected}\ngot {problems:#?}"
            );
        }
    }

    /// TOML itself refuses a table written twice; the message names the job.
    #[test]
    fn a_job_written_twice_is_refused_with_its_name() {
        let problems =
            parse("[exporter.kube-dns]\n[exporter.kube-dns]\nper = \"service\"\n").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("/etc/promfed.d/c.toml:5:11: key `exporter.kube-dns`: [exporter.kube-dns] is written twice"), "{problems:?}");
        assert!(problems[0].contains("kube-dns"), "{problems:?}");
    }
}

/// `[exec]` and `[token_request]` read within a whole cluster file.
#[cfg(test)]
mod credential_source_tests {
    use super::*;
    use crate::config::credential_source::ExecApiVersion;

    const HEAD: &str = "api_server = \"https://10.0.0.1:6443\"\nca_file = \"ca.crt\"\n";

    fn parse(rest: &str) -> Result<Auth, Vec<String>> {
        let text = format!("{HEAD}{rest}");
        Cluster::parse(&SourceText::new("/etc/promfed.d/prod.toml", text), "prod")
            .map(|p| p.cluster.auth)
            .map_err(|b| b.problems.iter().map(|d| d.headline()).collect())
    }

    #[test]
    fn an_eks_exec_stanza_and_a_token_request_with_its_base() {
        let auth = parse("[exec]\napi_version = \"client.authentication.k8s.io/v1beta1\"\ncommand = \"aws\"\nargs = [\"eks\", \"get-token\", \"--cluster-name\", \"prod\"]\nenv = { AWS_PROFILE = \"monitoring\" }\ninteractive_mode = \"Never\"\nprovide_cluster_info = true\ntimeout = \"5s\"\n").unwrap();
        let Some(Source::Exec(exec)) = auth.source else {
            panic!("exec")
        };
        assert_eq!(exec.api_version, ExecApiVersion::V1beta1);
        assert_eq!(exec.command, Path::new("aws"));
        assert_eq!(exec.args, ["eks", "get-token", "--cluster-name", "prod"]);
        assert_eq!(exec.env["AWS_PROFILE"], "monitoring");
        assert!(exec.provide_cluster_info);
        assert_eq!(exec.timeout.as_secs(), 5);
        assert_eq!(auth.token_file, None);
        // A relative path with a folder is the cluster file's folder's.
        let auth = parse("[exec]\napi_version = \"client.authentication.k8s.io/v1\"\ncommand = \"bin/get-token\"\n").unwrap();
        let Some(Source::Exec(exec)) = auth.source else {
            panic!("exec")
        };
        assert_eq!(exec.command, Path::new("/etc/promfed.d/bin/get-token"));
        assert_eq!(
            exec.timeout,
            crate::config::credential_source::defaults::EXEC_TIMEOUT
        );

        let auth = parse("token_file = \"minter\"\n[token_request]\nnamespace = \"monitoring\"\nservice_account = \"promfed\"\nexpiration = \"2h\"\n").unwrap();
        let Some(Source::TokenRequest(t)) = auth.source else {
            panic!("token_request")
        };
        assert_eq!(
            (t.namespace.as_str(), t.service_account.as_str()),
            ("monitoring", "promfed")
        );
        assert_eq!(t.expiration.as_secs(), 7200);
        assert_eq!(
            t.base_token_file.as_deref(),
            Some(Path::new("/etc/promfed.d/minter"))
        );
        assert_eq!(
            auth.token_file, None,
            "Prometheus gets the minted token, not the base"
        );
    }

    /// Each mistake is named with its line, column and key.
    #[test]
    fn every_mistake_names_line_column_and_key() {
        let v1 = "api_version = \"client.authentication.k8s.io/v1\"\n";
        let cases = [
            (format!("[exec]\n{v1}"), "3:1: key `exec.command`: missing"),
            ("[exec]\ncommand = \"aws\"\n".to_string(), "3:1: key `exec.api_version`: missing"),
            ("[exec]\ncommand = \"aws\"\napi_version = \"client.authentication.k8s.io/v1alpha1\"\n".to_string(), "5:15: key `exec.api_version`: `client.authentication.k8s.io/v1alpha1` is not an exec credential version"),
            (format!("[exec]\n{v1}command = \"aws\"\ninteractive_mode = \"Always\"\n"), "6:20: key `exec.interactive_mode`: `Always`: promfed runs plugins without a terminal"),
            (format!("[exec]\n{v1}command = \"aws\"\nargs = [\"a\", \"b\\u0000\"]\n"), "6:14: key `exec.args[1]`: holds a control character"),
            (format!("[exec]\n{v1}command = \"aws\"\nenv = {{ \"1X\" = \"y\" }}\n"), "6:9: key `exec.env.1X`: `1X` is not an environment variable name"),
            (format!("[exec]\n{v1}command = \"aws\"\nenv = {{ KUBERNETES_EXEC_INFO = \"y\" }}\n"), "key `exec.env.KUBERNETES_EXEC_INFO`: `KUBERNETES_EXEC_INFO` is set by promfed"),
            (format!("[exec]\n{v1}command = \"aws\"\ntimeout = \"1h\"\n"), "6:11: key `exec.timeout`: 1h is outside 1s to 300s"),
            (format!("[exec]\n{v1}command = \"aws\"\nextra = 1\n"), "6:1: key `exec.extra`: unknown key"),
            (format!("token_file = \"t\"\n[exec]\n{v1}command = \"aws\"\n"), "key `exec`: [exec] gives this cluster's credential"),
            ("[token_request]\nnamespace = \"m\"\nservice_account = \"p\"\n".to_string(), "3:1: key `token_request`: [token_request] needs a base credential"),
            ("token_file = \"t\"\n[token_request]\nnamespace = \"m\"\nservice_account = \"p\"\nexpiration = \"5m\"\n".to_string(), "7:14: key `token_request.expiration`: 5m is outside 600s"),
            ("token_file = \"t\"\n[token_request]\nnamespace = \"M\"\nservice_account = \"p\"\n".to_string(), "5:13: key `token_request.namespace`: `M` is not a Kubernetes name"),
            ("token_file = \"t\"\n[token_request]\nnamespace = \"m\"\n".to_string(), "key `token_request.service_account`: missing"),
            (format!("token_file = \"t\"\n[token_request]\nnamespace = \"m\"\nservice_account = \"p\"\n[exec]\n{v1}command = \"a\"\n"), "key `token_request`: give either [exec] or [token_request]"),
            (String::new(), "key `token_file`: missing: set token_file (a service-account token) or cert_file and key_file, or an [exec] or [token_request] section"),
        ];
        for (text, expected) in cases {
            let problems = parse(&text).expect_err(&text);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{text}\nexpected {expected}\ngot {problems:#?}"
            );
        }
    }
}
