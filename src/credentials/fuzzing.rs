//! Entry points for the fuzzer (`fuzz/`, cargo-fuzz) and the property
//! tests below: whatever a plugin prints or an API server answers a
//! TokenRequest, the decoders return a credential or an error, never
//! panic, and never quote what they refuse.

use super::exec_credential;
use crate::config::credential_source::ExecApiVersion;

/// Any bytes as a plugin's stdout (both versions) and as a TokenRequest
/// answer. An error that quotes a token-looking input is a bug.
pub fn credential_outputs(data: &[u8]) -> Result<(), String> {
    let now = jiff::Timestamp::from_second(1_800_000_000).expect("a valid time");
    for version in [ExecApiVersion::V1, ExecApiVersion::V1beta1] {
        if let Err(why) = exec_credential::decode(data, version, now) {
            quotes_nothing(&why)?;
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Err(why) = exec_credential::decode_token_request(&value, now) {
            quotes_nothing(&why)?;
        }
    }
    Ok(())
}

/// The marker the generated inputs carry as their secret.
const MARK: &str = "SECRETMARK";

fn quotes_nothing(why: &str) -> Result<(), String> {
    if why.contains(MARK) {
        Err(format!("an error quotes its input: {why}"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ExecCredential-shaped JSON with the secret marker in random places.
    fn shaped() -> impl Strategy<Value = Vec<u8>> {
        let value = prop_oneof![
            Just(format!("\"{MARK}\"")),
            Just(format!("[\"{MARK}\"]")),
            Just(format!("{{\"x\":\"{MARK}\"}}")),
            Just("12".to_string()),
            Just("null".to_string()),
            Just("\"2026-13-01T00:00:00Z\"".to_string()),
            Just("\"2020-01-01T00:00:00Z\"".to_string()),
            Just(format!("\"-----BEGIN {MARK}\"")),
        ];
        let kind = prop_oneof![Just("ExecCredential"), Just("Secret")];
        let version = prop_oneof![
            Just("client.authentication.k8s.io/v1"),
            Just("client.authentication.k8s.io/v1beta1"),
            Just("v1")
        ];
        (kind, version, value.clone(), value.clone(), value.clone(), value).prop_map(
            |(k, v, token, exp, cert, key)| {
                format!(
                    "{{\"kind\":\"{k}\",\"apiVersion\":\"{v}\",\"status\":{{\"token\":{token},\"expirationTimestamp\":{exp},\"clientCertificateData\":{cert},\"clientKeyData\":{key}}}}}"
                )
                .into_bytes()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_output_decodes_or_fails_without_quoting_it(bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            shaped(),
        ]) {
            prop_assert_eq!(credential_outputs(&bytes), Ok(()));
        }
    }
}
