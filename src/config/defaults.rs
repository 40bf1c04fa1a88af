//! `[defaults]` of promfed.toml: cluster-file keys and sections that every
//! cluster inherits. They are merged under each cluster file as TOML
//! (`merge`), before the file is read into its typed form, so any section a
//! cluster file takes works here too without this module knowing it.
//!
//! Spans tell the two texts apart: `[defaults]` are parsed from
//! promfed.toml's text shifted past the end of the cluster file's, so a
//! span at or past that offset is promfed.toml's (`toml_fields::Layer`).

use std::path::{Path, PathBuf};

use toml_edit::Table;

use super::diagnostic::{Diagnostic, SourceText};
use super::merge::{self, Overridden};
use super::toml_fields::{Layer, Problems};

/// The `[defaults]` in force: none, or a TOML text holding them (promfed.toml,
/// or the copy a last good definition was applied with).
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    source: Option<SourceText>,
    /// Read on their own (promfed.toml checked by itself): messages name no
    /// cluster file.
    alone: bool,
}

/// A cluster file's table with `[defaults]` merged under it.
pub struct Layered<'s> {
    pub table: Table,
    /// Where promfed.toml's spans start.
    pub offset: usize,
    pub overridden: Vec<Overridden>,
    defaults: Option<&'s SourceText>,
    own: &'s SourceText,
    alone: bool,
}

impl Layered<'_> {
    /// The problems of the merged table: each names the file its value
    /// came from.
    pub fn problems(&self) -> Problems<'_> {
        match self.defaults {
            None => Problems::new(self.own),
            Some(defaults) => Problems::layered(
                self.own,
                Layer {
                    source: defaults,
                    offset: self.offset,
                    inherited_by: (!self.alone).then_some(self.own.path.as_path()),
                },
            ),
        }
    }

    /// Where a span of the merged table was written: the file, and the
    /// 1-based line.
    pub fn origin(&self, span: std::ops::Range<usize>) -> (&Path, usize) {
        match self.defaults {
            Some(d) if span.start >= self.offset => {
                (&d.path, line_of(&d.text, span.start - self.offset))
            }
            _ => (&self.own.path, line_of(&self.own.text, span.start)),
        }
    }

    pub fn defaults_file(&self) -> Option<&Path> {
        self.defaults.map(|d| d.path.as_path())
    }
}

fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Keys that describe one cluster and so make no sense for all of them: who
/// it is, where it is, how to trust it.
const PER_CLUSTER: [(&str, &str); 6] = [
    ("name", "the cluster's name"),
    ("api_server", "the cluster's API server"),
    (
        "tls_server_name",
        "the name in one API server's certificate",
    ),
    (
        "insecure_skip_verify",
        "turning certificate checks off must be each cluster's own, written choice",
    ),
    ("federate.url", "one in-cluster Prometheus's address"),
    // Its args name the cluster (`--cluster-name prod`), and a default
    // [exec] would replace every other cluster's token_file.
    (
        "exec",
        "one cluster's credential plugin (its args name the cluster)",
    ),
];

impl Defaults {
    pub fn none() -> Defaults {
        Defaults::default()
    }

    /// `[defaults]` of promfed.toml, already parsed into `doc`. Keys that
    /// belong to one cluster are refused; whether the rest is valid is for
    /// the cluster reader to say (see `settings`).
    pub fn read(
        source: &SourceText,
        doc: &toml_edit::Document<String>,
        p: &mut Problems,
    ) -> Defaults {
        let Some(table) = doc.get("defaults").and_then(|d| d.as_table_like()) else {
            return Defaults::none();
        };
        refuse_per_cluster(table, "", p);
        Defaults {
            source: Some(source.clone()),
            alone: false,
        }
    }

    /// The same defaults, for checking them on their own.
    pub fn alone(&self) -> Defaults {
        Defaults {
            alone: true,
            ..self.clone()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_none()
    }

    /// What a last good definition keeps of them: the file they were read
    /// from, and `[defaults]` alone as TOML text.
    pub fn snapshot(&self) -> Option<(PathBuf, String)> {
        let source = self.source.as_ref()?;
        let mut doc: toml_edit::DocumentMut = source.text.parse().ok()?;
        doc.as_table_mut().retain(|k, _| k == "defaults");
        Some((source.path.clone(), doc.to_string()))
    }

    /// Defaults kept by `snapshot`.
    pub fn from_snapshot(file: PathBuf, text: String) -> Defaults {
        Defaults {
            source: Some(SourceText::new(file, text)),
            alone: false,
        }
    }

    /// Merges these defaults under a cluster file's document.
    pub fn under<'s>(
        &'s self,
        doc: toml_edit::Document<String>,
        cluster: &'s SourceText,
    ) -> Result<Layered<'s>, Diagnostic> {
        let offset = cluster.text.len() + 1;
        let mut table = doc.into_table();
        let mut layered = Layered {
            table: Table::new(),
            offset,
            overridden: Vec::new(),
            defaults: self.source.as_ref(),
            own: cluster,
            alone: self.alone,
        };
        if let Some(source) = &self.source {
            let lower = shifted_defaults(source, offset)?;
            layered.overridden = merge::under(&mut table, lower);
        }
        layered.table = table;
        Ok(layered)
    }
}

/// `[defaults]` parsed again from `source` with every span `offset` bytes
/// further on: spaces go before its first line (after a byte order mark),
/// which TOML ignores.
fn shifted_defaults(source: &SourceText, offset: usize) -> Result<Table, Diagnostic> {
    let (bom, rest) = match source.text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", source.text.as_str()),
    };
    let mut padded = String::with_capacity(offset + source.text.len());
    padded.push_str(bom);
    padded.extend(std::iter::repeat_n(' ', offset));
    padded.push_str(rest);
    let mut root = toml_edit::Document::parse(padded)
        .map_err(|e| {
            Diagnostic::file(
                &source.path,
                Some("defaults"),
                format!("[defaults] cannot be read again: {}", e.message().trim()),
            )
        })?
        .into_table();
    Ok(
        match root.remove("defaults").map(toml_edit::Item::into_table) {
            Some(Ok(t)) => t,
            _ => Table::new(),
        },
    )
}

/// Reports every key of `table` (at `prefix`) that only one cluster can
/// have: those of `PER_CLUSTER`, and every `*_file` (a relative path
/// resolves against each cluster file's folder, and credentials are one
/// cluster's own).
fn refuse_per_cluster(table: &dyn toml_edit::TableLike, prefix: &str, p: &mut Problems) {
    for (name, item) in table.iter() {
        let path = format!("{prefix}{name}");
        let span = table
            .get_key_value(name)
            .and_then(|(k, _)| k.span())
            .or_else(|| item.span())
            .unwrap_or(0..0);
        let why = PER_CLUSTER
            .iter()
            .find(|(k, _)| *k == path)
            .map(|(_, why)| *why)
            .or_else(|| {
                name.ends_with("_file").then_some(
                    "one cluster's file (a credential, or a path relative to its cluster file)",
                )
            });
        if let Some(why) = why {
            p.at(
                span,
                &format!("defaults.{path}"),
                format!("`{path}` is {why}: it cannot be a default; set it in each cluster file"),
            );
        } else if let Some(inner) = item.as_table_like() {
            refuse_per_cluster(inner, &format!("{path}."), p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: &str = "/etc/promfed/promfed.toml";

    fn defaults(text: &str) -> (Defaults, Vec<String>) {
        let source = SourceText::new(SETTINGS, text);
        let doc = super::super::toml_fields::parse(&source).unwrap();
        let mut p = Problems::new(&source);
        let d = Defaults::read(&source, &doc, &mut p);
        (d, p.into_sorted().iter().map(|d| d.headline()).collect())
    }

    #[test]
    fn keys_of_one_cluster_are_refused_where_they_are_written() {
        let (_, problems) = defaults(
            "[defaults]\nname = \"x\"\nca_file = \"ca.crt\"\ninsecure_skip_verify = true\nreceiver = \"sre\"\n[defaults.federate]\nurl = \"https://p\"\ntoken_file = \"t\"\nmatch = ['up']\n",
        );
        assert_eq!(problems.len(), 5, "{problems:#?}");
        for (problem, at) in problems.iter().zip([
            "2:1: key `defaults.name`: `name` is the cluster's name",
            "3:1: key `defaults.ca_file`: `ca_file` is one cluster's file",
            "4:1: key `defaults.insecure_skip_verify`",
            "7:1: key `defaults.federate.url`",
            "8:1: key `defaults.federate.token_file`",
        ]) {
            assert!(problem.contains(at), "{problem}\n wanted {at}");
        }
    }

    /// A plugin's args name one cluster; a TokenRequest's account may be
    /// the fleet's.
    #[test]
    fn an_exec_default_is_refused_and_a_token_request_one_is_not() {
        let (_, problems) = defaults(
            "[defaults.exec]\ncommand = \"aws\"\n[defaults.token_request]\nnamespace = \"monitoring\"\nservice_account = \"promfed\"\n",
        );
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0]
                .contains("1:11: key `defaults.exec`: `exec` is one cluster's credential plugin"),
            "{problems:?}"
        );
    }

    /// The shifted spans map back to promfed.toml's own lines and columns.
    #[test]
    fn problems_of_an_inherited_value_point_into_promfed_toml() {
        let (d, problems) =
            defaults("\u{feff}state_dir = \"s\"\n[defaults.node_exporter]\nport = 70000\n");
        assert!(problems.is_empty(), "{problems:?}");
        let cluster = SourceText::new(
            "/etc/promfed.d/a.toml",
            "[node_exporter]\nnamespace = \"m\"\n",
        );
        let doc = super::super::toml_fields::parse(&cluster).unwrap();
        let layered = d.under(doc, &cluster).unwrap();
        let mut p = layered.problems();
        let port = &layered.table["node_exporter"]["port"];
        let ns = &layered.table["node_exporter"]["namespace"];
        p.at(port.span().unwrap(), "node_exporter.port", "bad port");
        p.at(ns.span().unwrap(), "node_exporter.namespace", "bad name");
        let got: Vec<String> = p.into_sorted().iter().map(|d| d.headline()).collect();
        assert_eq!(
            got[0],
            "/etc/promfed.d/a.toml:2:13: key `node_exporter.namespace`: bad name"
        );
        assert_eq!(
            got[1],
            "/etc/promfed/promfed.toml:3:8: key `defaults.node_exporter.port`: bad port (inherited from [defaults] by /etc/promfed.d/a.toml: set the key there to override it, or change the default)"
        );
        assert_eq!(layered.origin(port.span().unwrap()).1, 3);
    }

    #[test]
    fn a_snapshot_holds_the_defaults_alone_and_reads_back_the_same() {
        let (d, _) = defaults(
            "state_dir = \"s\"\n[defaults]\nlabels = { env = \"prod\" }\n[prometheus]\nuser = \"root\"\n",
        );
        let (file, text) = d.snapshot().unwrap();
        assert_eq!(file, Path::new(SETTINGS));
        assert_eq!(text, "[defaults]\nlabels = { env = \"prod\" }\n");
        let kept = Defaults::from_snapshot(file, text);
        let cluster = SourceText::new("/c.toml", "");
        let doc = super::super::toml_fields::parse(&cluster).unwrap();
        let layered = kept.under(doc, &cluster).unwrap();
        assert_eq!(layered.table["labels"]["env"].as_str(), Some("prod"));
        assert!(defaults("state_dir = \"s\"\n").0.snapshot().is_none());
    }
}
