//! What a diagnostic may quote of the file it is about. A caret under the
//! offending line helps with a file the operator wrote; but a cluster file
//! can be a symlink to anything (`/etc/shadow`, a key, a token), and what
//! promfed prints goes to the terminal, to status.json and to the journal,
//! which more people read than the file. So a line is quoted only when the
//! file is plausibly the operator's TOML (or YAML, for a base file) and the
//! line itself does not look like a credential; and a URL's user name and
//! password are masked in any line or value that is shown.

use std::borrow::Cow;
use std::ops::Range;

/// The language a file is written in, which decides what "plausibly the
/// operator's file" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Cluster files and promfed.toml.
    Toml,
    /// Base files.
    Yaml,
}

/// Whether any line of `text` may be quoted: the file holds at least one
/// line of its language's `key = value` (`key: value`) shape before
/// `failed_at`, the byte where parsing failed (`None`: it parsed).
pub fn file_is_plausible(text: &str, syntax: Syntax, failed_at: Option<usize>) -> bool {
    match syntax {
        // Without a single `=`, no TOML file gives a cluster or settings.
        Syntax::Toml if !text.contains('=') => false,
        Syntax::Toml if failed_at.is_none() => true,
        Syntax::Toml => lines_before(text, failed_at).any(is_toml_key_line),
        Syntax::Yaml => lines_before(text, failed_at).any(is_yaml_key_line),
    }
}

/// Whether `text` parses as TOML; where it failed if not.
pub fn toml_failure(text: &str) -> Option<usize> {
    toml_edit::Document::parse(text.to_string())
        .err()
        .map(|e| e.span().map_or(0, |s| s.start))
}

/// The lines that start before `end` (every line when `None`).
fn lines_before(text: &str, end: Option<usize>) -> impl Iterator<Item = &str> {
    let end = end.unwrap_or(text.len());
    let mut start = 0;
    text.split_inclusive('\n').take_while(move |line| {
        let before = start < end;
        start += line.len();
        before
    })
}

/// A line that is a TOML key and value on its own (`api_server = "…"`).
fn is_toml_key_line(line: &str) -> bool {
    line.contains('=')
        && toml_edit::Document::parse(line.to_string())
            .is_ok_and(|doc| doc.as_table().iter().next().is_some())
}

/// A line that is a YAML mapping key (`global:`, `- job_name: x`).
fn is_yaml_key_line(line: &str) -> bool {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
    if t.starts_with('#') {
        return false;
    }
    match t.split_once(':') {
        Some((key, rest)) => !key.is_empty() && rest.chars().next().is_none_or(char::is_whitespace),
        None => false,
    }
}

/// Whether a line looks like a credential rather than configuration: a
/// PEM armour line; a passwd, shadow or group entry (`name:…:…:…`, fields
/// that no TOML line and no YAML mapping line has); a token or key on a
/// line of its own.
pub fn looks_like_credentials(line: &str) -> bool {
    let t = line.trim();
    let pem = t.contains("-----BEGIN") || t.contains("-----END") || t.contains("PRIVATE KEY");
    let colon_fields = !t.contains('=') && t.matches(':').count() >= 3 && !t.contains(": ");
    let token = t.len() >= 32
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/_.=-".contains(c));
    pem || colon_fields || token
}

/// The byte ranges of `text` that may hold a URL's user name or password:
/// after each `://`, everything up to the last `@` before the next `://`.
/// `None` when `text` holds `user:password@` without a scheme, which
/// cannot be told apart from the rest: such a text is not shown at all.
fn userinfo_ranges(text: &str) -> Option<Vec<Range<usize>>> {
    let mut ranges = Vec::new();
    let mut pieces = text.split("://");
    let first = pieces.next().unwrap_or_default();
    if first
        .rsplit_once('@')
        .is_some_and(|(before, _)| before.contains(':'))
    {
        return None;
    }
    let mut offset = first.len();
    for piece in pieces {
        offset += "://".len();
        if let Some(at) = piece.rfind('@') {
            ranges.push(offset..offset + at);
        }
        offset += piece.len();
    }
    Some(ranges)
}

/// What stands for a masked user name and password.
const MASK: &str = "***";

/// `text` with every URL's user name and password replaced by `***`;
/// `None` when it cannot be shown safely (see `userinfo_ranges`).
pub fn mask_userinfo(text: &str) -> Option<Cow<'_, str>> {
    let ranges = userinfo_ranges(text)?;
    if ranges.is_empty() {
        return Some(Cow::Borrowed(text));
    }
    Some(Cow::Owned(apply(text, &ranges)))
}

fn apply(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.push_str(text.get(at..r.start).unwrap_or_default());
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// A line as it may be quoted, with the caret's columns moved to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub text: String,
    /// 1-based, in characters of `text`.
    pub column: usize,
    pub width: usize,
}

/// `line` ready to be quoted, the caret under bytes `caret` of it; `None`
/// when the line must not be shown.
pub fn quote(line: &str, caret: Range<usize>) -> Option<Quote> {
    if looks_like_credentials(line) {
        return None;
    }
    let ranges = userinfo_ranges(line)?;
    let text = apply(line, &ranges);
    let start = moved(&ranges, caret.start);
    let end = moved(&ranges, caret.end).max(start);
    let chars = |r: Range<usize>| text.get(r).map_or(0, |s| s.chars().count());
    Some(Quote {
        column: chars(0..start) + 1,
        width: chars(start..end).max(1),
        text,
    })
}

/// Where byte `b` of a line lands once `ranges` are masked: a byte
/// inside a masked range lands at the mask's start.
fn moved(ranges: &[Range<usize>], b: usize) -> usize {
    let (mut removed, mut added) = (0, 0);
    for r in ranges {
        if b >= r.end {
            removed += r.len();
            added += MASK.len();
        } else if b > r.start {
            return r.start - removed + added;
        } else {
            break;
        }
    }
    b - removed + added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_masked_wherever_a_scheme_precedes_it() {
        let m = |s: &str| mask_userinfo(s).map(|c| c.into_owned());
        assert_eq!(
            m("url = \"https://user:PASSWORD@host:9090/p\"").as_deref(),
            Some("url = \"https://***@host:9090/p\"")
        );
        assert_eq!(
            m("https://:PW@h a://b c://u:p@d").as_deref(),
            Some("https://***@h a://b c://***@d")
        );
        assert_eq!(
            m("labels = { owner = \"team@example.com\" }").as_deref(),
            Some("labels = { owner = \"team@example.com\" }")
        );
        // A password with a space or a slash in it is still inside.
        assert_eq!(
            m("\"https://u:pa ss/w@h\"").as_deref(),
            Some("\"https://***@h\"")
        );
        // user:password@ without a scheme: nothing of it can be shown.
        assert_eq!(m("api_server = \"user:PASSWORD@host\""), None);
    }

    #[test]
    fn the_caret_follows_the_mask() {
        let line = "url = \"https://user:PASSWORD@host\"";
        let start = line.find('"').unwrap();
        let q = quote(line, start..line.len()).unwrap();
        assert_eq!(q.text, "url = \"https://***@host\"");
        assert_eq!(q.column, 7);
        assert_eq!(q.width, "\"https://***@host\"".len());
        let plain = quote("colour = \"blue\"", 0..6).unwrap();
        assert_eq!((plain.column, plain.width), (1, 6));
    }

    #[test]
    fn credential_shaped_lines_are_never_quoted() {
        for line in [
            "root:$6$abcdefgh$0123456789abcdefABCDEF./:19000:0:99999:7:::",
            "daemon:*:19000:0:99999:7:::",
            "root:x:0:0:root:/root:/bin/bash",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        ] {
            assert!(quote(line, 0..1).is_none(), "{line}");
        }
        for line in [
            "api_server = \"https://[fe80::1:2]:6443\"",
            "  - targets: ['10.0.0.1:9100', '10.0.0.2:9100', '10.0.0.3:9100']",
            "colour = \"blue\"",
        ] {
            assert!(quote(line, 0..1).is_some(), "{line}");
        }
    }

    #[test]
    fn only_a_file_with_a_key_before_its_first_error_is_plausible() {
        let shadow = "root:$6$abc:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n";
        assert!(!file_is_plausible(
            shadow,
            Syntax::Toml,
            toml_failure(shadow)
        ));
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n";
        assert!(!file_is_plausible(token, Syntax::Toml, toml_failure(token)));
        let broken = "api_server = \"https://h\"\nx = \n";
        assert!(file_is_plausible(
            broken,
            Syntax::Toml,
            toml_failure(broken)
        ));
        let first = "x = \napi_server = \"https://h\"\n";
        assert!(!file_is_plausible(first, Syntax::Toml, toml_failure(first)));
        assert!(file_is_plausible("colour = 1\n", Syntax::Toml, None));
        assert!(!file_is_plausible("[kubelet]\n", Syntax::Toml, None));
        assert!(file_is_plausible(
            "global:\n  x: [\n",
            Syntax::Yaml,
            Some(14)
        ));
        assert!(!file_is_plausible(shadow, Syntax::Yaml, Some(0)));
    }
}
