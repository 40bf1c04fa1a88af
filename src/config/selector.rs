//! PromQL series selectors (`match[]` of a federation), checked as
//! Prometheus checks them: the in-cluster Prometheus would answer a bad one
//! with a 400 at every scrape, far from the file that holds it.
//!
//! `metric_name{label="value", label=~"regex", …}`: a name, matchers, or
//! both; strings in double, single or back quotes; regular expressions in
//! RE2 syntax, anchored; and at least one matcher that does not match the
//! empty string (Prometheus refuses `{job=~".*"}`: it would select every
//! series there is).

use regex::Regex;

/// Why a selector is not one; `Ok` for a valid one.
pub fn check(text: &str) -> Result<(), String> {
    let mut p = Parser {
        rest: text.trim(),
        matchers: Vec::new(),
    };
    let name = p.name();
    let named = name.is_some();
    if let Some(name) = name {
        p.matchers.push(("__name__".into(), Op::Eq, name));
    }
    p.skip_space();
    if p.rest.starts_with('{') {
        p.rest = &p.rest[1..];
        p.matchers_until_brace()?;
    } else if !named {
        return Err("a series selector starts with a metric name or `{`".into());
    }
    p.skip_space();
    if !p.rest.is_empty() {
        return Err(format!(
            "unexpected `{}` after the selector",
            p.rest.chars().take(20).collect::<String>()
        ));
    }
    let mut any_non_empty = false;
    for (label, op, value) in &p.matchers {
        let matches_empty = match op {
            Op::Eq => value.is_empty(),
            Op::Ne => !value.is_empty(),
            Op::Re | Op::NotRe => {
                let re = Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    format!(
                        "`{label}`: not a valid regular expression: {}",
                        first_line(&e.to_string())
                    )
                })?;
                re.is_match("") == (*op == Op::Re)
            }
        };
        any_non_empty |= !matches_empty;
    }
    if !any_non_empty {
        return Err(
            "at least one matcher must not match the empty string (Prometheus refuses a selector of every series)"
                .into(),
        );
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

struct Parser<'a> {
    rest: &'a str,
    matchers: Vec<(String, Op, String)>,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), if one is there.
    fn name(&mut self) -> Option<String> {
        self.identifier(true)
    }

    fn identifier(&mut self, colons: bool) -> Option<String> {
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
        let ok = |c: char| ok_first(c) || c.is_ascii_digit();
        let mut chars = self.rest.char_indices();
        match chars.next() {
            Some((_, c)) if ok_first(c) => {}
            _ => return None,
        }
        let end = chars
            .find(|(_, c)| !ok(*c))
            .map_or(self.rest.len(), |(i, _)| i);
        let (name, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(name.to_string())
    }

    fn matchers_until_brace(&mut self) -> Result<(), String> {
        loop {
            self.skip_space();
            if let Some(rest) = self.rest.strip_prefix('}') {
                self.rest = rest;
                return Ok(());
            }
            let label = self
                .identifier(false)
                .ok_or_else(|| match self.rest.chars().next() {
                    None => "`{` is never closed".to_string(),
                    Some(c) => format!("expected a label name, found `{c}`"),
                })?;
            self.skip_space();
            let op = [
                ("=~", Op::Re),
                ("!~", Op::NotRe),
                ("!=", Op::Ne),
                ("=", Op::Eq),
            ]
            .into_iter()
            .find_map(|(text, op)| {
                let rest = self.rest.strip_prefix(text)?;
                Some((rest, op))
            });
            let Some((rest, op)) = op else {
                return Err(format!("after `{label}`, expected =, !=, =~ or !~"));
            };
            self.rest = rest;
            self.skip_space();
            let value = self.string()?;
            self.matchers.push((label, op, value));
            self.skip_space();
            if let Some(rest) = self.rest.strip_prefix(',') {
                self.rest = rest;
            } else if !self.rest.starts_with('}') {
                return Err(match self.rest.chars().next() {
                    None => "`{` is never closed".into(),
                    Some(c) => format!("expected `,` or `}}`, found `{c}`"),
                });
            }
        }
    }

    /// A quoted string with Go's escapes (`\"`, `\\`, `\n`, …); back quotes
    /// take their text as it is.
    fn string(&mut self) -> Result<String, String> {
        let mut chars = self.rest.char_indices();
        let quote = match chars.next() {
            Some((_, q @ ('"' | '\'' | '`'))) => q,
            _ => return Err("a label value is a quoted string".into()),
        };
        let mut value = String::new();
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                match c {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    '\\' | '"' | '\'' => value.push(c),
                    // Kept for the regular expression: `\.`, `\d`, …
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                }
                escaped = false;
            } else if c == '\\' && quote != '`' {
                escaped = true;
            } else if c == quote {
                self.rest = &self.rest[i + c.len_utf8()..];
                return Ok(value);
            } else {
                value.push(c);
            }
        }
        Err("a quoted string is never closed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selectors_istio_operators_write_are_valid() {
        for ok in [
            r#"{job="kubernetes-pods"}"#,
            r#"{__name__=~"istio_(.*)"}"#,
            r#"{__name__=~"pilot(.*)"}"#,
            "up",
            r#"istio_requests_total{reporter="destination", source_cluster!=""}"#,
            r#"{job='a', }"#,
            "{job=`a\\.b`}",
            r#"{__name__=~"node_.+", job!~"x|y"}"#,
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn what_prometheus_refuses_is_refused_with_the_reason() {
        for (bad, why) in [
            ("", "starts with"),
            (r#"{job=~".*"}"#, "empty string"),
            (r#"{job=""}"#, "empty string"),
            (r#"{job="a""#, "never closed"),
            (r#"{job="a"#, "never closed"),
            ("{job=a}", "quoted"),
            (r#"{job=="a"}"#, "quoted"),
            (r#"{job~"a"}"#, "expected =, !=, =~ or !~"),
            (r#"{job=~"(unclosed"}"#, "regular expression"),
            (r#"{1job="a"}"#, "label name"),
            (r#"up{job="a"} offset 5m"#, "unexpected"),
            (r#"{job="a" instance="b"}"#, "expected `,`"),
            ("rate(up[5m])", "unexpected"),
        ] {
            let e = check(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
