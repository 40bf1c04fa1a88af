//! The generated configurations: the operator's base file plus what every
//! cluster adds. Pure: the same inputs give the same bytes.

mod alertmanager;
mod federate;
pub mod files;
mod jobs;
mod memo;
mod scrape_config;
pub mod shape;
mod splice;

pub use alertmanager::{ClusterRoute, alertmanager_config};

use serde_norway::{Mapping, Value};
use shape::Shape;
use splice::ListKind;

use crate::config::cluster::Cluster;
use crate::config::diagnostic::{Diagnostic, SourceText};
use crate::config::settings::Settings;

/// A rendered configuration that nothing has checked yet. Only this module
/// makes one; the gate is the only way on from here.
#[derive(Debug)]
pub struct Candidate {
    text: String,
    /// The files the text names, for the gate.
    files: Vec<files::NamedFile>,
}

impl Candidate {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn files(&self) -> &[files::NamedFile] {
        &self.files
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// How deep `[…]` and `{…}` may nest in a base file. libyaml's scanner is
/// quadratic in open flow levels (100,000 took 35 s) before the parser's
/// own recursion limit is reached, so deeper files are refused first.
const MAX_FLOW_DEPTH: usize = 64;

/// Where flow collections first nest deeper than `MAX_FLOW_DEPTH`, found in
/// one pass that skips comments and quoted scalars.
fn too_deep(text: &str) -> Option<usize> {
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

/// An operator's base file (Prometheus or Alertmanager), parsed and checked
/// to be a YAML mapping.
#[derive(Debug, Clone)]
pub struct Base {
    source: SourceText,
    /// Keys, lists and strings only: scalars are never read, so never
    /// rewritten; the generated file copies the text.
    shape: Shape,
}

impl Base {
    pub fn load(path: &std::path::Path) -> Result<Base, Diagnostic> {
        let text = crate::fsutil::read_regular(path, crate::fsutil::MAX_BASE_FILE)
            .and_then(|b| String::from_utf8(b).map_err(|_| std::io::ErrorKind::InvalidData.into()))
            .map_err(|e| Diagnostic::file(path, None, format!("cannot read the base file: {e}")))?;
        Self::parse(SourceText::new(path, text))
    }

    pub fn parse(source: SourceText) -> Result<Base, Diagnostic> {
        if let Some(at) = too_deep(&source.text) {
            return Err(Diagnostic::at(
                &source,
                at..at + 1,
                None,
                format!(
                    "`[` and `{{` nest more than {MAX_FLOW_DEPTH} levels deep here; no Prometheus or Alertmanager configuration needs that"
                ),
            ));
        }
        let shape: Shape = serde_norway::from_str(&source.text).map_err(|e| {
            let at = e.location().map_or(0, |l| l.index());
            Diagnostic::at(&source, at..at + 1, None, format!("invalid YAML: {e}"))
        })?;
        if !matches!(shape, Shape::Map(_) | Shape::Null) {
            return Err(Diagnostic::at(
                &source,
                0..1,
                None,
                "the base file must be a YAML mapping (global:, route:, …)".into(),
            ));
        }
        Ok(Base { source, shape })
    }

    /// The base as a YAML value, for the Alertmanager file, which promfed
    /// changes inside (`route.routes`) and so writes anew.
    fn value(&self) -> Result<Mapping, Diagnostic> {
        match serde_norway::from_str::<Value>(&self.source.text) {
            Ok(Value::Mapping(m)) => Ok(m),
            Ok(_) => Ok(Mapping::new()),
            Err(e) => {
                let at = e.location().map_or(0, |l| l.index());
                Err(Diagnostic::at(
                    &self.source,
                    at..at + 1,
                    None,
                    format!("invalid YAML: {e}"),
                ))
            }
        }
    }

    /// A problem with a top-level key, pointing at where it is written.
    fn key_problem(&self, key: &str, message: &str) -> Diagnostic {
        let at = self.source.text.find(&format!("{key}:")).unwrap_or(0);
        Diagnostic::at(&self.source, at..at + key.len(), Some(key), message.into())
    }

    /// The header that says where a generated file comes from.
    fn header(&self, clusters_dir: &std::path::Path) -> String {
        format!(
            "# Generated by promfed from {} and the cluster files in {}.\n# Edit those instead: promfed replaces this file on every change.\n",
            self.source.path.display(),
            clusters_dir.display(),
        )
    }

    /// The generated file: a header naming where it comes from, then `body`.
    /// The generated file; `generated` are the files the generated part
    /// names (the base's own are found here).
    fn candidate(
        &self,
        body: &str,
        clusters_dir: &std::path::Path,
        generated: Vec<files::NamedFile>,
    ) -> Candidate {
        let mut named = files::in_shape(&self.shape);
        named.extend(generated);
        Candidate {
            text: format!("{}{body}", self.header(clusters_dir)),
            files: named,
        }
    }

    /// The base's own text, without a byte-order mark (the header goes
    /// first, and a BOM may only start a file).
    fn text(&self) -> &str {
        self.source.text.trim_start_matches('\u{feff}')
    }

    /// The operator's own job names.
    fn job_names(&self) -> Vec<&str> {
        match self.shape.get("scrape_configs") {
            Some(Shape::Seq(jobs)) => jobs
                .iter()
                .filter_map(|j| j.get("job_name")?.as_str())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Job names under `promfed/` belong to promfed; the base may not use them.
    fn check_job_names(&self) -> Result<(), Vec<Diagnostic>> {
        let problems: Vec<Diagnostic> = self
            .job_names()
            .into_iter()
            .filter(|name| name.starts_with("promfed/"))
            .map(|name| {
                let at = self.source.text.find(name).unwrap_or(0);
                Diagnostic::at(
                    &self.source,
                    at..at + name.len(),
                    Some("scrape_configs.job_name"),
                    format!("job name `{name}` collides with promfed's generated jobs: names starting with `promfed/` are reserved"),
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The complete Prometheus configuration for these clusters: the base's
/// text as written, with every cluster's jobs added to its `scrape_configs`.
pub fn prometheus_config(
    base: &Base,
    clusters: &[&Cluster],
    settings: &Settings,
) -> Result<Candidate, Vec<Diagnostic>> {
    let kind = match base.shape.get("scrape_configs") {
        None => ListKind::Absent,
        Some(Shape::Null) => ListKind::Null,
        Some(Shape::Seq(jobs)) if jobs.is_empty() => ListKind::EmptyFlow,
        Some(Shape::Seq(_)) => ListKind::Block,
        Some(_) => {
            return Err(vec![
                base.key_problem("scrape_configs", "must be a list of scrape configs"),
            ]);
        }
    };
    base.check_job_names()?;
    let (items, generated) = memo::jobs_yaml(clusters, settings);
    // Replicas of one cluster must be told apart where the samples meet
    // (Thanos, Mimir, VictoriaMetrics): each host labels its own.
    let text = match settings.shard.as_ref().filter(|s| s.replication >= 2) {
        Some(shard) => splice::ensure_external_label(
            base.text(),
            base.shape.get("global"),
            &shard.replica_label,
            &shard.me,
        )
        .map_err(|why| vec![base.key_problem("global", &why)])?,
        None => base.text().to_string(),
    };
    let body = splice::append_to_list(&text, "scrape_configs", kind, &items)
        .map_err(|why| vec![base.key_problem("scrape_configs", &why)])?;
    Ok(base.candidate(&body, &settings.clusters_dir, generated))
}

/// A candidate from any text, for the unit tests of the later stages.
#[cfg(test)]
pub fn candidate_for_tests(text: &str) -> Candidate {
    let files = serde_norway::from_str::<Shape>(text)
        .map(|doc| files::in_shape(&doc))
        .unwrap_or_default();
    Candidate {
        text: text.into(),
        files,
    }
}

#[cfg(test)]
mod base_tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_refused_before_yaml_sees_it_and_quotes_do_not_count() {
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
        let refused = Base::parse(SourceText::new("/b.yml", deep)).unwrap_err();
        assert!(
            refused
                .headline()
                .contains("/b.yml:1:68: `[` and `{` nest more than 64"),
            "{}",
            refused.headline()
        );
    }

    #[test]
    fn a_bom_or_an_error_beside_multibyte_text_never_panics() {
        for text in [
            "\u{feff}global:\n  scrape_interval: 15s\n",
            "\u{feff}global: [\n",
            "global:\n  é: [\n",
            "ééé: {\n",
            "scrape_configs: 3\n# ü\n",
            "x: \"\u{1F600}\n",
            "\u{feff}- a\n",
            "\u{feff}[\n",
            "é- a\n",
            "\u{feff}scrape_configs: 1\n",
            "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[é\n",
        ] {
            let shown = match Base::parse(SourceText::new("/b.yml", text)) {
                Ok(base) => base.key_problem("scrape_configs", "x").to_string(),
                Err(d) => d.to_string(),
            };
            assert!(shown.starts_with("/b.yml:"), "{shown}");
        }
    }
}

#[cfg(test)]
mod files_tests {
    use super::*;
    use crate::config::diagnostic::SourceText;

    /// The files render collects are exactly those a parse of its output
    /// finds: the gate checks them without parsing megabytes back.
    #[test]
    fn the_files_render_names_are_the_files_its_output_names() {
        let dir = tempfile::tempdir().unwrap();
        for mode in ["file_sd", "kubernetes_sd"] {
            let settings_file = dir.path().join(format!("{mode}.toml"));
            std::fs::write(
                &settings_file,
                format!(
                    "discovery = \"{mode}\"\n[prometheus]\nconfig_file = \"/p/prometheus.yml\"\nbase_file = \"/p/base.yml\"\n"
                ),
            )
            .unwrap();
            let settings = Settings::load(&settings_file).unwrap();
            let token = Cluster::parse(
                &SourceText::new("/etc/promfed.d/a.toml", "api_server = \"https://10.0.0.1:6443\"\ntoken_file = \"a/token\"\nca_file = \"a/ca.crt\"\n"),
                "a",
            )
            .unwrap()
            .cluster;
            let cert = Cluster::parse(
                &SourceText::new("/etc/promfed.d/b.toml", "api_server = \"https://10.0.0.2:6443\"\ncert_file = \"b/c.crt\"\nkey_file = \"b/c.key\"\nca_file = \"b/ca.crt\"\n[cadvisor]\nenabled = false\n"),
                "b",
            )
            .unwrap()
            .cluster;
            let base = Base::parse(SourceText::new(
                "/p/base.yml",
                "scrape_configs:\n- job_name: own\n  tls_config: {ca_file: /own/ca.crt}\n",
            ))
            .unwrap();
            let candidate = prometheus_config(&base, &[&token, &cert], &settings).unwrap();
            let doc: Shape = serde_norway::from_str(candidate.text()).unwrap();
            assert_eq!(candidate.files(), files::in_shape(&doc), "{mode}");
            assert!(
                candidate.files().len() > 10,
                "{mode}: {:?}",
                candidate.files()
            );
        }
    }
}
