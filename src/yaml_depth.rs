//! A guard for YAML that promfed parses from the operator's files (base
//! files, kubeconfigs): refused before the parser, when it would take hours.

/// How deep `[…]` and `{…}` may nest. libyaml's scanner is
/// quadratic in open flow levels (100,000 took 35 s) before the parser's
/// own recursion limit is reached, so deeper files are refused first.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Where flow collections first nest deeper than `MAX_FLOW_DEPTH`, found in
/// one pass that skips comments and quoted scalars.
pub fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut previous = '\n';
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '#') if previous.is_whitespace() => {
                while chars.next_if(|&(_, c)| c != '\n').is_some() {}
            }
            (None, '"' | '\'') if previous.is_whitespace() || "[{,:".contains(previous) => {
                quote = Some(c)
            }
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(at);
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_found_and_quotes_and_comments_do_not_count() {
        let deep = format!("a: {}\n", "[".repeat(100_000));
        assert_eq!(too_deep(&deep), Some(3 + MAX_FLOW_DEPTH));
        let quoted = format!(
            "a: \"{}\"\nb: '{}' # {}\n",
            "[".repeat(200),
            "{".repeat(200),
            "[".repeat(200)
        );
        assert_eq!(too_deep(&quoted), None);
        assert_eq!(too_deep("regex: \"a\\\"[[[\"\nx: [[1], {a: [2]}]\n"), None);
    }
}
