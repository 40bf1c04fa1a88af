//! Problems found in the operator's files, reported as `file:line:col: key: message`
//! with the offending line and a caret, the way compilers and `visudo` do,
//! when the line may be shown (`quoting`: never a line of a file that is
//! not plausibly the operator's, nor one that looks like a credential, nor
//! a URL's password).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::quoting::{self, Quote, Syntax};

/// A file's text, kept so that byte spans can be turned into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
    syntax: Syntax,
    /// Where each line starts, built once on the first problem: reporting
    /// stays linear however many problems a file has.
    line_starts: OnceLock<Vec<usize>>,
    /// Whether lines of this file may be quoted at all, decided once.
    plausible: OnceLock<bool>,
}

impl SourceText {
    /// A TOML file's text (a cluster file, promfed.toml).
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
            syntax: Syntax::Toml,
            line_starts: OnceLock::new(),
            plausible: OnceLock::new(),
        }
    }

    /// The same text, read as YAML (a base file).
    pub fn yaml(mut self) -> Self {
        self.syntax = Syntax::Yaml;
        self.plausible = OnceLock::new();
        self
    }

    /// Tells what parsing found, so that deciding whether lines may be
    /// quoted does not parse the file again: `failed_at` is the byte where
    /// parsing failed, `None` when it parsed.
    pub fn parsed(&self, failed_at: Option<usize>) {
        let _ = self.plausible.set(quoting::file_is_plausible(
            &self.text,
            self.syntax,
            failed_at,
        ));
    }

    fn is_plausible(&self) -> bool {
        *self.plausible.get_or_init(|| {
            let failed_at = match self.syntax {
                Syntax::Toml => quoting::toml_failure(&self.text),
                // Base files tell `parsed` where they failed; a problem
                // found after parsing judges the whole file.
                Syntax::Yaml => None,
            };
            quoting::file_is_plausible(&self.text, self.syntax, failed_at)
        })
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
    }

    /// The largest char boundary at or before `at` (spans come from parsers
    /// that may count otherwise, and a BOM is three bytes).
    fn boundary(&self, at: usize) -> usize {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    /// Where a byte span starts: 1-based line and column, and the line
    /// with its caret when it may be quoted.
    fn locate(&self, span: &Range<usize>) -> Location {
        let start = self.boundary(span.start);
        let starts = self.line_starts();
        let line = starts.partition_point(|&s| s <= start).max(1); // 1-based
        let line_start = starts.get(line - 1).copied().unwrap_or(0);
        let line_end = starts
            .get(line)
            .map_or(self.text.len(), |&next| next - 1)
            .max(start);
        let end = self.boundary(span.end.clamp(start, line_end));
        let line_text = self
            .text
            .get(line_start..line_end)
            .unwrap_or_default()
            .trim_end_matches('\r');
        let within = |at: usize| at.saturating_sub(line_start).min(line_text.len());
        let caret = within(start)..within(end);
        let quote = if self.is_plausible() {
            quoting::quote(line_text, caret)
                .map(Box::new)
                .ok_or(Hidden::Line)
        } else {
            Err(Hidden::File)
        };
        Location {
            line,
            column: self
                .text
                .get(line_start..start)
                .map_or(0, |s| s.chars().count())
                + 1,
            quote,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    line: usize,
    column: usize,
    /// The line as shown, or why it is not (boxed: every `Result` that
    /// carries a `Diagnostic` stays small).
    quote: Result<Box<Quote>, Hidden>,
}

/// Why a problem's line is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hidden {
    /// The file is not plausibly the operator's (a symlink to a shadow
    /// file, a token, a key).
    File,
    /// The line looks like a credential, or holds `user:password@`.
    Line,
}

impl Hidden {
    fn note(self) -> &'static str {
        match self {
            Hidden::File => {
                "(no line of this file is shown: it does not look like a configuration file; is it the file you meant?)"
            }
            Hidden::Line => "(the line is not shown: it may hold a credential)",
        }
    }
}

/// One problem in one file. `key` is the dotted key path (`node_exporter.port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    location: Option<Location>,
    pub key: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// A problem at a place in a file.
    pub fn at(source: &SourceText, span: Range<usize>, key: Option<&str>, message: String) -> Self {
        Self {
            file: source.path.clone(),
            location: Some(source.locate(&span)),
            key: key.map(str::to_string),
            message,
        }
    }

    /// A problem with a whole file (unreadable, or a cross-file conflict).
    pub fn file(path: &Path, key: Option<&str>, message: String) -> Self {
        Self {
            file: path.to_path_buf(),
            location: None,
            key: key.map(str::to_string),
            message,
        }
    }

    /// Line and column, for reporting a file's problems in file order; a
    /// problem with the whole file comes first.
    pub fn position(&self) -> (usize, usize) {
        self.location
            .as_ref()
            .map_or((0, 0), |l| (l.line, l.column))
    }

    /// The one-line form used in logs and `status.json`.
    pub fn headline(&self) -> String {
        let mut out = self.file.display().to_string();
        if let Some(l) = &self.location {
            out.push_str(&format!(":{}:{}", l.line, l.column));
        }
        if let Some(key) = &self.key {
            out.push_str(&format!(": key `{key}`"));
        }
        out.push_str(&format!(": {}", self.message));
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.headline())?;
        match self.location.as_ref().map(|l| (l.line, &l.quote)) {
            Some((line, Ok(q))) => {
                let gutter = line.to_string().len();
                write!(
                    f,
                    "\n{:gutter$} |\n{line} | {}\n{:gutter$} | {}{}",
                    "",
                    q.text,
                    "",
                    " ".repeat(q.column.saturating_sub(1)),
                    "^".repeat(q.width),
                )
            }
            Some((_, Err(hidden))) => write!(f, "\n  {}", hidden.note()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_column_and_key() {
        let src = SourceText::new("/x/a.toml", "a = 1\napi_server = \"nope\"\n");
        let start = src.text.find("\"nope\"").unwrap();
        let d = Diagnostic::at(&src, start..start + 6, Some("api_server"), "bad URL".into());
        assert_eq!(d.headline(), "/x/a.toml:2:14: key `api_server`: bad URL");
        let shown = d.to_string();
        assert!(
            shown.ends_with("2 | api_server = \"nope\"\n  |              ^^^^^^"),
            "{shown}"
        );
    }

    #[test]
    fn a_file_that_is_not_toml_is_named_but_never_quoted() {
        let src = SourceText::new("/x/a.toml", "root:$6$abc:19000:0:99999:7:::\n");
        let d = Diagnostic::at(&src, 4..5, None, "invalid TOML".into());
        let shown = d.to_string();
        assert!(
            shown.starts_with("/x/a.toml:1:5: invalid TOML\n  (no line of this file is shown")
                && !shown.contains("19000"),
            "{shown}"
        );
    }

    #[test]
    fn a_password_in_a_quoted_line_is_masked_under_the_same_caret() {
        let text = "a = 1\nurl = \"https://u:SECRET@h\"\n";
        let src = SourceText::new("/x/a.toml", text);
        let start = text.find("\"https").unwrap();
        let d = Diagnostic::at(&src, start..text.len() - 1, Some("url"), "no".into());
        assert_eq!(d.headline(), "/x/a.toml:2:7: key `url`: no");
        let masked = "\"https://***@h\"";
        let expected = format!("2 | url = {masked}\n  |       {}", "^".repeat(masked.len()));
        assert!(d.to_string().ends_with(&expected), "{d}");
    }
}
