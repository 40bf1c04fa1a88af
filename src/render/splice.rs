//! Adding promfed's jobs to the operator's base file without rewriting it:
//! the base's text is copied as written (comments, quoting, `1.10`, `0x1F`
//! and all), and the generated items are appended to its top-level list.

use super::shape::Shape;

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

/// `text` with `label: value` added to `global.external_labels` (creating
/// either), unless `global` (its shape) has it already: the operator's own
/// value stands.
pub fn ensure_external_label(
    text: &str,
    global: Option<&Shape>,
    label: &str,
    value: &str,
) -> Result<String, String> {
    if global
        .and_then(|g| g.get("external_labels"))
        .and_then(|l| l.get(label))
        .is_some()
    {
        return Ok(text.to_string());
    }
    // A JSON string is a YAML double-quoted scalar.
    let entry = format!("{label}: {}", serde_json::Value::from(value));
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let lines = line_spans(&out);
    let Some(at) = lines
        .iter()
        .position(|&(s, e)| is_key_line(&out[s..e], "global"))
    else {
        out.push_str(&format!("global:\n  external_labels:\n    {entry}\n"));
        return Ok(out);
    };
    let cannot = || {
        format!(
            "promfed adds `{entry}` to global.external_labels; write `global:` and `external_labels:` in block style, or add it yourself"
        )
    };
    let (start, end) = lines[at];
    let value_at = start + out[start..end].find(':').map_or(end - start, |c| c + 1);
    let written = strip_comment(&out[value_at..end]).trim().to_string();
    if !matches!(written.as_str(), "" | "{}" | "~" | "null") {
        return Err(cannot());
    }
    // The region of `global:`'s children, and their indentation.
    let region = &lines[at + 1..];
    let region_len = region
        .iter()
        .position(|&(s, e)| ends_region(&out[s..e]))
        .unwrap_or(region.len());
    let region = &region[..region_len];
    let content = |&&(s, e): &&(usize, usize)| {
        let l = &out[s..e];
        !l.trim().is_empty() && !l.trim_start().starts_with('#')
    };
    let child_indent = region
        .iter()
        .find(content)
        .map_or(2, |&(s, e)| out[s..e].len() - out[s..e].trim_start().len());
    let pad = " ".repeat(child_indent);
    let labels_line = region.iter().position(|&(s, e)| {
        let l = &out[s..e];
        l.len() - l.trim_start().len() == child_indent
            && is_key_line(l.trim_start(), "external_labels")
    });
    let Some(labels_at) = labels_line else {
        // No external_labels: a new one, first among global's children.
        let insert = format!("{pad}external_labels:\n{pad}  {entry}\n");
        let cleared = clear_value(&mut out, value_at, end, &written);
        out.insert_str(cleared + 1, &insert);
        return Ok(out);
    };
    let (ls, le) = region[labels_at];
    let value_at = ls + out[ls..le].find(':').map_or(le - ls, |c| c + 1);
    let labels_written = strip_comment(&out[value_at..le]).trim().to_string();
    if labels_written.starts_with('{') && labels_written.ends_with('}') && labels_written != "{}" {
        let brace = value_at + out[value_at..le].find('{').expect("a flow map");
        out.insert_str(brace + 1, &format!("{entry}, "));
        return Ok(out);
    }
    if !matches!(labels_written.as_str(), "" | "{}" | "~" | "null") {
        return Err(cannot());
    }
    let label_indent = region[labels_at + 1..]
        .iter()
        .take_while(|&&(s, e)| {
            let l = &out[s..e];
            !content(&&(s, e)) || l.len() - l.trim_start().len() > child_indent
        })
        .find(content)
        .map_or(child_indent + 2, |&(s, e)| {
            out[s..e].len() - out[s..e].trim_start().len()
        });
    let cleared = clear_value(&mut out, value_at, le, &labels_written);
    out.insert_str(
        cleared + 1,
        &format!("{}{entry}\n", " ".repeat(label_indent)),
    );
    Ok(out)
}

/// Removes an empty value written after a key (`{}`, `~`, `null`), so that
/// block children can follow; returns where the line now ends.
fn clear_value(out: &mut String, value_at: usize, end: usize, written: &str) -> usize {
    if written.is_empty() {
        return end;
    }
    let rest = out[value_at..end].replacen(written, "", 1);
    let rest = if rest.trim().is_empty() {
        String::new()
    } else {
        rest
    };
    out.replace_range(value_at..end, &rest);
    value_at + rest.len()
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

    fn with_replica(base: &str) -> Result<String, String> {
        let shape: Shape = serde_norway::from_str(base).unwrap();
        ensure_external_label(base, shape.get("global"), "replica", "mon-b")
    }

    /// Every way a base may hold (or lack) global.external_labels gets the
    /// label once, as YAML that means what it says.
    #[test]
    fn adds_the_replica_label_wherever_global_is_written() {
        let cases = [
            (
                "scrape_configs: []\n",
                "scrape_configs: []\nglobal:\n  external_labels:\n    replica: \"mon-b\"\n",
            ),
            (
                "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
                "global:\n  external_labels:\n    replica: \"mon-b\"\n  scrape_interval: 15s\nscrape_configs: []\n",
            ),
            (
                "global:\n    scrape_interval: 15s # mine\n    external_labels:\n        monitor: example\n",
                "global:\n    scrape_interval: 15s # mine\n    external_labels:\n        replica: \"mon-b\"\n        monitor: example\n",
            ),
            (
                "global:\n  external_labels: {monitor: x}\n",
                "global:\n  external_labels: {replica: \"mon-b\", monitor: x}\n",
            ),
            (
                "global:\n  external_labels: {}\nrule_files: []\n",
                "global:\n  external_labels:\n    replica: \"mon-b\"\nrule_files: []\n",
            ),
            (
                "global: {}\n",
                "global:\n  external_labels:\n    replica: \"mon-b\"\n",
            ),
            (
                "global:\n",
                "global:\n  external_labels:\n    replica: \"mon-b\"\n",
            ),
        ];
        for (base, expected) in cases {
            let out = with_replica(base).unwrap();
            assert_eq!(out, expected, "{base}");
            let shape: Shape = serde_norway::from_str(&out).unwrap();
            let value = shape
                .get("global")
                .and_then(|g| g.get("external_labels"))
                .and_then(|l| l.get("replica"));
            assert_eq!(value.and_then(Shape::as_str), Some("mon-b"), "{out}");
        }
        // The operator's own replica label stands.
        let own = "global:\n  external_labels:\n    replica: a\n";
        assert_eq!(with_replica(own).unwrap(), own);
        // A flow-style global is refused with a way out.
        assert!(
            with_replica("global: {scrape_interval: 15s}\n")
                .unwrap_err()
                .contains("block style")
        );
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
