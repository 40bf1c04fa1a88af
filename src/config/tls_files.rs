//! What Prometheus refuses in the content of a TLS file. promtool checks
//! only that `cert_file` and `key_file` exist, and `ca_file` not at all, but
//! Prometheus builds each job's HTTP client from them: a CA file without a
//! certificate ("unable to use specified CA cert"), a key file without a
//! private key or a certificate that does not belong to the key ("unable to
//! use specified client cert & key") makes it drop the job's whole scrape
//! pool, at startup silently and on a reload half-applied. So the content is
//! checked with the cluster's other files, and such a cluster is held back
//! alone.
//!
//! The checks are Go's (`AppendCertsFromPEM`, `tls.X509KeyPair`) and never
//! stricter: a key that Prometheus can load but ring cannot (RSA under 2048
//! bits, P-521) is not called wrong.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The files of `files` (key, path, as `Cluster::credential_files` lists
/// them) whose content Prometheus would refuse: the key, and the path with
/// why. Files that cannot be read are left to the readability check.
pub fn refused(files: &[(&'static str, &Path)]) -> Vec<(&'static str, String)> {
    // A file by its key, with its content when it can be read.
    let file = |key: String| {
        let (key, path) = files.iter().find(|(k, _)| *k == key)?;
        let pem = crate::fsutil::read_regular(path, 1 << 20).ok()?;
        Some((*key, pem, path.display()))
    };
    let mut found = Vec::new();
    for prefix in ["", "federate."] {
        if let Some((key, pem, path)) = file(format!("{prefix}ca_file")) {
            found.extend(ca_problem(&pem).map(|why| (key, format!("{path} {why}"))));
        }
        let cert = file(format!("{prefix}cert_file"));
        let private = file(format!("{prefix}key_file"));
        if let (Some((cert_key, cert, cert_path)), Some((key_key, private, key_path))) =
            (cert, private)
        {
            match pair_problem(&cert, &private) {
                Some(PairProblem::Cert(why)) => {
                    found.push((cert_key, format!("{cert_path} {why}")))
                }
                Some(PairProblem::Key(why)) => found.push((key_key, format!("{key_path} {why}"))),
                None => {}
            }
        }
    }
    found
}

/// Why a CA file's content is refused: Go keeps every PEM `CERTIFICATE`
/// block that parses as X.509, and refuses the file when none does.
pub fn ca_problem(pem: &[u8]) -> Option<String> {
    if !certificates(pem).is_empty() {
        return None;
    }
    Some(format!(
        "holds no PEM certificate{}, so Prometheus would drop the jobs that use it (\"unable to use specified CA cert\")",
        what_it_holds(pem)
    ))
}

/// Which file of a client certificate pair is refused, and why.
#[derive(Debug, PartialEq, Eq)]
pub enum PairProblem {
    Cert(String),
    Key(String),
}

/// Why a client certificate and key are refused as a pair.
pub fn pair_problem(cert_pem: &[u8], key_pem: &[u8]) -> Option<PairProblem> {
    const DROPPED: &str = "so Prometheus would drop the jobs that use it (\"unable to use specified client cert & key\")";
    // Go skips PEM blocks it cannot decode, so these iterators do too.
    let Some(first) = CertificateDer::pem_slice_iter(cert_pem).find_map(Result::ok) else {
        return Some(PairProblem::Cert(format!(
            "holds no PEM certificate{}, {DROPPED}",
            what_it_holds(cert_pem)
        )));
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&first) else {
        return Some(PairProblem::Cert(format!(
            "its first certificate is not valid X.509, {DROPPED}"
        )));
    };
    let Some(key) = PrivateKeyDer::pem_slice_iter(key_pem).find_map(Result::ok) else {
        return Some(PairProblem::Key(format!(
            "holds no PEM private key{}, {DROPPED}",
            what_it_holds(key_pem)
        )));
    };
    let provider = rustls::crypto::ring::default_provider();
    // A key ring cannot load may still be one Go can: not ours to refuse.
    let Ok(signing_key) = provider.key_provider.load_private_key(key) else {
        return None;
    };
    // Compared as Go does, by public key; rustls's own `keys_match` would
    // also refuse the version-1 certificates Go takes.
    let public_key = signing_key.public_key()?;
    (public_key.as_ref() != parsed.tbs_certificate.subject_pki.raw).then(|| {
        PairProblem::Key(format!(
            "is not the key of the certificate in cert_file, {DROPPED}"
        ))
    })
}

/// The certificates of a PEM file as Go takes them: `CERTIFICATE` blocks
/// that decode and parse as X.509, the others skipped. Discovery trusts and
/// presents the same ones Prometheus would.
pub fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .filter(|der| x509_parser::parse_x509_certificate(der).is_ok())
        .collect()
}

/// When the first certificate of a PEM file (a client certificate, as
/// Prometheus presents it) stops being valid: its `notAfter`, in seconds
/// since the epoch. `None` when the file holds no certificate that parses.
pub fn not_after(pem: &[u8]) -> Option<i64> {
    let first = CertificateDer::pem_slice_iter(pem).find_map(Result::ok)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&first).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// What a refused file holds instead, when that helps: the PEM labels of
/// its blocks ("holds no PEM certificate (it holds: PRIVATE KEY)").
fn what_it_holds(pem: &[u8]) -> String {
    let text = String::from_utf8_lossy(pem);
    let labels: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .collect();
    match labels.as_slice() {
        [] if pem.iter().all(u8::is_ascii_whitespace) => " (it is empty)".into(),
        [] => " (it is not PEM)".into(),
        _ => format!(" (it holds: {})", labels.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = include_str!("../../tests/fixtures/tls/ca.crt");
    const CLIENT_CERT: &str = include_str!("../../tests/fixtures/tls/client.crt");
    const CLIENT_KEY: &str = include_str!("../../tests/fixtures/tls/client.key");
    const OTHER_KEY: &str = include_str!("../../tests/fixtures/tls/other.key");

    #[test]
    fn a_client_certificate_tells_when_it_ends() {
        // `openssl x509 -enddate` of the fixture: notAfter=Oct 29 01:41:20 2126 GMT.
        assert_eq!(not_after(CLIENT_CERT.as_bytes()), Some(4_948_911_680));
        assert_eq!(not_after(CLIENT_KEY.as_bytes()), None);
        assert_eq!(not_after(b"junk"), None);
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(not_after(broken.as_bytes()), None);
    }

    #[test]
    fn a_ca_file_needs_one_certificate_that_parses() {
        assert_eq!(ca_problem(CA.as_bytes()), None);
        // Go skips what it cannot use, as long as one certificate is left:
        // text, other blocks, a block that is not base64.
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let mixed = format!("junk\n{OTHER_KEY}{broken}{CA}");
        assert_eq!(ca_problem(mixed.as_bytes()), None);
        let refused = |pem: &str| ca_problem(pem.as_bytes()).expect(pem);
        assert!(refused("").contains("holds no PEM certificate (it is empty)"));
        assert!(refused("not a cert\n").contains("(it is not PEM)"));
        assert!(refused(OTHER_KEY).contains("(it holds: PRIVATE KEY)"));
        assert!(
            refused("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
                .contains("(it holds: CERTIFICATE)")
        );
        assert!(
            refused("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .contains("unable to use specified CA cert")
        );
    }

    #[test]
    fn a_client_pair_needs_a_certificate_and_its_own_key() {
        assert_eq!(
            pair_problem(CLIENT_CERT.as_bytes(), CLIENT_KEY.as_bytes()),
            None
        );
        let broken = "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n";
        let cert = format!(
            "{}{CLIENT_CERT}",
            broken.replace("PRIVATE KEY", "CERTIFICATE")
        );
        let key = format!("{broken}{CLIENT_KEY}");
        assert_eq!(pair_problem(cert.as_bytes(), key.as_bytes()), None);
        assert!(matches!(
            pair_problem(CLIENT_CERT.as_bytes(), OTHER_KEY.as_bytes()),
            Some(PairProblem::Key(why)) if why.contains("is not the key of the certificate")
        ));
        assert!(matches!(
            pair_problem(CLIENT_CERT.as_bytes(), CLIENT_CERT.as_bytes()),
            Some(PairProblem::Key(why)) if why.contains("holds no PEM private key (it holds: CERTIFICATE)")
        ));
        assert!(matches!(
            pair_problem(CLIENT_KEY.as_bytes(), CLIENT_KEY.as_bytes()),
            Some(PairProblem::Cert(why)) if why.contains("holds no PEM certificate")
        ));
    }
}
