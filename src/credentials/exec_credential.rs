//! What a credential plugin prints (an `ExecCredential`) and what the API
//! server answers a TokenRequest, decoded. Strangers' bytes: every field is
//! read from a `serde_json::Value` by hand, so that no message quotes a
//! value (serde's "invalid type: string …" would quote the token).

use jiff::Timestamp;
use serde_json::Value;

use super::{Issued, Secret};
use crate::config::credential_source::ExecApiVersion;
use crate::discovery::token_problem;

/// The most a plugin may print on stdout: an ExecCredential with a client
/// certificate chain is a few KiB.
pub const MAX_OUTPUT: usize = 1 << 20;
/// PEM data larger than this is no certificate or key.
const MAX_PEM: usize = 256 << 10;

/// Decodes a plugin's stdout for the version the stanza asked.
pub fn decode(bytes: &[u8], want: ExecApiVersion, now: Timestamp) -> Result<Issued, String> {
    let value = json(bytes)?;
    let kind = value.get("kind").and_then(Value::as_str);
    if kind != Some("ExecCredential") {
        return Err("is not an ExecCredential (`kind` is not \"ExecCredential\")".into());
    }
    let version = value.get("apiVersion").and_then(Value::as_str);
    if version != Some(want.as_str()) {
        return Err(format!(
            "`apiVersion` is not {} as [exec] api_version asks",
            want.as_str()
        ));
    }
    let status = value
        .get("status")
        .filter(|s| s.is_object())
        .ok_or("has no `status` object")?;
    let secret = secret(status)?;
    let expires = expiry(status, "expirationTimestamp", now)?;
    Ok(Issued { secret, expires })
}

/// Decodes a TokenRequest answer: `status.token` and its expiry.
pub fn decode_token_request(value: &Value, now: Timestamp) -> Result<Issued, String> {
    let status = value
        .get("status")
        .filter(|s| s.is_object())
        .ok_or("the TokenRequest answer has no `status` object")?;
    let token = token(status)?.ok_or("the TokenRequest answer has no `status.token`")?;
    let expires = expiry(status, "expirationTimestamp", now)?
        .ok_or("the TokenRequest answer has no `status.expirationTimestamp`")?;
    Ok(Issued {
        secret: Secret::Token(token),
        expires: Some(expires),
    })
}

fn json(bytes: &[u8]) -> Result<Value, String> {
    if bytes.len() > MAX_OUTPUT {
        return Err(format!("is larger than {} KiB", MAX_OUTPUT >> 10));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    // A syntax error names a line and column, never the text.
    serde_json::from_str(text).map_err(|e| format!("is not JSON ({e})"))
}

/// The token, or else the client certificate and key.
fn secret(status: &Value) -> Result<Secret, String> {
    if let Some(token) = token(status)? {
        return Ok(Secret::Token(token));
    }
    let pem = |key: &str| -> Result<Option<String>, String> {
        match status.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s))
                if s.len() <= MAX_PEM && s.contains("-----BEGIN ") && !s.contains('\0') =>
            {
                Ok(Some(s.clone()))
            }
            Some(Value::String(_)) => Err(format!("`status.{key}` is not PEM data")),
            Some(_) => Err(format!("`status.{key}` is not a string")),
        }
    };
    match (pem("clientCertificateData")?, pem("clientKeyData")?) {
        (Some(cert), Some(key)) => Ok(Secret::Certificate { cert, key }),
        (Some(_), None) => {
            Err("`status.clientCertificateData` comes without `status.clientKeyData`".into())
        }
        (None, Some(_)) => {
            Err("`status.clientKeyData` comes without `status.clientCertificateData`".into())
        }
        (None, None) => Err(
            "`status` holds neither `token` nor `clientCertificateData` and `clientKeyData`".into(),
        ),
    }
}

fn token(status: &Value) -> Result<Option<String>, String> {
    match status.get("token") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => match token_problem(s) {
            Some(why) => Err(format!("`status.token` {why}")),
            None => Ok(Some(s.trim().to_string())),
        },
        Some(_) => Err("`status.token` is not a string".into()),
    }
}

/// An RFC 3339 time in the future, or none.
fn expiry(status: &Value, key: &str, now: Timestamp) -> Result<Option<Timestamp>, String> {
    let text = match status.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(format!("`status.{key}` is not a string")),
    };
    let at: Timestamp = text
        .parse()
        .map_err(|_| format!("`status.{key}` is not an RFC 3339 time"))?;
    if at <= now {
        return Err(format!(
            "`status.{key}` ({at}) is past already: the credential has expired"
        ));
    }
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";
    const V1: &str = "client.authentication.k8s.io/v1";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn decoded(text: &str) -> Result<Issued, String> {
        decode(text.as_bytes(), ExecApiVersion::V1, now())
    }

    #[test]
    fn a_token_with_its_expiry_and_a_certificate_without() {
        let issued = decoded(&format!(r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":{{"token":"k8s-aws-v1.abc","expirationTimestamp":"2026-01-01T00:15:00Z"}}}}"#)).unwrap();
        assert_eq!(issued.secret, Secret::Token("k8s-aws-v1.abc".into()));
        assert_eq!(
            issued.expires,
            Some("2026-01-01T00:15:00Z".parse().unwrap())
        );
        let cert = decode(
            br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"clientCertificateData":"-----BEGIN CERTIFICATE-----\nx\n","clientKeyData":"-----BEGIN EC PRIVATE KEY-----\ny\n"}}"#,
            ExecApiVersion::V1beta1,
            now(),
        )
        .unwrap();
        assert!(matches!(cert.secret, Secret::Certificate { .. }));
        assert_eq!(cert.expires, None);
    }

    #[test]
    fn hostile_output_is_refused_with_a_reason_that_quotes_nothing() {
        let secret = "SECRET-TOKEN-VALUE";
        let cases: Vec<(String, &str)> = vec![
            (
                format!(
                    r#"{{"kind":"Secret","apiVersion":"{V1}","status":{{"token":"{secret}"}}}}"#
                ),
                "is not an ExecCredential",
            ),
            (
                format!(
                    r#"{{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1","status":{{"token":"{secret}"}}}}"#
                ),
                "`apiVersion` is not client.authentication.k8s.io/v1",
            ),
            (
                format!(r#"{{"kind":"ExecCredential","apiVersion":"{V1}"}}"#),
                "has no `status` object",
            ),
            (
                format!(r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":"{secret}"}}"#),
                "has no `status` object",
            ),
            (
                format!(r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":{{}}}}"#),
                "holds neither",
            ),
            (
                format!(
                    r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":{{"token":["{secret}"]}}}}"#
                ),
                "`status.token` is not a string",
            ),
            (
                format!(
                    r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":{{"token":"{secret} x"}}}}"#
                ),
                "`status.token` holds a line break",
            ),
            (
                format!(
                    r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":{{"token":"{secret}","expirationTimestamp":"2025-12-31T23:00:00Z"}}}}"#
                ),
                "is past already",
            ),
            (
                format!(
                    r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":{{"token":"{secret}","expirationTimestamp":"tomorrow {secret}"}}}}"#
                ),
                "is not an RFC 3339 time",
            ),
            (
                format!(
                    r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":{{"clientCertificateData":"{secret}","clientKeyData":"x"}}}}"#
                ),
                "is not PEM data",
            ),
            (
                format!(
                    r#"{{"kind":"ExecCredential","apiVersion":"{V1}","status":{{"clientCertificateData":"-----BEGIN X"}}}}"#
                ),
                "without `status.clientKeyData`",
            ),
            (format!("{secret} not json"), "is not JSON"),
            (String::new(), "is empty"),
        ];
        for (text, want) in cases {
            let why = decoded(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted {text}"));
            assert!(why.contains(want), "{text}\n wanted {want}\n got {why}");
            assert!(!why.contains(secret), "{why}");
        }
        assert_eq!(
            decode(&[0xff, 0xfe, b'{'], ExecApiVersion::V1, now()).unwrap_err(),
            "is not UTF-8 text"
        );
        let huge = vec![b' '; MAX_OUTPUT + 1];
        assert!(
            decode(&huge, ExecApiVersion::V1, now())
                .unwrap_err()
                .contains("larger than 1024 KiB")
        );
        let deep = "[".repeat(100_000);
        assert!(decoded(&deep).unwrap_err().contains("is not JSON"));
    }

    #[test]
    fn a_token_request_answer_needs_both_token_and_expiry() {
        let ok: Value = serde_json::json!({"status": {"token": "minted", "expirationTimestamp": "2026-01-01T01:00:00Z"}});
        let issued = decode_token_request(&ok, now()).unwrap();
        assert_eq!(issued.secret, Secret::Token("minted".into()));
        for bad in [
            serde_json::json!({"status": {"token": "minted"}}),
            serde_json::json!({"status": {"expirationTimestamp": "2026-01-01T01:00:00Z"}}),
            serde_json::json!({"status": "minted"}),
        ] {
            let why = decode_token_request(&bad, now()).unwrap_err();
            assert!(!why.contains("minted\""), "{why}");
        }
    }
}
