//! Adding promfed's jobs to the operator's base file without rewriting it:
//! the base's text is copied as written (comments, quoting, `1.10`, `0x1F`
//! and all), and the generated items are appended to its top-level list.

/// What the base holds under the list's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Absent,
    /// `key:` with nothing, `~` or `null`.
    Null,
    /// `key: []`.
    EmptyFlow,
    /// `key:` followed by `- …` items.
    Block,
}

/// `text` with `items` (a block sequence, its `- ` at column 0) appended to
/// the top-level list `key`.
pub fn append_to_list(
    text: &str,
    key: &str,
    kind: ListKind,
    items: &str,
) -> Result<String, String> {
    if items.is_empty() {
        return Ok(text.to_string());
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if kind == ListKind::Absent {
        out.push_str(key);
        out.push_str(":\n");
        out.push_str(&indent(items, 2));
        return Ok(out);
    }
    let lines = line_spans(&out);
    let at = lines
        .iter()
        .position(|&(start, end)| is_key_line(&out[start..end], key))
        .ok_or_else(|| {
            format!("promfed adds its jobs to `{key}:`, which must start a line of the base's top level (block style)")
        })?;
    let (start, end) = lines[at];
    let line = &out[start..end];
    let value = strip_comment(&line[line.find(':').map_or(line.len(), |c| c + 1)..]).trim();
    // `[ ]` is `[]`.
    let empty_flow = value.starts_with('[')
        && value.ends_with(']')
        && value[1..value.len() - 1].trim().is_empty();
    let value = if empty_flow { "[]" } else { value };
    match (kind, value) {
        (ListKind::Block, "") => {
            let region_end = lines[at + 1..]
                .iter()
                .find(|&&(s, e)| ends_region(&out[s..e]))
                .map_or(out.len(), |&(s, _)| s);
            let first = lines[at + 1..]
                .iter()
                .map(|&(s, e)| &out[s..e])
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            let Some(first) = first.filter(|l| l.trim_start().starts_with('-')) else {
                return Err(flow_list(key));
            };
            let item_indent = first.len() - first.trim_start().len();
            out.insert_str(region_end, &indent(items, item_indent));
            Ok(out)
        }
        (ListKind::Null | ListKind::EmptyFlow, "" | "~" | "null" | "Null" | "NULL" | "[]") => {
            // `key: []  # note` → `key:  # note`, the items below it.
            let value_at = start + line.find(':').map_or(line.len(), |c| c + 1);
            let rest = &out[value_at..end];
            let written = strip_comment(rest).trim();
            let mut replaced = rest.replacen(written, "", usize::from(!written.is_empty()));
            if replaced.trim().is_empty() {
                replaced.clear();
            }
            out.replace_range(value_at..end, &replaced);
            let next_line = value_at + replaced.len() + 1;
            out.insert_str(next_line.min(out.len()), &indent(items, 2));
            Ok(out)
        }
        _ => Err(flow_list(key)),
    }
}

fn flow_list(key: &str) -> String {
    format!(
        "promfed adds its jobs to `{key}:`; write that list in block style, one `- job_name: …` item per job"
    )
}

/// (start, end) of every line, without its newline.
fn line_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            spans.push((start, i));
            start = i + 1;
        }
    }
    if start < text.len() {
        spans.push((start, text.len()));
    }
    spans
}

fn is_key_line(line: &str, key: &str) -> bool {
    [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            line.strip_prefix(k.as_str())
                .is_some_and(|rest| rest.trim_start_matches([' ', '\t']).starts_with(':'))
        })
}

/// A line at the top level that starts something other than the list: the
/// next key, or a document marker.
fn ends_region(line: &str) -> bool {
    match line.chars().next() {
        None | Some(' ' | '\t' | '#' | '\r') => false,
        Some('-') => line.starts_with("---"),
        Some(_) => true,
    }
}

/// A line's text before a `#` comment (a `#` after a blank, outside quotes).
fn strip_comment(text: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => return &text[..i],
            _ => {}
        }
        previous = c;
    }
    text
}

fn indent(items: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    items
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEMS: &str = "- job_name: x\n  scrape_interval: 5s\n";

    #[test]
    fn appends_to_every_way_of_writing_the_list() {
        let cases = [
            (
                "global:\n  v: 1.10\nscrape_configs:\n  - job_name: a # mine\n    static_configs: []\n# end\nrule_files: []\n",
                ListKind::Block,
                "global:\n  v: 1.10\nscrape_configs:\n  - job_name: a # mine\n    static_configs: []\n# end\n  - job_name: x\n    scrape_interval: 5s\nrule_files: []\n",
            ),
            (
                "scrape_configs:\n- job_name: a\n",
                ListKind::Block,
                "scrape_configs:\n- job_name: a\n- job_name: x\n  scrape_interval: 5s\n",
            ),
            (
                "global: {}\nscrape_configs: []  # none yet\n",
                ListKind::EmptyFlow,
                "global: {}\nscrape_configs:   # none yet\n  - job_name: x\n    scrape_interval: 5s\n",
            ),
            (
                "scrape_configs:\nglobal: {}\n",
                ListKind::Null,
                "scrape_configs:\n  - job_name: x\n    scrape_interval: 5s\nglobal: {}\n",
            ),
            (
                "global: {b: 0x1F}",
                ListKind::Absent,
                "global: {b: 0x1F}\nscrape_configs:\n  - job_name: x\n    scrape_interval: 5s\n",
            ),
        ];
        for (base, kind, expected) in cases {
            assert_eq!(
                append_to_list(base, "scrape_configs", kind, ITEMS).unwrap(),
                expected,
                "{base}"
            );
        }
    }

    #[test]
    fn a_flow_list_with_items_is_refused_with_a_way_out() {
        let why = append_to_list(
            "scrape_configs: [{job_name: a}]\n",
            "scrape_configs",
            ListKind::Block,
            ITEMS,
        )
        .unwrap_err();
        assert!(why.contains("block style"), "{why}");
        let why = append_to_list(
            "scrape_configs:\n  [{job_name: a}]\n",
            "scrape_configs",
            ListKind::Block,
            ITEMS,
        )
        .unwrap_err();
        assert!(why.contains("block style"), "{why}");
    }
}
