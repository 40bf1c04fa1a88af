//! The TLS side of talking to an API server: trust exactly the cluster's CA,
//! optionally present a client certificate. Files are read on every
//! discovery, so rotated CAs and certificates are picked up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::DiscoveryError;
use crate::config::cluster::Cluster;

/// The TLS configuration for a cluster's API server. Clusters that trust
/// the same CA and present the same certificate share one (a thousand
/// clusters behind one CA would otherwise hold a thousand copies), as all
/// share one crypto provider.
pub fn client_config(cluster: &Cluster) -> Result<Arc<ClientConfig>, DiscoveryError> {
    let material = Material::read(cluster)?;
    let key = material.digest();
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(config) = shared.get(&key).and_then(Weak::upgrade) {
        return Ok(config);
    }
    let config = Arc::new(material.build(cluster, None)?);
    shared.retain(|_, c| c.strong_count() > 0);
    shared.insert(key, Arc::downgrade(&config));
    Ok(config)
}

/// The server certificate a handshake was offered, verified or not.
pub type Offered = Arc<Mutex<Option<CertificateDer<'static>>>>;

/// A configuration of its own (not shared) that also keeps the certificate
/// the server offers, so that `promfed doctor` can say what it was even
/// when it is refused.
pub fn observing_config(cluster: &Cluster) -> Result<(ClientConfig, Offered), DiscoveryError> {
    let offered = Offered::default();
    let material = Material::read(cluster)?;
    let config = material.build(cluster, Some(offered.clone()))?;
    Ok((config, offered))
}

/// Configurations by the digest of what they were made from.
static SHARED: Mutex<BTreeMap<[u8; 32], Weak<ClientConfig>>> = Mutex::new(BTreeMap::new());

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// What a configuration is made from, read from the cluster's files now
/// (so rotated files are picked up).
struct Material {
    /// `None`: `insecure_skip_verify`.
    ca: Option<Vec<u8>>,
    server_name: Option<String>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl Material {
    fn read(cluster: &Cluster) -> Result<Material, DiscoveryError> {
        let ca = match cluster.tls.insecure_skip_verify {
            true => None,
            false => {
                let ca = cluster
                    .tls
                    .ca_file
                    .as_deref()
                    .expect("validation requires ca_file unless insecure");
                Some(read_pem("ca_file", ca)?)
            }
        };
        let client = match &cluster.auth.client_cert {
            Some(c) => Some((
                read_pem("cert_file", &c.cert_file)?,
                read_pem("key_file", &c.key_file)?,
            )),
            None => None,
        };
        Ok(Material {
            ca,
            server_name: cluster.tls.server_name.clone(),
            client,
        })
    }

    /// Two configurations made from the same material are the same.
    fn digest(&self) -> [u8; 32] {
        let mut d = ring::digest::Context::new(&ring::digest::SHA256);
        let mut part = |bytes: Option<&[u8]>| match bytes {
            // Length-prefixed, so no two different lists of parts collide.
            Some(b) => {
                d.update(&[1]);
                d.update(&(b.len() as u64).to_le_bytes());
                d.update(b);
            }
            None => d.update(&[0]),
        };
        part(self.ca.as_deref());
        part(self.server_name.as_deref().map(str::as_bytes));
        part(self.client.as_ref().map(|(c, _)| c.as_slice()));
        part(self.client.as_ref().map(|(_, k)| k.as_slice()));
        let mut out = [0; 32];
        out.copy_from_slice(d.finish().as_ref());
        out
    }

    fn build(
        &self,
        cluster: &Cluster,
        observe: Option<Offered>,
    ) -> Result<ClientConfig, DiscoveryError> {
        let provider = provider();
        let mut verifier: Arc<dyn ServerCertVerifier> = match &self.ca {
            None => Arc::new(AcceptAnyCertificate(provider.clone())),
            Some(pem) => {
                let ca = cluster.tls.ca_file.as_deref().unwrap_or(Path::new(""));
                let mut roots = RootCertStore::empty();
                let (usable, _) = roots.add_parsable_certificates(certs("ca_file", ca, pem)?);
                if usable == 0 {
                    return Err(material(
                        "ca_file",
                        ca,
                        "holds no usable CA certificate".into(),
                    ));
                }
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| material("ca_file", ca, e.to_string()))?;
                match &self.server_name {
                    Some(name) => Arc::new(VerifyAs {
                        inner: webpki,
                        name: ServerName::try_from(name.clone()).map_err(|e| {
                            material("ca_file", ca, format!("tls_server_name `{name}`: {e}"))
                        })?,
                    }),
                    None => webpki,
                }
            }
        };
        if let Some(offered) = observe {
            verifier = Arc::new(Observe {
                inner: verifier,
                offered,
            });
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&cluster.auth.client_cert, &self.client) {
            (Some(c), Some((cert_pem, key_pem))) => {
                let certs = certs("cert_file", &c.cert_file, cert_pem)?;
                let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
                    material(
                        "key_file",
                        &c.key_file,
                        format!("no usable private key: {e}"),
                    )
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| material("cert_file", &c.cert_file, e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // A session cache of 256 entries costs 14 KiB per cluster; resuming
        // saves one handshake when a watch reconnects, every few minutes.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }
}

/// The certificates of a PEM file, skipping what Prometheus skips too.
fn certs(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, DiscoveryError> {
    let certs = crate::config::tls_files::certificates(pem);
    if certs.is_empty() {
        return Err(material(key, path, "holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A PEM file: a regular file (a FIFO would block) of at most 1 MiB.
fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, DiscoveryError> {
    crate::fsutil::read_regular(path, 1 << 20).map_err(|e| material(key, path, e.to_string()))
}

fn material(key: &'static str, path: &Path, detail: String) -> DiscoveryError {
    DiscoveryError::Credentials {
        key,
        path: path.to_path_buf(),
        detail,
    }
}

/// The handshake-signature half of a verifier that only changes how the
/// certificate is judged: as its `inner` verifier does.
macro_rules! signatures_as_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// Verifies the chain as usual but against `tls_server_name` instead of the
/// URL's host: API servers reached by an IP their certificate does not list.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    signatures_as_inner!();
}

/// Keeps the offered certificate, then verifies as `inner` does.
#[derive(Debug)]
struct Observe {
    inner: Arc<dyn ServerCertVerifier>,
    offered: Offered,
}

impl ServerCertVerifier for Observe {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.offered.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    signatures_as_inner!();
}

/// `insecure_skip_verify = true`: checks the handshake signatures but not
/// who signed the certificate. Warned about at every apply.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::SourceText;

    fn pki(dir: &Path, name: &str) -> std::path::PathBuf {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_apiserver.py");
        let status = std::process::Command::new("python3")
            .arg(script)
            .arg("pki")
            .arg(dir.join(name))
            .status()
            .expect("python3 runs the fake's PKI maker");
        assert!(status.success());
        dir.join(name).join("ca.crt")
    }

    fn cluster(name: &str, ca: &Path, server_name: Option<&str>) -> Cluster {
        let mut text = format!(
            "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"/t\"\nca_file = \"{}\"\n",
            ca.display()
        );
        if let Some(s) = server_name {
            text.push_str(&format!("tls_server_name = \"{s}\"\n"));
        }
        let source = SourceText::new(format!("/etc/promfed.d/{name}.toml"), text);
        Cluster::parse(&source, name).unwrap().cluster
    }

    /// Discovery trusts what Prometheus trusts: a CA among text and a block
    /// that is not base64 (Go skips both); none at all is refused.
    #[test]
    fn a_ca_file_is_read_as_prometheus_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = include_str!("../../tests/fixtures/tls/ca.crt");
        let file = dir.path().join("ca.crt");
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        std::fs::write(&file, format!("junk\n{broken}{ca}")).unwrap();
        assert!(client_config(&cluster("mixed", &file, None)).is_ok());
        std::fs::write(&file, broken).unwrap();
        let refused = client_config(&cluster("none", &file, None)).err().unwrap();
        assert!(
            refused.to_string().contains("holds no PEM certificate"),
            "{refused}"
        );
    }

    /// A thousand clusters behind one CA hold one configuration; another
    /// CA, another server name or a rotated file gets its own.
    #[test]
    fn clusters_made_of_the_same_material_share_one_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (pki(dir.path(), "a"), pki(dir.path(), "b"));
        let one = client_config(&cluster("one", &a, None)).unwrap();
        let two = client_config(&cluster("two", &a, None)).unwrap();
        assert!(Arc::ptr_eq(&one, &two));
        let other_ca = client_config(&cluster("three", &b, None)).unwrap();
        assert!(!Arc::ptr_eq(&one, &other_ca));
        let named = client_config(&cluster("four", &a, Some("kubernetes"))).unwrap();
        assert!(!Arc::ptr_eq(&one, &named));

        // The same path, rotated to the other CA: the other CA's config.
        std::fs::copy(&b, &a).unwrap();
        let rotated = client_config(&cluster("one", &a, None)).unwrap();
        assert!(!Arc::ptr_eq(&one, &rotated));
        assert!(Arc::ptr_eq(&rotated, &other_ca));
    }
}
