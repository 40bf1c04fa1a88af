//! The deep merge of two TOML tables, as `[defaults]` sit under a cluster
//! file: tables merge key by key, any other value of the upper table
//! replaces the lower one's whole (an array is not appended to). Items keep
//! their spans, so every value still tells where it was written. Nothing
//! here knows a cluster file's keys.

use std::ops::Range;

use toml_edit::{Item, Key, Table};

/// A value of the lower table that the upper one replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overridden {
    /// Dotted path, as messages name keys (`node_exporter.port`).
    pub path: String,
    /// Where the replaced value is written.
    pub span: Option<Range<usize>>,
}

/// Merges `lower` under `upper`; returns the lower values that `upper`
/// overrides.
pub fn under(upper: &mut Table, lower: Table) -> Vec<Overridden> {
    let mut overridden = Vec::new();
    merge(upper, lower, "", &mut overridden);
    overridden
}

fn merge(upper: &mut Table, mut lower: Table, prefix: &str, out: &mut Vec<Overridden>) {
    let keys: Vec<String> = lower.iter().map(|(k, _)| k.to_string()).collect();
    for name in keys {
        let Some((key, item)) = lower.remove_entry(&name) else {
            continue;
        };
        let path = format!("{prefix}{name}");
        match upper.get_mut(&name) {
            None => {
                upper.insert_formatted(&key, item);
            }
            Some(mine) if mine.is_table_like() && item.is_table_like() => {
                let (Some(inner), Ok(theirs)) = (as_table(mine), item.into_table()) else {
                    continue;
                };
                merge(inner, theirs, &format!("{path}."), out);
            }
            Some(_) => out.push(Overridden {
                span: item.span().or_else(|| key.span()),
                path,
            }),
        }
    }
}

/// The table an item holds, an inline table made a table first (its
/// values keep their spans; only the braces' own span is lost).
fn as_table(item: &mut Item) -> Option<&mut Table> {
    if let Item::Value(toml_edit::Value::InlineTable(_)) = item {
        let taken = std::mem::take(item);
        *item = taken.into_table().map_or_else(|i| i, Item::Table);
    }
    item.as_table_mut()
}

/// Every value of a merged table that is not itself a table holding keys,
/// with its dotted path and the key that names it, in the table's order.
pub fn leaves(table: &Table) -> Vec<(String, &Key, &Item)> {
    let mut out = Vec::new();
    collect(table, "", &mut out);
    out
}

fn collect<'t>(
    table: &'t dyn toml_edit::TableLike,
    prefix: &str,
    out: &mut Vec<(String, &'t Key, &'t Item)>,
) {
    for (name, item) in table.iter() {
        let Some((key, _)) = table.get_key_value(name) else {
            continue;
        };
        let path = format!("{prefix}{}", shown_key(name));
        // A table without keys (an exporter preset) is a value of its own.
        match item.as_table_like().filter(|t| !t.is_empty()) {
            Some(inner) => collect(inner, &format!("{path}."), out),
            None => out.push((path, key, item)),
        }
    }
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
pub fn shown_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        name.to_string()
    } else {
        toml_edit::Value::from(name).to_string().trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml_edit::Document::parse(text.to_string())
            .unwrap()
            .into_table()
    }

    /// The merged table, written out as `path = value` lines.
    fn flat(t: &Table) -> Vec<String> {
        leaves(t)
            .into_iter()
            .map(|(path, _, item)| {
                format!(
                    "{path} = {}",
                    item.as_value().unwrap().clone().decorated("", "")
                )
            })
            .collect()
    }

    #[test]
    fn tables_merge_deeply_and_the_upper_value_wins() {
        let mut upper = table("labels = { team = \"a\" }\n[node_exporter]\nport = 9101\n");
        let lower = table(
            "labels = { env = \"prod\", team = \"z\" }\n[node_exporter]\nport = 9100\nnamespace = \"mon\"\n[pods]\nenabled = true\n",
        );
        let overridden = under(&mut upper, lower);
        assert_eq!(
            flat(&upper),
            [
                "labels.team = \"a\"",
                "labels.env = \"prod\"",
                "node_exporter.port = 9101",
                "node_exporter.namespace = \"mon\"",
                "pods.enabled = true",
            ]
        );
        let paths: Vec<&str> = overridden.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["labels.team", "node_exporter.port"]);
    }

    #[test]
    fn an_array_or_a_scalar_replaces_whatever_was_under_it() {
        let mut upper = table("[pods]\nnamespaces = [\"b\"]\n[federate]\nmatch = \"up\"\n");
        let lower = table("[pods]\nnamespaces = [\"a\", \"c\"]\n[federate]\nmatch = { x = 1 }\n");
        under(&mut upper, lower);
        assert_eq!(
            flat(&upper),
            ["pods.namespaces = [\"b\"]", "federate.match = \"up\""]
        );
    }

    #[test]
    fn enabled_false_in_the_upper_table_turns_an_inherited_section_off() {
        let mut upper = table("[exporter.traefik]\nenabled = false\n");
        let lower = table(
            "[exporter.traefik]\nnamespace = \"traefik\"\nenabled = true\n[exporter.kube-dns]\n",
        );
        under(&mut upper, lower);
        let t = upper["exporter"]["traefik"].as_table().unwrap();
        assert_eq!(t["enabled"].as_bool(), Some(false));
        assert_eq!(t["namespace"].as_str(), Some("traefik"));
        assert!(upper["exporter"]["kube-dns"].is_table());
    }

    /// Every value keeps the span it had in its own text.
    #[test]
    fn values_keep_their_spans_from_both_texts() {
        let upper_text = "labels = { team = \"a\" }\n";
        let lower_text = "[labels]\nenv = \"prod\"\n";
        let mut upper = table(upper_text);
        under(&mut upper, table(lower_text));
        let spans: Vec<(String, &str)> = leaves(&upper)
            .into_iter()
            .map(|(path, _, item)| (path, item.span().unwrap()))
            .map(|(path, span)| {
                let text = if path == "labels.team" {
                    upper_text
                } else {
                    lower_text
                };
                (path, &text[span])
            })
            .collect();
        assert_eq!(
            spans,
            [
                ("labels.team".to_string(), "\"a\""),
                ("labels.env".to_string(), "\"prod\"")
            ]
        );
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted() {
        assert_eq!(shown_key("kube-state-metrics"), "kube-state-metrics");
        assert_eq!(
            shown_key("app.kubernetes.io/name"),
            "\"app.kubernetes.io/name\""
        );
    }
}
