//! Text an API server sends back, made safe to show. A compromised or
//! broken server may echo the request's `Authorization` header in a 403 or
//! 500 body, and messages go to the terminal, the journal and status.json.

/// How much of a server's message is kept.
const MAX_CHARS: usize = 300;

/// `text` without the token's own text, without anything that looks like a
/// bearer token or a JWT, without control characters, and short.
pub fn redact(text: &str, token: Option<&str>) -> String {
    let mut text = text.to_string();
    if let Some(token) = token.filter(|t| t.len() >= 4) {
        text = text.replace(token, "[redacted]");
    }
    let mut out = String::with_capacity(text.len().min(MAX_CHARS * 4));
    let mut words = text.split_inclusive(|c: char| c.is_whitespace() || "\"',;:=".contains(c));
    while let Some(word) = words.next() {
        let bare = word.trim_end_matches(|c: char| c.is_whitespace() || "\"',;:=".contains(c));
        let tail = &word[bare.len()..];
        if bare.eq_ignore_ascii_case("bearer") {
            out.push_str(word);
            // The credential follows, after any separators.
            for next in words.by_ref() {
                let value =
                    next.trim_end_matches(|c: char| c.is_whitespace() || "\"',;".contains(c));
                if value.is_empty() {
                    out.push_str(next);
                    continue;
                }
                out.push_str("[redacted]");
                out.push_str(&next[value.len()..]);
                break;
            }
        } else if looks_like_jwt(bare) {
            out.push_str("[redacted]");
            out.push_str(tail);
        } else {
            out.push_str(word);
        }
    }
    let mut shown: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect();
    if out.chars().count() > MAX_CHARS {
        shown.push('…');
    }
    shown.trim().to_string()
}

fn looks_like_jwt(word: &str) -> bool {
    word.starts_with("eyJ") && word.matches('.').count() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_credentials_are_removed() {
        let token = "s3cr3t-t0ken-value";
        for body in [
            "forbidden: request had Authorization: Bearer s3cr3t-t0ken-value",
            "{\"headers\":{\"Authorization\":[\"Bearer s3cr3t-t0ken-value\"]}}",
            "token s3cr3t-t0ken-value is not allowed",
            "authorization=bearer  s3cr3t-t0ken-value; retry",
        ] {
            let shown = redact(body, Some(token));
            assert!(!shown.contains(token), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let shown = redact(&format!("Bearer {jwt} and again {jwt}\n"), None);
        assert_eq!(shown, "Bearer [redacted] and again [redacted]");
    }

    #[test]
    fn ordinary_messages_stay_readable_and_short() {
        let msg = "nodes is forbidden: User \"system:serviceaccount:monitoring:prometheus\" cannot list resource \"nodes\"";
        assert_eq!(redact(msg, Some("tok-abcd")), msg);
        let long = "x".repeat(10_000);
        assert_eq!(redact(&long, None).chars().count(), MAX_CHARS + 1);
        assert_eq!(redact("a\u{1b}[31mb\r\n", None), "a [31mb");
    }
}
