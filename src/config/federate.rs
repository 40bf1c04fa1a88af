//! `[federate]` of a cluster file: an in-cluster Prometheus (Istio's addon,
//! for example) whose `/federate` promfed scrapes, through the API server's
//! service proxy or directly at a URL with TLS settings of its own.

use std::ops::Range;
use std::path::{Path, PathBuf};

use url::Url;

use super::duration::PromDuration;
use super::limits::{Limits, RawLimits};
use super::names;
use super::selector;
use super::toml_fields::{Fields, Problems, Spanned, StringOrInteger};
use super::values::{self, ClientCert, Key, PortRef};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Federate {
    pub source: Source,
    /// The `match[]` selectors; at least one, each valid.
    pub matchers: Vec<String>,
    pub scrape_interval: Option<PromDuration>,
    pub limits: Limits,
    /// Whether a `cluster` label the source sets wins over this cluster's
    /// name (by default promfed's always does).
    pub keep_source_cluster: bool,
    /// Labels that tell HA replicas apart, dropped from federated series
    /// (see the README: an HA pair behind one Service).
    pub replica_labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Through `/api/v1/namespaces/<ns>/services/<svc>:<port>/proxy`, with
    /// the cluster's own API-server credentials.
    Service {
        namespace: String,
        service: String,
        port: PortRef,
    },
    /// Directly, as an Ingress or Gateway exposes it.
    Url {
        url: Url,
        ca_file: Option<PathBuf>,
        client_cert: Option<ClientCert>,
        server_name: Option<String>,
        token_file: Option<PathBuf>,
    },
}

impl Federate {
    /// Through the API server's service proxy: the path after the API
    /// server's own prefix. `None` for a `url` source.
    pub fn service_path(&self) -> Option<String> {
        match &self.source {
            Source::Service {
                namespace,
                service,
                port,
            } => Some(format!(
                "/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/federate"
            )),
            Source::Url { .. } => None,
        }
    }

    /// The files it names, with their keys.
    pub fn credential_files(&self) -> Vec<(&'static str, &Path)> {
        let mut files = Vec::new();
        if let Source::Url {
            ca_file,
            client_cert,
            token_file,
            ..
        } = &self.source
        {
            if let Some(t) = token_file {
                files.push(("federate.token_file", t.as_path()));
            }
            if let Some(c) = client_cert {
                files.push(("federate.cert_file", c.cert_file.as_path()));
                files.push(("federate.key_file", c.key_file.as_path()));
            }
            if let Some(ca) = ca_file {
                files.push(("federate.ca_file", ca.as_path()));
            }
        }
        files
    }
}

/// The documented defaults: Istio's Prometheus addon.
mod defaults {
    pub const NAMESPACE: &str = "istio-system";
    pub const SERVICE: &str = "prometheus";
    pub const PORT: u16 = 9090;
    pub const REPLICA_LABELS: [&str; 2] = ["prometheus_replica", "replica"];
}

/// `[federate]` as written.
pub struct RawFederate {
    span: Range<usize>,
    namespace: Key,
    service: Key,
    port: Option<Spanned<StringOrInteger>>,
    matchers: Option<Spanned<Vec<Spanned<String>>>>,
    url: Key,
    ca_file: Key,
    cert_file: Key,
    key_file: Key,
    tls_server_name: Key,
    token_file: Key,
    scrape_interval: Key,
    limits: RawLimits,
    keep_source_cluster: Option<Spanned<bool>>,
    replica_labels: Option<Spanned<Vec<Spanned<String>>>>,
}

impl RawFederate {
    /// `None` when the file has no `[federate]`, or turns it off with
    /// `enabled = false` (as a cluster does with a federation it inherits
    /// from `[defaults]`): then its keys are read, for their types and
    /// names, but not judged.
    pub fn read(root: &mut Fields, p: &mut Problems) -> Option<RawFederate> {
        let mut t = root.table(p, "federate")?;
        let enabled: Option<Spanned<bool>> = t.get(p, "enabled");
        let raw = RawFederate {
            span: t.span(),
            namespace: t.get(p, "namespace"),
            service: t.get(p, "service"),
            port: t.get(p, "port"),
            matchers: t.string_list(p, "match"),
            url: t.get(p, "url"),
            ca_file: t.get(p, "ca_file"),
            cert_file: t.get(p, "cert_file"),
            key_file: t.get(p, "key_file"),
            tls_server_name: t.get(p, "tls_server_name"),
            token_file: t.get(p, "token_file"),
            scrape_interval: t.get(p, "scrape_interval"),
            limits: RawLimits::read(&mut t, p),
            keep_source_cluster: t.get(p, "keep_source_cluster"),
            replica_labels: t.string_list(p, "replica_labels"),
        };
        t.finish(p);
        enabled.is_none_or(|e| e.value).then_some(raw)
    }

    /// Where its credential keys are written, for later messages.
    pub fn spans(&self) -> Vec<(&'static str, Range<usize>)> {
        [
            ("federate.ca_file", span(&self.ca_file)),
            ("federate.cert_file", span(&self.cert_file)),
            ("federate.key_file", span(&self.key_file)),
            ("federate.token_file", span(&self.token_file)),
        ]
        .into_iter()
        .filter_map(|(k, s)| Some((k, s?.clone())))
        .collect()
    }

    /// `dir`: the cluster file's folder, which relative paths start from.
    pub fn validate(mut self, p: &mut Problems, dir: &Path) -> Option<Federate> {
        let matchers = match self.matchers.take() {
            None => {
                p.missing_in(
                    self.span.clone(),
                    "federate.match",
                    "missing: the match[] selectors of the series to federate, for example match = ['{job=\"kubernetes-pods\"}']",
                );
                None
            }
            Some(list) if list.value.is_empty() => {
                p.at(
                    list.span,
                    "federate.match",
                    "must hold at least one selector (Prometheus's /federate answers nothing without one)",
                );
                None
            }
            Some(list) => {
                let mut ok = true;
                for (i, m) in list.value.iter().enumerate() {
                    if let Err(e) = selector::check(&m.value) {
                        p.at(
                            m.span.clone(),
                            &format!("federate.match[{i}]"),
                            format!("`{}` is not a series selector: {e}", m.value),
                        );
                        ok = false;
                    }
                }
                ok.then(|| list.value.into_iter().map(|m| m.value).collect())
            }
        };
        let scrape_interval = match self.scrape_interval.take() {
            None => Some(None),
            Some(s) => PromDuration::parse(&s.value)
                .map(Some)
                .map_err(|e| p.at(s.span, "federate.scrape_interval", e))
                .ok(),
        };
        let limits = std::mem::take(&mut self.limits)
            .validate(p, scrape_interval.as_ref().and_then(Option::as_ref));
        let replica_labels = match self.replica_labels.take() {
            None => Some(defaults::REPLICA_LABELS.map(String::from).to_vec()),
            Some(list) => {
                let mut ok = true;
                for (i, l) in list.value.iter().enumerate() {
                    if let Err(e) = names::LabelName::parse(&l.value) {
                        p.at(l.span.clone(), &format!("federate.replica_labels[{i}]"), e);
                        ok = false;
                    }
                }
                ok.then(|| list.value.into_iter().map(|l| l.value).collect())
            }
        };
        let source = match self.url.clone() {
            Some(url) => self.direct(p, dir, url),
            // A `url` of the wrong type is not an absent one.
            None if p.reported("federate.url") => None,
            None => self.through_service(p),
        };
        Some(Federate {
            source: source?,
            matchers: matchers?,
            scrape_interval: scrape_interval?,
            limits: limits?,
            keep_source_cluster: self.keep_source_cluster.is_some_and(|b| b.value),
            replica_labels: replica_labels?,
        })
    }

    fn through_service(&self, p: &mut Problems) -> Option<Source> {
        refuse_written(
            p,
            [
                ("federate.ca_file", span(&self.ca_file)),
                ("federate.cert_file", span(&self.cert_file)),
                ("federate.key_file", span(&self.key_file)),
                ("federate.tls_server_name", span(&self.tls_server_name)),
                ("federate.token_file", span(&self.token_file)),
            ],
            "applies to `url` only: through the API server, the cluster's own credentials are used",
        );
        let namespace = values::kubernetes_name(
            p,
            "federate.namespace",
            &self.namespace,
            defaults::NAMESPACE,
        );
        let service =
            values::kubernetes_name(p, "federate.service", &self.service, defaults::SERVICE);
        let port = values::port(p, "federate.port", &self.port, defaults::PORT);
        Some(Source::Service {
            namespace: namespace?,
            service: service?,
            port: port?,
        })
    }

    fn direct(&self, p: &mut Problems, dir: &Path, url: Spanned<String>) -> Option<Source> {
        refuse_written(
            p,
            [
                ("federate.namespace", span(&self.namespace)),
                ("federate.service", span(&self.service)),
                ("federate.port", span(&self.port)),
            ],
            "give either `url` (the Prometheus reached directly) or namespace, service and port (reached through the API server), not both",
        );
        let parsed = values::url(p, "federate.url", &url, FEDERATE_CREDENTIALS)
            .and_then(|u| direct_url(p, &url, u));
        let ca_file = values::path_in(p, dir, "federate.ca_file", &self.ca_file);
        let cert_file = values::path_in(p, dir, "federate.cert_file", &self.cert_file);
        let key_file = values::path_in(p, dir, "federate.key_file", &self.key_file);
        let token_file = values::path_in(p, dir, "federate.token_file", &self.token_file);
        let client_cert = match (cert_file, key_file, &self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file), _, _) => Some(ClientCert {
                cert_file,
                key_file,
            }),
            (_, _, Some(c), None) => {
                p.missing_in(
                    c.span.clone(),
                    "federate.key_file",
                    "cert_file is set, so key_file is needed too",
                );
                None
            }
            (_, _, None, Some(k)) => {
                p.missing_in(
                    k.span.clone(),
                    "federate.cert_file",
                    "key_file is set, so cert_file is needed too",
                );
                None
            }
            _ => None,
        };
        let url_value = parsed?;
        if url_value.scheme() == "http" {
            refuse_written(
                p,
                [
                    ("federate.token_file", span(&self.token_file)),
                    ("federate.cert_file", span(&self.cert_file)),
                    ("federate.ca_file", span(&self.ca_file)),
                ],
                &format!(
                    "{} is plain http://: credentials and TLS settings need https:// (a token would travel in clear text)",
                    values::shown_url(&url.value)
                ),
            );
        }
        Some(Source::Url {
            url: url_value,
            ca_file,
            client_cert,
            server_name: self.tls_server_name.as_ref().map(|s| s.value.clone()),
            token_file,
        })
    }
}

/// Where a `[federate] url` with a password is told to put credentials.
const FEDERATE_CREDENTIALS: &str =
    "put a bearer token in token_file, or a client certificate in cert_file and key_file";

/// A `[federate] url` (already refused if it holds credentials): http or
/// https, with a host, and nothing but a path after it.
fn direct_url(p: &mut Problems, written: &Spanned<String>, url: Url) -> Option<Url> {
    let shown = values::shown_url(&written.value);
    let problem = if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        format!("{shown}: an http:// or https:// URL with a host")
    } else if url.query().is_some() || url.fragment().is_some() {
        format!("{shown}: give only scheme, host, port and an optional path prefix")
    } else {
        return Some(url);
    };
    p.at(written.span.clone(), "federate.url", problem);
    None
}

fn span<T>(value: &Option<Spanned<T>>) -> Option<&Range<usize>> {
    value.as_ref().map(|s| &s.span)
}

/// Reports each of these keys that is written, with the same message.
fn refuse_written<const N: usize>(
    p: &mut Problems,
    keys: [(&str, Option<&Range<usize>>); N],
    message: &str,
) {
    for (key, span) in keys {
        if let Some(span) = span {
            p.at(span.clone(), key, message);
        }
    }
}
