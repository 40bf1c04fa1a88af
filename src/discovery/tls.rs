//! The TLS side of talking to an API server: trust exactly the cluster's CA,
//! optionally present a client certificate. Files are read on every
//! discovery, so rotated CAs and certificates are picked up.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::DiscoveryError;
use crate::config::cluster::Cluster;

pub fn client_config(cluster: &Cluster) -> Result<ClientConfig, DiscoveryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if cluster.tls.insecure_skip_verify {
        Arc::new(AcceptAnyCertificate(provider.clone()))
    } else {
        let ca = cluster
            .tls
            .ca_file
            .as_deref()
            .expect("validation requires ca_file unless insecure");
        let mut roots = RootCertStore::empty();
        for cert in read_certs("ca_file", ca)? {
            roots.add(cert).map_err(|e| {
                material("ca_file", ca, format!("not a usable CA certificate: {e}"))
            })?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| material("ca_file", ca, e.to_string()))?;
        match &cluster.tls.server_name {
            Some(name) => Arc::new(VerifyAs {
                inner: webpki,
                name: ServerName::try_from(name.clone()).map_err(|e| {
                    material("ca_file", ca, format!("tls_server_name `{name}`: {e}"))
                })?,
            }),
            None => webpki,
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &cluster.auth.client_cert {
        Some(c) => {
            let certs = read_certs("cert_file", &c.cert_file)?;
            let pem = read_pem("key_file", &c.key_file)?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
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
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A session cache of 256 entries costs 14 KiB per cluster; resuming
    // saves one handshake when a watch reconnects, every few minutes.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

fn read_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, DiscoveryError> {
    let pem = read_pem(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| material(key, path, format!("not a PEM certificate file: {e}")))?;
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
