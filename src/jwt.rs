//! When a service-account token expires, read from its JWT `exp` claim, so
//! operators can alert before a rotation is missed. The signature is not
//! checked: only the API server can judge the token; this is a reminder.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `exp` claim (seconds since the epoch) of a JWT, or `None` when the
/// token is not a JWT or has no expiry.
pub fn expiry(token: &str) -> Option<i64> {
    claims(token)?.get("exp")?.as_i64()
}

/// The expiry of the token in `path`, if it is a readable JWT.
pub fn file_expiry(path: &std::path::Path) -> Option<i64> {
    expiry(&read(path)?)
}

/// The `sub` claim of the token in `path`: who it says it is
/// (`system:serviceaccount:NAMESPACE:NAME`).
pub fn file_subject(path: &std::path::Path) -> Option<String> {
    Some(claims(&read(path)?)?.get("sub")?.as_str()?.to_string())
}

fn read(path: &std::path::Path) -> Option<String> {
    let bytes = crate::fsutil::read_regular(path, 64 << 10).ok()?;
    String::from_utf8(bytes).ok()
}

fn claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn reads_exp_from_a_jwt_and_nothing_from_other_tokens() {
        assert_eq!(
            expiry(&jwt(
                r#"{"sub":"system:serviceaccount:monitoring:prometheus","exp":1893456000}"#
            )),
            Some(1893456000)
        );
        assert_eq!(expiry(&format!("{}\n", jwt(r#"{"exp":5}"#))), Some(5));
        assert_eq!(expiry(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(expiry("a-legacy-opaque-token"), None);
        assert_eq!(expiry("a.b.c.d"), None);
    }
}
