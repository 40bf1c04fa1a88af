//! One cluster file in `/etc/promfed.d/`: parsed and validated into a `Cluster`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::diagnostic::{Diagnostic, SourceText};
use crate::config::duration::PromDuration;
use crate::config::names::{ClusterName, LabelName};
use crate::config::toml_fields::{self, Fields, Problems, StringOrInteger};

/// A validated cluster definition. Only `Cluster::parse` builds one from a
/// file; the serde derives exist for the last-good snapshot in the state folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: ClusterName,
    pub source: PathBuf,
    pub api_server: ApiServer,
    pub auth: Auth,
    pub tls: Tls,
    pub labels: BTreeMap<LabelName, String>,
    /// The Alertmanager receiver for this cluster's alerts, if any.
    #[serde(default)]
    pub receiver: Option<String>,
    pub kubelet: Component,
    pub cadvisor: Cadvisor,
    pub apiserver: Component,
    pub node_exporter: NodeExporter,
}

/// The API server's URL, split the way scrape configs need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiServer {
    pub url: Url,
    /// `host:port`, the `__address__` of every target of this cluster.
    pub address: String,
    /// A path prefix when the API server sits behind a proxy (Rancher,
    /// for example), without a trailing slash; usually empty.
    pub path_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    pub token_file: Option<PathBuf>,
    pub client_cert: Option<ClientCert>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// Name to verify the API server's certificate against, when the URL
    /// holds an IP the certificate does not list.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub enabled: bool,
    pub scrape_interval: Option<PromDuration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cadvisor {
    pub component: Component,
    /// The high-cardinality drops kube-prometheus-stack makes.
    pub drop_high_cardinality: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExporter {
    pub component: Component,
    pub namespace: String,
    pub service: String,
    pub port: PortRef,
}

/// An endpoints port, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortRef {
    Number(u16),
    Name(String),
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
        files
    }

    /// Parses one cluster file. `default_name` is the file's stem.
    pub fn parse(source: &SourceText, default_name: &str) -> Result<Cluster, Vec<Diagnostic>> {
        let doc = toml_fields::parse(source).map_err(|d| vec![d])?;
        let mut p = Problems::new(source);
        let dir = source.path.parent().unwrap_or(Path::new("/"));
        let mut root = Fields::root(&doc);

        let name = match root.string(&mut p, "name") {
            Some(s) => ClusterName::parse(&s.value).map_err(|e| p.at(s.span, "name", e)).ok(),
            None => ClusterName::parse(default_name)
                .map_err(|e| p.at(0..0, "name", format!("the file name gives the cluster name: {e}; rename the file or set `name`")))
                .ok(),
        };
        let api_server = match root.string(&mut p, "api_server") {
            Some(s) => parse_api_server(&s.value)
                .map_err(|e| p.at(s.span, "api_server", e))
                .ok(),
            None => {
                p.at(
                    0..0,
                    "api_server",
                    "missing: the API server's URL, for example \"https://203.0.113.10:6443\"",
                );
                None
            }
        };
        let file_key = |root: &mut Fields, p: &mut Problems, key: &'static str| {
            root.string(p, key).and_then(|s| {
                if s.value.is_empty() {
                    p.at(s.span, key, "must not be empty");
                    None
                } else {
                    Some(dir.join(s.value))
                }
            })
        };
        let token_file = file_key(&mut root, &mut p, "token_file");
        let cert_file = file_key(&mut root, &mut p, "cert_file");
        let key_file = file_key(&mut root, &mut p, "key_file");
        let ca_file = file_key(&mut root, &mut p, "ca_file");
        let insecure = root
            .bool(&mut p, "insecure_skip_verify")
            .map(|b| b.value)
            .unwrap_or(false);
        let server_name = root.string(&mut p, "tls_server_name").map(|s| s.value);

        let client_cert = match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientCert {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) => {
                p.at(
                    0..0,
                    "key_file",
                    "cert_file is set, so key_file is needed too",
                );
                None
            }
            (None, Some(_)) => {
                p.at(
                    0..0,
                    "cert_file",
                    "key_file is set, so cert_file is needed too",
                );
                None
            }
        };
        if token_file.is_none()
            && client_cert.is_none()
            && !p
                .found
                .iter()
                .any(|d| d.key.as_deref().is_some_and(|k| k.ends_with("_file")))
        {
            p.at(
                0..0,
                "token_file",
                "missing: set token_file (a service-account token) or cert_file and key_file",
            );
        }
        if ca_file.is_none() && !insecure {
            p.at(0..0, "ca_file", "missing: the CA that signed the API server's certificate (or insecure_skip_verify = true, not recommended)");
        }

        let mut labels = BTreeMap::new();
        for (k, v) in root.string_map(&mut p, "labels").unwrap_or_default() {
            match LabelName::parse(&k.value) {
                Ok(name) => {
                    labels.insert(name, v.value);
                }
                Err(e) => p.at(k.span, &format!("labels.{}", k.value), e),
            }
        }

        let receiver = root.string(&mut p, "receiver").and_then(|s| {
            if s.value.is_empty() {
                p.at(s.span, "receiver", "must not be empty");
                None
            } else {
                Some(s.value)
            }
        });
        let kubelet = component(&mut root, &mut p, "kubelet", |_, _| ());
        let mut drop_high_cardinality = true;
        let cadvisor_component = component(&mut root, &mut p, "cadvisor", |t, p| {
            if let Some(b) = t.bool(p, "drop_high_cardinality") {
                drop_high_cardinality = b.value;
            }
        });
        let apiserver = component(&mut root, &mut p, "apiserver", |_, _| ());
        let (mut namespace, mut service, mut port) = (
            "monitoring".to_string(),
            "prometheus-node-exporter".to_string(),
            PortRef::Number(9100),
        );
        let node_exporter_component = component(&mut root, &mut p, "node_exporter", |t, p| {
            if let Some(s) = t.string(p, "namespace") {
                namespace = s.value;
            }
            if let Some(s) = t.string(p, "service") {
                service = s.value;
            }
            if let Some(s) = t.string_or_integer(p, "port") {
                match s.value {
                    StringOrInteger::Integer(n) => match u16::try_from(n) {
                        Ok(n) if n > 0 => port = PortRef::Number(n),
                        _ => p.at(
                            s.span,
                            &t.path("port"),
                            format!("{n} is not a port number (1-65535)"),
                        ),
                    },
                    StringOrInteger::String(name) if !name.is_empty() => port = PortRef::Name(name),
                    StringOrInteger::String(_) => {
                        p.at(s.span, &t.path("port"), "must not be empty")
                    }
                }
            }
        });
        root.finish(&mut p);

        match (name, api_server) {
            (Some(name), Some(api_server)) if p.found.is_empty() => Ok(Cluster {
                name,
                source: source.path.clone(),
                api_server,
                auth: Auth {
                    token_file,
                    client_cert,
                },
                tls: Tls {
                    ca_file,
                    insecure_skip_verify: insecure,
                    server_name,
                },
                labels,
                receiver,
                kubelet,
                cadvisor: Cadvisor {
                    component: cadvisor_component,
                    drop_high_cardinality,
                },
                apiserver,
                node_exporter: NodeExporter {
                    component: node_exporter_component,
                    namespace,
                    service,
                    port,
                },
            }),
            _ => Err(p.found),
        }
    }
}

/// The name a cluster file would give, read as leniently as possible: used
/// to keep the last good configuration of a file that no longer parses.
pub fn name_of_broken_file(text: &str, default_name: &str) -> Option<ClusterName> {
    let explicit = toml_edit::Document::parse(text.to_string())
        .ok()
        .and_then(|doc| doc.get("name").and_then(|n| n.as_str()).map(str::to_string));
    ClusterName::parse(explicit.as_deref().unwrap_or(default_name)).ok()
}

/// Reads `[section]` with `enabled` and `scrape_interval`, then lets `extra`
/// take the section's own keys.
fn component(
    root: &mut Fields,
    p: &mut Problems,
    key: &'static str,
    extra: impl FnOnce(&mut Fields, &mut Problems),
) -> Component {
    let mut c = Component {
        enabled: true,
        scrape_interval: None,
    };
    if let Some(mut t) = root.table(p, key) {
        if let Some(b) = t.bool(p, "enabled") {
            c.enabled = b.value;
        }
        if let Some(s) = t.string(p, "scrape_interval") {
            c.scrape_interval = PromDuration::parse(&s.value)
                .map_err(|e| p.at(s.span, &t.path("scrape_interval"), e))
                .ok();
        }
        extra(&mut t, p);
        t.finish(p);
    }
    c
}

fn parse_api_server(text: &str) -> Result<ApiServer, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "`{text}`: the API server must be reached over https:// (tokens would travel in clear text)"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{text}` has no host"))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "`{text}`: give only scheme, host, port and an optional path prefix"
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
            .map_err(|ds| ds.iter().map(|d| d.headline()).collect())
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
        assert_eq!(
            errors,
            [
                "/etc/promfed.d/stage.toml:1:14: key `api_server`: `http://10.0.0.1:6443`: the API server must be reached over https:// (tokens would travel in clear text)",
                "/etc/promfed.d/stage.toml:1:1: key `ca_file`: missing: the CA that signed the API server's certificate (or insecure_skip_verify = true, not recommended)",
                "/etc/promfed.d/stage.toml:3:12: key `labels.cluster`: `cluster` is set by promfed itself and cannot be overridden",
                "/etc/promfed.d/stage.toml:3:27: key `labels.bad-name`: `bad-name` is not a valid label name: use letters, digits and `_`, not starting with a digit",
                "/etc/promfed.d/stage.toml:8:19: key `cadvisor.scrape_interval`: `10` is not a duration (examples: 30s, 1m30s, 500ms, 2h)",
                "/etc/promfed.d/stage.toml:6:8: key `node_exporter.port`: 70000 is not a port number (1-65535)",
                "/etc/promfed.d/stage.toml:4:1: key `colour`: unknown key (allowed here: api_server, apiserver, ca_file, cadvisor, cert_file, insecure_skip_verify, key_file, kubelet, labels, name, node_exporter, receiver, tls_server_name, token_file)",
            ]
        );
    }

    #[test]
    fn a_broken_file_still_tells_its_name() {
        let name = |text: &str, stem: &str| name_of_broken_file(text, stem).map(|n| n.to_string());
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
}
