//! What of a kubeconfig may be shown, and how: its names with control
//! characters escaped (a name could otherwise move the terminal's cursor or
//! forge a line), its URLs without their user name or password, and a YAML
//! error without the values it quotes (a kubeconfig path pointing at
//! `/etc/shadow` parses as one long string, which the error would print).

/// `text` with every character that could change what a line says (control
/// characters, line and paragraph separators, bidirectional overrides)
/// written as an escape such as `\n` or `\u{0}`.
pub fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if is_invisible(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Whether `text` holds a character `visible` would escape.
pub fn has_invisible(text: &str) -> bool {
    text.chars().any(is_invisible)
}

fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Where the user information of `url` (`user:password@`) is, if it has
/// any: between `scheme://` and the last `@` of the authority. Read by hand
/// rather than by a URL parser, so that a URL the parser refuses is
/// redacted all the same.
fn userinfo(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let rest = url.get(start..)?;
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest.get(..authority_len)?.rfind('@')?;
    Some(start..start + at)
}

/// Whether `url` carries a user name or password.
pub fn has_userinfo(url: &str) -> bool {
    userinfo(url).is_some()
}

/// `url` to show: its user information replaced, control characters
/// escaped.
pub fn url(url: &str) -> String {
    let redacted = match userinfo(url) {
        Some(range) => {
            let (Some(head), Some(tail)) = (url.get(..range.start), url.get(range.end..)) else {
                return "[a URL that cannot be shown]".into();
            };
            format!("{head}[redacted]{tail}")
        }
        None => url.to_string(),
    };
    visible(&redacted)
}

/// A YAML error's text without what it quotes: serde quotes a value of the
/// wrong type (`invalid type: string "…", expected …`), and that value may
/// be a secret or a line of a file that is not a kubeconfig.
pub fn yaml_error(error: &str) -> String {
    let shown = match (error.find('"'), error.rfind('"')) {
        (Some(first), Some(last)) if first < last => {
            match (error.get(..first), error.get(last + 1..)) {
                (Some(head), Some(tail)) => format!("{head}(not shown){tail}"),
                _ => "it cannot be read as YAML".into(),
            }
        }
        _ => error.to_string(),
    };
    visible(&shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_urls_and_errors_lose_what_must_not_be_shown() {
        assert_eq!(visible("a\nb\0c\u{1b}[2J"), "a\\nb\\u{0}c\\u{1b}[2J");
        assert_eq!(visible("ok # \" \\ ]"), "ok # \" \\ ]");
        assert!(has_invisible("a\u{2028}b") && !has_invisible("plain"));
        assert_eq!(
            url("http://user:hunter2@proxy:3128/x@y"),
            "http://[redacted]@proxy:3128/x@y"
        );
        assert_eq!(url("https://:p%40ss@h"), "https://[redacted]@h");
        assert_eq!(url("https://h:6443"), "https://h:6443");
        assert!(has_userinfo("https://a@b") && !has_userinfo("https://b/a@c"));
        assert_eq!(
            yaml_error(
                "invalid type: string \"root:$6$x\\\"y\", expected struct Kubeconfig at line 1 column 1"
            ),
            "invalid type: string (not shown), expected struct Kubeconfig at line 1 column 1"
        );
    }
}
