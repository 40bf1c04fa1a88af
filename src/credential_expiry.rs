//! When a cluster's credentials stop working: the token's JWT `exp` and the
//! client certificate's `notAfter`. Read here from the credential files;
//! credentials that renew themselves (an exec plugin, a TokenRequest) know
//! their own expiry and hand it to the daemon's `State::credential_expires`,
//! the one place that turns an expiry into status.json and metrics.

use crate::config::cluster::Auth;

/// A credential whose end promfed can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Credential {
    Token,
    Certificate,
}

impl Credential {
    pub fn word(self) -> &'static str {
        match self {
            Credential::Token => "token",
            Credential::Certificate => "certificate",
        }
    }
}

/// Each credential and when it expires (seconds since the epoch), as its
/// file says; `None` for one the cluster does not present, or whose file
/// tells no end (an opaque token, an unreadable file).
pub fn of_files(auth: &Auth) -> [(Credential, Option<i64>); 2] {
    let token = auth.token_file.as_deref().and_then(crate::jwt::file_expiry);
    let certificate = auth.client_cert.as_ref().and_then(|c| {
        let pem = crate::fsutil::read_regular(&c.cert_file, 1 << 20).ok()?;
        crate::config::tls_files::not_after(&pem)
    });
    [
        (Credential::Token, token),
        (Credential::Certificate, certificate),
    ]
}
