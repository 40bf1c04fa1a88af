//! Problems found in the operator's files, reported as `file:line:col: key: message`
//! with the offending line and a caret, the way compilers and `visudo` do.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A file's text, kept so that byte spans can be turned into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
    /// Where each line starts, built once on the first problem: reporting
    /// stays linear however many problems a file has.
    line_starts: OnceLock<Vec<usize>>,
}

impl SourceText {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
            line_starts: OnceLock::new(),
        }
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

    /// Where a byte span starts: 1-based line and column, the line's text, and
    /// how many columns to underline.
    fn locate(&self, span: &Range<usize>) -> Location {
        let start = self.boundary(span.start);
        let starts = self.line_starts();
        let line = starts.partition_point(|&s| s <= start); // 1-based
        let line_start = starts[line - 1];
        let line_end = starts.get(line).map_or(self.text.len(), |&next| next - 1);
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let end = self.boundary(span.end.clamp(start, line_end));
        Location {
            line,
            column: self.text[line_start..start].chars().count() + 1,
            line_text: line_text.to_string(),
            width: self.text[start..end].chars().count().max(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    line: usize,
    column: usize,
    line_text: String,
    width: usize,
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
        if let Some(l) = &self.location {
            let gutter = l.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}{}",
                "",
                l.line,
                l.line_text,
                "",
                " ".repeat(l.column - 1),
                "^".repeat(l.width),
            )?;
        }
        Ok(())
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
}
