//! Network and TLS: the API server's name resolves, its port answers, and
//! its certificate is signed by the cluster's CA and valid for its name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use url::Host;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{Checks, STEP_TIMEOUT};
use crate::config::cluster::Cluster;

/// Days left under which a certificate is warned about.
const CERTIFICATE_WARN_DAYS: i64 = 30;

/// Runs the checks in order; whether the API server can be talked to.
pub async fn check(cluster: &Cluster, checks: &mut Checks) -> bool {
    let url = &cluster.api_server.url;
    let Some(host) = url.host() else {
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let Some(address) = resolve(&host, port, cluster, checks).await else {
        return false;
    };
    let started = Instant::now();
    let connected = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(address))
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {STEP_TIMEOUT:?}"),
            ))
        });
    let tcp = match connected {
        Ok(tcp) => {
            checks.pass(
                "tcp",
                format!("{address} accepts connections ({})", millis(started)),
            );
            tcp
        }
        Err(e) => {
            checks.fail(
                "tcp",
                format!("cannot connect to {address}: {e}"),
                format!(
                    "is the API server up, and may this host reach port {port}? (a firewall or security group between them); the checks through the API server were skipped"
                ),
            );
            return false;
        }
    };
    handshake(cluster, &host, tcp, checks).await
}

async fn resolve(
    host: &Host<&str>,
    port: u16,
    cluster: &Cluster,
    checks: &mut Checks,
) -> Option<SocketAddr> {
    let name = match host {
        Host::Domain(d) => *d,
        Host::Ipv4(ip) => {
            checks.pass("dns", format!("{ip} is an address: nothing to resolve"));
            return Some(SocketAddr::from((*ip, port)));
        }
        Host::Ipv6(ip) => {
            checks.pass("dns", format!("{ip} is an address: nothing to resolve"));
            return Some(SocketAddr::from((*ip, port)));
        }
    };
    let started = Instant::now();
    let looked_up = tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {STEP_TIMEOUT:?}"),
            ))
        });
    match looked_up {
        Ok(found) => {
            let found: Vec<SocketAddr> = found.collect();
            let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
            checks.pass(
                "dns",
                format!(
                    "{name} resolves to {} ({})",
                    shown.join(", "),
                    millis(started)
                ),
            );
            found.into_iter().next()
        }
        Err(e) => {
            checks.fail(
                "dns",
                format!("cannot resolve {name}: {e}"),
                format!(
                    "check api_server in {} and this host's resolver (/etc/resolv.conf, /etc/hosts)",
                    cluster.source.display()
                ),
            );
            None
        }
    }
}

async fn handshake(
    cluster: &Cluster,
    host: &Host<&str>,
    tcp: TcpStream,
    checks: &mut Checks,
) -> bool {
    let source = cluster.source.display();
    let (config, offered) = match crate::discovery::observing_config(cluster) {
        Ok(made) => made,
        Err(e) => {
            checks.fail(
                "tls",
                e.to_string(),
                format!(
                    "fix the file the message names, then `promfed doctor {}`",
                    cluster.name
                ),
            );
            return false;
        }
    };
    let server_name = match host {
        Host::Domain(d) => ServerName::try_from(d.to_string()).ok(),
        Host::Ipv4(ip) => Some(ServerName::from(std::net::IpAddr::V4(*ip))),
        Host::Ipv6(ip) => Some(ServerName::from(std::net::IpAddr::V6(*ip))),
    };
    let Some(server_name) = server_name else {
        return false;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = match tokio::time::timeout(STEP_TIMEOUT, connector.connect(server_name, tcp)).await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(tls_error_of(e)),
        Err(_) => Err(rustls::Error::General(format!(
            "no handshake within {STEP_TIMEOUT:?}"
        ))),
    };
    let offered = offered.lock().unwrap_or_else(|e| e.into_inner()).take();
    let seen = offered.as_deref().and_then(Certificate::read);
    match (result, seen) {
        (Ok(()), Some(cert)) => {
            let days = cert.days_left();
            let detail = format!(
                "the certificate ({}) is {}; it expires {} (in {days} days)",
                cert.describe(),
                if cluster.tls.insecure_skip_verify {
                    "NOT checked (insecure_skip_verify = true)"
                } else {
                    "signed by ca_file and valid for the name"
                },
                cert.not_after
            );
            if cluster.tls.insecure_skip_verify {
                checks.warn(
                    "tls",
                    detail,
                    format!(
                        "set ca_file to the cluster's CA and remove insecure_skip_verify from {source}"
                    ),
                );
            } else if days < CERTIFICATE_WARN_DAYS {
                checks.warn(
                    "tls",
                    format!("the API server's certificate expires in {days} days ({detail})"),
                    "renew it on the control plane (kubeadm certs renew apiserver) before it expires",
                );
            } else {
                checks.pass("tls", detail);
            }
            true
        }
        (Ok(()), None) => {
            checks.pass("tls", "handshake completed");
            true
        }
        (Err(e), seen) => {
            let offered = seen.map_or(String::new(), |c| {
                format!("; the server offers {}", c.describe())
            });
            let (detail, fix) = tls_failure(cluster, &e);
            checks.fail("tls", format!("{detail}{offered}"), fix);
            false
        }
    }
}

/// The TLS error inside an I/O error, or the I/O error told as one.
fn tls_error_of(e: std::io::Error) -> rustls::Error {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<rustls::Error>() {
            Ok(tls) => *tls,
            Err(other) => rustls::Error::General(other.to_string()),
        },
        None => rustls::Error::General("the connection closed".into()),
    }
}

/// What a failed handshake means, and what to do.
fn tls_failure(cluster: &Cluster, e: &rustls::Error) -> (String, String) {
    use rustls::{CertificateError, Error};
    let source = cluster.source.display();
    let ca = cluster
        .tls
        .ca_file
        .as_deref()
        .map_or(String::new(), |p| p.display().to_string());
    let ca_subject = cluster
        .tls
        .ca_file
        .as_deref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|pem| rustls::pki_types::CertificateDer::from_pem_slice(&pem).ok())
        .and_then(|der| Certificate::read(&der))
        .map_or(String::new(), |c| format!(" (it holds {})", c.subject));
    match e {
        Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | Error::InvalidCertificate(CertificateError::BadSignature) => (
            format!(
                "the API server's certificate is not signed by the CA in ca_file {ca}{ca_subject}"
            ),
            format!(
                "put the cluster's own CA in {ca}: from a kubeconfig, `promfed add-cluster` writes it; by hand, base64 -d its certificate-authority-data (kubectl config view --raw)"
            ),
        ),
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => (
            format!("the API server's certificate is not valid for the name in api_server ({e})"),
            format!(
                "use a name the certificate lists in api_server, or set tls_server_name to one of them in {source}"
            ),
        ),
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => (
            format!("the API server's certificate has expired ({e})"),
            "renew it on the control plane (kubeadm certs renew apiserver)".to_string(),
        ),
        _ => (
            format!("the TLS handshake failed: {e}"),
            format!(
                "check that api_server in {source} is the API server's HTTPS port, and the client certificate if the file names one"
            ),
        ),
    }
}

/// What `doctor` shows of a certificate.
struct Certificate {
    subject: String,
    names: Vec<String>,
    not_after: String,
    not_after_unix: i64,
}

impl Certificate {
    fn read(der: &[u8]) -> Option<Certificate> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.push(d.to_string()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => names.push(
                            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string(),
                        ),
                        16 => names.push(
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string(),
                        ),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let not_after = cert.validity().not_after;
        Some(Certificate {
            subject: cert.subject().to_string(),
            names,
            not_after: not_after.to_string(),
            not_after_unix: not_after.timestamp(),
        })
    }

    fn days_left(&self) -> i64 {
        let now = jiff::Timestamp::now().as_second();
        (self.not_after_unix - now).div_euclid(86_400)
    }

    fn describe(&self) -> String {
        if self.names.is_empty() {
            self.subject.clone()
        } else {
            format!("{}, for {}", self.subject, self.names.join(", "))
        }
    }
}

fn millis(since: Instant) -> String {
    format!("{} ms", since.elapsed().as_millis())
}
