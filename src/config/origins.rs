//! Where each value of a cluster's definition comes from: its own file or
//! promfed.toml's `[defaults]`, with the line. `promfed render CLUSTER`
//! prints it as TOML, `promfed doctor` sums it up.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::defaults::Defaults;
use super::diagnostic::{Diagnostic, SourceText};
use super::merge;

/// One written value of the merged definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Dotted path (`node_exporter.port`).
    pub key: String,
    /// The value as TOML writes it.
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
    pub inherited: bool,
}

/// A cluster file's definition with `[defaults]` under it, value by value.
#[derive(Debug)]
pub struct Origins {
    pub cluster_file: PathBuf,
    pub defaults_file: Option<PathBuf>,
    pub values: Vec<Origin>,
    /// Defaults the cluster file overrides: their keys and lines.
    pub overridden: Vec<(String, usize)>,
}

/// Reads `source` with `defaults` under it. Only the TOML is read: whether
/// the definition is valid is `Cluster::parse_with`'s to say.
pub fn of(source: &SourceText, defaults: &Defaults) -> Result<Origins, Diagnostic> {
    let doc = super::toml_fields::parse(source)?;
    let layered = defaults.under(doc, source)?;
    let values = merge::leaves(&layered.table)
        .into_iter()
        .map(|(key, name, item)| {
            let span = item.span().or_else(|| name.span()).unwrap_or(0..0);
            let inherited = layered.defaults_file().is_some() && span.start >= layered.offset;
            let (file, line) = layered.origin(span);
            Origin {
                key,
                value: shown_value(item),
                file: file.to_path_buf(),
                line,
                inherited,
            }
        })
        .collect();
    let overridden = layered
        .overridden
        .iter()
        .map(|o| {
            let line = o.span.clone().map_or(0, |s| layered.origin(s).1);
            (o.path.clone(), line)
        })
        .collect();
    Ok(Origins {
        cluster_file: source.path.clone(),
        defaults_file: layered.defaults_file().map(Path::to_path_buf),
        values,
        overridden,
    })
}

/// A value on one line, as TOML writes it; a table without keys (an
/// exporter preset) as `{}`.
fn shown_value(item: &toml_edit::Item) -> String {
    if item.is_table_like() {
        return "{}".to_string();
    }
    match item.clone().into_value() {
        Ok(v) => v.decorated("", "").to_string(),
        Err(_) => "?".to_string(),
    }
}

impl Origins {
    /// The values inherited from `[defaults]`.
    pub fn inherited(&self) -> impl Iterator<Item = &Origin> {
        self.values.iter().filter(|o| o.inherited)
    }

    /// The definition as TOML (dotted keys), each value followed by the
    /// file and line it comes from.
    pub fn to_toml(&self, name: &str) -> String {
        let mut out = format!("# cluster {name}: {}", self.cluster_file.display());
        if let Some(d) = &self.defaults_file {
            let _ = write!(out, ", with [defaults] of {}", d.display());
        }
        out.push_str(
            "\n# keys not shown have their built-in defaults (README, \"A cluster file\")\n",
        );
        let width = self
            .values
            .iter()
            .map(|o| o.key.len() + o.value.len() + 3)
            .max()
            .unwrap_or(0);
        for o in &self.values {
            let line = format!("{} = {}", o.key, o.value);
            let from = if o.inherited { ", [defaults]" } else { "" };
            let _ = writeln!(
                out,
                "{line:width$}  # {}:{}{from}",
                o.file.display(),
                o.line
            );
        }
        for (key, line) in &self.overridden {
            let _ = writeln!(out, "# overrides [defaults] {key} (line {line})");
        }
        out
    }

    /// One line for doctor: what is inherited, and what is overridden.
    pub fn summary(&self) -> String {
        let inherited: Vec<String> = self
            .inherited()
            .map(|o| format!("{} = {} (line {})", o.key, o.value, o.line))
            .collect();
        let mut out = if inherited.is_empty() {
            "nothing inherited from [defaults]".to_string()
        } else {
            format!("from [defaults]: {}", inherited.join(", "))
        };
        if !self.overridden.is_empty() {
            let keys: Vec<&str> = self.overridden.iter().map(|(k, _)| k.as_str()).collect();
            let _ = write!(out, "; the cluster file overrides {}", keys.join(", "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_fields::{self, Problems};
    use std::str::FromStr;

    fn defaults(text: &str) -> Defaults {
        let source = SourceText::new("/etc/promfed/promfed.toml", text);
        let doc = toml_fields::parse(&source).unwrap();
        Defaults::read(&source, &doc, &mut Problems::new(&source))
    }

    #[test]
    fn each_value_names_its_file_and_line() {
        let d = defaults(
            "state_dir = \"s\"\n[defaults]\nlabels = { team = \"sre\" }\n[defaults.node_exporter]\nnamespace = \"mon\"\nport = 9101\n[defaults.exporter.kube-state-metrics]\n",
        );
        let cluster = SourceText::new(
            "/etc/promfed.d/a.toml",
            "api_server = \"https://h\"\n[node_exporter]\nnamespace = \"kube-mon\"\n",
        );
        let o = of(&cluster, &d).unwrap();
        let shown: Vec<(&str, &str, usize, bool)> = o
            .values
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str(), o.line, o.inherited))
            .collect();
        assert_eq!(
            shown,
            [
                ("api_server", "\"https://h\"", 1, false),
                ("node_exporter.namespace", "\"kube-mon\"", 3, false),
                ("node_exporter.port", "9101", 6, true),
                ("labels.team", "\"sre\"", 3, true),
                ("exporter.kube-state-metrics", "{}", 7, true),
            ]
        );
        assert_eq!(o.values[2].file, Path::new("/etc/promfed/promfed.toml"));
        assert_eq!(o.overridden, [("node_exporter.namespace".to_string(), 5)]);
        let toml = o.to_toml("a");
        assert!(
            toml.contains("node_exporter.port = 9101")
                && toml.contains("# /etc/promfed/promfed.toml:6, [defaults]"),
            "{toml}"
        );
        // What is printed reads back as TOML.
        let body: String = toml
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(toml_edit::DocumentMut::from_str(&body).is_ok(), "{body}");
        assert_eq!(
            o.summary(),
            "from [defaults]: node_exporter.port = 9101 (line 6), labels.team = \"sre\" (line 3), exporter.kube-state-metrics = {} (line 7); the cluster file overrides node_exporter.namespace"
        );
    }
}
