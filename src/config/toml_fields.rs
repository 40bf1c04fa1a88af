//! Reads a TOML table key by key, keeping every key's position, so that one
//! pass reports *all* problems in a file (unknown keys, wrong types, bad
//! values) instead of stopping at the first one as serde would.

use std::ops::Range;

use toml_edit::{Item, Table, TableLike, Value};

use crate::config::diagnostic::{Diagnostic, SourceText};

/// A value with the byte span it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// At most this many problems are reported per file; the rest are counted.
/// A file with thousands of bad keys needs its first screen fixed first.
pub const MAX_PROBLEMS_PER_FILE: usize = 50;

/// Collects the problems of one file.
pub struct Problems<'s> {
    source: &'s SourceText,
    /// promfed.toml's `[defaults]`, when they were merged under the file:
    /// a span at or past its offset is one of theirs.
    layer: Option<Layer<'s>>,
    found: Vec<Diagnostic>,
    /// The key of each problem found, as the reading code names it (without
    /// the `defaults.` a problem of `[defaults]` is shown with).
    keys: Vec<String>,
    omitted: usize,
    /// Unknown keys found in a table below the top level, by index in
    /// `found`, with the key's own name: it may be a top-level key written
    /// after a `[table]` header, which TOML puts in that table.
    nested_unknown: Vec<(usize, String)>,
    /// The keys the top level takes.
    top_level: Vec<&'static str>,
}

impl<'s> Problems<'s> {
    pub fn new(source: &'s SourceText) -> Self {
        Self {
            source,
            layer: None,
            found: Vec::new(),
            keys: Vec::new(),
            omitted: 0,
            nested_unknown: Vec::new(),
            top_level: Vec::new(),
        }
    }

    /// Problems of a file read with `[defaults]` merged under it: each one
    /// names the file its value came from.
    pub fn layered(source: &'s SourceText, layer: Layer<'s>) -> Self {
        Self {
            layer: Some(layer),
            ..Self::new(source)
        }
    }

    pub fn at(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let d = match &self.layer {
            Some(layer) if span.start >= layer.offset => {
                layer.diagnostic(span, key, message.into())
            }
            _ => Diagnostic::at(self.source, span, Some(key), message.into()),
        };
        self.push(key, d);
    }

    /// A problem another reading of this file found (`[defaults]`, read
    /// as a cluster file).
    pub fn take(&mut self, d: Diagnostic) {
        let key = d.key.clone().unwrap_or_default();
        self.push(&key, d);
    }

    fn push(&mut self, key: &str, d: Diagnostic) {
        if self.found.len() < MAX_PROBLEMS_PER_FILE {
            self.found.push(d);
            self.keys.push(key.to_string());
        } else {
            self.omitted += 1;
        }
    }

    /// A key of the file's top level that is not there: no line to point
    /// at (a caret on line 1 would point at whatever is there), so the
    /// message says where it belongs.
    pub fn missing(&mut self, key: &str, message: impl Into<String>) {
        if self.reported(key) {
            return;
        }
        let d = Diagnostic::file(
            &self.source.path,
            Some(key),
            format!(
                "{} — add it at the top level, above the first [table]",
                message.into()
            ),
        );
        self.push(key, d);
    }

    /// A key of a table that is not there, pointing at the table's header.
    pub fn missing_in(&mut self, table: Range<usize>, key: &str, message: impl Into<String>) {
        if !self.reported(key) {
            self.at(table, key, message);
        }
    }

    /// Whether a problem was already reported for `key`. A key that is
    /// written with the wrong type is reported as that, not also as missing
    /// or as if it were absent.
    pub fn reported(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// How many problems were found so far.
    pub fn len(&self) -> usize {
        self.found.len() + self.omitted
    }

    /// Every problem, in file order, and a last line counting those left out.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        for (index, key) in std::mem::take(&mut self.nested_unknown) {
            if self.top_level.contains(&key.as_str()) {
                let d = &mut self.found[index];
                d.message = format!(
                    "`{key}` is a top-level key, but it is written after a [table] header, so TOML puts it in that table: move it above the first [table]; {}",
                    d.message
                );
            }
        }
        // This file's problems first, then those of the defaults under it.
        let own = self.source.path.clone();
        self.found.sort_by_key(|d| (d.file != own, d.position()));
        if self.omitted > 0 {
            self.found.push(Diagnostic::file(
                &self.source.path,
                None,
                format!(
                    "… and {} more problems in this file (the first {MAX_PROBLEMS_PER_FILE} are shown)",
                    self.omitted
                ),
            ));
        }
        self.found
    }
}

/// The file a merged table's high spans belong to: `[defaults]` of
/// promfed.toml, parsed so that each of its spans is `offset` past its
/// place in `source`.
pub struct Layer<'s> {
    pub source: &'s SourceText,
    pub offset: usize,
    /// The cluster file that inherits them, told in each message; `None`
    /// when `[defaults]` are read on their own.
    pub inherited_by: Option<&'s std::path::Path>,
}

impl Layer<'_> {
    fn diagnostic(&self, span: Range<usize>, key: &str, message: String) -> Diagnostic {
        let span = span.start - self.offset..span.end.saturating_sub(self.offset);
        let message = match self.inherited_by {
            Some(file) => format!(
                "{message} (inherited from [defaults] by {}: set the key there to override it, or change the default)",
                file.display()
            ),
            None => message,
        };
        Diagnostic::at(self.source, span, Some(&format!("defaults.{key}")), message)
    }
}

/// Parses a whole file into a document whose items remember their spans.
pub fn parse(source: &SourceText) -> Result<toml_edit::Document<String>, Diagnostic> {
    let parsed = toml_edit::Document::parse(source.text.clone());
    source.parsed(
        parsed
            .as_ref()
            .err()
            .map(|e| e.span().map_or(0, |s| s.start)),
    );
    parsed.map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        if message.starts_with("duplicate key") {
            if let Some(table) = header_at(&source.text, span.start) {
                return Diagnostic::at(
                    source,
                    span,
                    Some(table),
                    format!("[{table}] is written twice: each table (and each `[exporter.<job>]`, whose name is its job) may appear once in a file"),
                );
            }
        }
        Diagnostic::at(source, span, None, format!("invalid TOML: {message}"))
    })
}

/// The `[table]` header on the line of `at`, when it is a plain dotted
/// name (never a value: this names the key in a message).
fn header_at(text: &str, at: usize) -> Option<&str> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?.trim();
    let inner = line.strip_prefix('[')?.split(']').next()?.trim();
    let plain = !inner.is_empty()
        && inner.len() <= 200
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plain.then_some(inner)
}

/// One table being read. Every key taken is remembered; `finish` reports the
/// rest as unknown, naming the keys that are allowed.
pub struct Fields<'d> {
    table: &'d dyn TableLike,
    span: Range<usize>,
    prefix: String,
    allowed: Vec<&'static str>,
    /// The keys taken that are written in the table, whatever their values.
    written: Vec<&'static str>,
}

impl<'d> Fields<'d> {
    /// The top level of a document (a `Document` derefs to its table).
    pub fn root(table: &'d Table) -> Self {
        Self {
            table,
            span: 0..0,
            prefix: String::new(),
            allowed: Vec::new(),
            written: Vec::new(),
        }
    }

    /// The dotted path of a key in this table, as shown in messages.
    pub fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Whether `key` was taken and is written here, even with a bad value.
    pub fn is_written(&self, key: &str) -> bool {
        self.written.contains(&key)
    }

    /// The span of the table itself (its header), for "missing key" messages.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    fn take(&mut self, key: &'static str) -> Option<(&'d Item, Range<usize>)> {
        self.allowed.push(key);
        let (k, item) = self.table.get_key_value(key)?;
        self.written.push(key);
        let span = item
            .span()
            .or_else(|| k.span())
            .unwrap_or_else(|| self.span.clone());
        Some((item, span))
    }

    fn wrong_type(&self, p: &mut Problems, key: &str, span: Range<usize>, want: &str) {
        p.at(span, &self.path(key), format!("expected {want}"));
    }

    /// Reads `key` as a `T`; a value of another type is reported.
    pub fn get<T: FromToml>(&mut self, p: &mut Problems, key: &'static str) -> Option<Spanned<T>> {
        let (item, span) = self.take(key)?;
        match T::from_item(item) {
            Some(value) => Some(Spanned { value, span }),
            None => {
                self.wrong_type(p, key, span, T::EXPECTED);
                None
            }
        }
    }

    /// A table of string values, such as `labels = { env = "prod" }`; each
    /// entry keeps its key's span and its value's span.
    pub fn string_map(
        &mut self,
        p: &mut Problems,
        key: &'static str,
    ) -> Option<Vec<(Spanned<String>, Spanned<String>)>> {
        let mut sub = self.table(p, key)?;
        let mut out = Vec::new();
        for (name, item) in sub.table.iter() {
            let key_span = sub
                .table
                .get_key_value(name)
                .and_then(|(k, _)| k.span())
                .unwrap_or_else(|| sub.span.clone());
            let value_span = item.span().unwrap_or_else(|| key_span.clone());
            match item.as_str() {
                Some(v) => out.push((
                    Spanned {
                        value: name.to_string(),
                        span: key_span,
                    },
                    Spanned {
                        value: v.to_string(),
                        span: value_span,
                    },
                )),
                None => p.at(value_span, &sub.path(name), "expected a string"),
            }
        }
        // Every key of a free-form map is "known".
        sub.allowed.clear();
        Some(out)
    }

    /// An array of strings, such as `match = ['{job="a"}']`; each element
    /// keeps its own span. The span of the whole value comes first.
    pub fn string_list(
        &mut self,
        p: &mut Problems,
        key: &'static str,
    ) -> Option<Spanned<Vec<Spanned<String>>>> {
        let (item, span) = self.take(key)?;
        let Some(array) = item.as_array() else {
            self.wrong_type(p, key, span, "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, value) in array.iter().enumerate() {
            let value_span = value.span().unwrap_or_else(|| span.clone());
            match value.as_str() {
                Some(v) => out.push(Spanned {
                    value: v.to_string(),
                    span: value_span,
                }),
                None => p.at(
                    value_span,
                    &format!("{}[{i}]", self.path(key)),
                    "expected a string",
                ),
            }
        }
        Some(Spanned { value: out, span })
    }

    /// A sub-table, either `[section]` or an inline `{ … }`.
    pub fn table(&mut self, p: &mut Problems, key: &'static str) -> Option<Fields<'d>> {
        let (item, span) = self.take(key)?;
        match item.as_table_like() {
            Some(table) => Some(Fields {
                table,
                span,
                prefix: format!("{}{key}.", self.prefix),
                allowed: Vec::new(),
                written: Vec::new(),
            }),
            None => {
                self.wrong_type(p, key, span, "a table");
                None
            }
        }
    }

    /// Whether `key` is written here as a table (`[a.b]` or `{ … }`),
    /// without taking it: a key that takes two forms asks first.
    pub fn is_table_like(&self, key: &str) -> bool {
        self.table.get(key).is_some_and(|item| item.is_table_like())
    }

    /// Every sub-table of the table `key`, by its own name, such as each
    /// `[exporter.<job>]`: the names are the operator's, so every one is
    /// known. A value under `key` that is not a table is reported.
    pub fn tables(
        &mut self,
        p: &mut Problems,
        key: &'static str,
    ) -> Vec<(Spanned<String>, Fields<'d>)> {
        let Some(mut outer) = self.table(p, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let prefix = outer.prefix.clone();
        for (name, item) in outer.table.iter() {
            let key_span = outer
                .table
                .get_key_value(name)
                .and_then(|(k, _)| k.span())
                .unwrap_or_else(|| outer.span.clone());
            match item.as_table_like() {
                Some(table) => out.push((
                    Spanned {
                        value: name.to_string(),
                        span: key_span.clone(),
                    },
                    Fields {
                        table,
                        span: item.span().unwrap_or(key_span),
                        prefix: format!("{prefix}{name}."),
                        allowed: Vec::new(),
                        written: Vec::new(),
                    },
                )),
                None => p.at(key_span, &outer.path(name), "expected a table"),
            }
        }
        outer.allowed.clear();
        out
    }

    /// Whether the table has no key at all (`[exporter.kube-dns]` alone).
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// A table whose values are each a string or a list of strings, such
    /// as `params = { module = ["http_2xx"] }`.
    pub fn string_lists_map(
        &mut self,
        p: &mut Problems,
        key: &'static str,
    ) -> Option<Vec<(Spanned<String>, Vec<String>)>> {
        let mut sub = self.table(p, key)?;
        let mut out = Vec::new();
        for (name, item) in sub.table.iter() {
            let span = item.span().unwrap_or_else(|| sub.span.clone());
            let values = match (item.as_str(), item.as_array()) {
                (Some(v), _) => Some(vec![v.to_string()]),
                (None, Some(array)) => array
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>(),
                _ => None,
            };
            match values {
                Some(values) => out.push((
                    Spanned {
                        value: name.to_string(),
                        span,
                    },
                    values,
                )),
                None => p.at(
                    span,
                    &sub.path(name),
                    "expected a string or a list of strings",
                ),
            }
        }
        sub.allowed.clear();
        Some(out)
    }

    /// Reports every key that was not taken.
    pub fn finish(self, p: &mut Problems) {
        if self.allowed.is_empty() {
            return;
        }
        for (name, item) in self.table.iter() {
            if self.allowed.contains(&name) {
                continue;
            }
            let span = self
                .table
                .get_key_value(name)
                .and_then(|(k, _)| k.span())
                .or_else(|| item.span())
                .unwrap_or_else(|| self.span.clone());
            let mut allowed = self.allowed.clone();
            allowed.sort_unstable();
            let guess =
                closest(name, &allowed).map_or(String::new(), |g| format!("; did you mean `{g}`?"));
            if !self.prefix.is_empty() && p.found.len() < MAX_PROBLEMS_PER_FILE {
                p.nested_unknown.push((p.found.len(), name.to_string()));
            }
            p.at(
                span,
                &self.path(name),
                format!("unknown key{guess} (allowed here: {})", allowed.join(", ")),
            );
        }
        if self.prefix.is_empty() {
            p.top_level = self.allowed;
        }
    }
}

/// The allowed key nearest to a misspelt one, when it is near enough to
/// be what was meant: at most a third of its letters differ.
fn closest<'a>(written: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let written = written.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| (edit_distance(&written, a), *a))
        .filter(|(d, a)| *d <= a.len() / 3)
        .min()
        .map(|(_, a)| a)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A value type `Fields::get` can read.
pub trait FromToml: Sized {
    /// What a wrong value is told it should have been.
    const EXPECTED: &'static str;
    fn from_item(item: &Item) -> Option<Self>;
}

impl FromToml for String {
    const EXPECTED: &'static str = "a string";
    fn from_item(item: &Item) -> Option<Self> {
        item.as_str().map(str::to_string)
    }
}

impl FromToml for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_item(item: &Item) -> Option<Self> {
        item.as_bool()
    }
}

impl FromToml for i64 {
    const EXPECTED: &'static str = "a number";
    fn from_item(item: &Item) -> Option<Self> {
        item.as_integer()
    }
}

/// A value that may be a string or an integer (a port number or name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringOrInteger {
    String(String),
    Integer(i64),
}

impl FromToml for StringOrInteger {
    const EXPECTED: &'static str = "a number or a string";
    fn from_item(item: &Item) -> Option<Self> {
        match item.as_value()? {
            Value::String(s) => Some(StringOrInteger::String(s.value().clone())),
            Value::Integer(i) => Some(StringOrInteger::Integer(*i.value())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_unknown_key_and_wrong_type_at_once() {
        let src = SourceText::new(
            "c.toml",
            "a = 1\nb = \"x\"\ntypo = 2\n[s]\nx = true\nz = 1\n",
        );
        let doc = parse(&src).unwrap();
        let mut p = Problems::new(&src);
        let mut root = Fields::root(&doc);
        assert!(root.get::<String>(&mut p, "a").is_none());
        assert_eq!(root.get::<String>(&mut p, "b").unwrap().value, "x");
        let mut s = root.table(&mut p, "s").unwrap();
        assert!(s.get::<bool>(&mut p, "x").unwrap().value);
        s.finish(&mut p);
        root.finish(&mut p);
        let got: Vec<String> = p.into_sorted().iter().map(|d| d.headline()).collect();
        assert_eq!(
            got,
            [
                "c.toml:1:5: key `a`: expected a string",
                "c.toml:3:1: key `typo`: unknown key (allowed here: a, b, s)",
                "c.toml:6:1: key `s.z`: unknown key (allowed here: x)",
            ]
        );
    }

    /// A misspelt key names the one meant; a top-level key written below
    /// a `[table]` header (appended to the end of the file) says why it
    /// landed there.
    #[test]
    fn unknown_keys_say_what_was_meant_and_where_it_belongs() {
        let src = SourceText::new(
            "c.toml",
            "ca_fle = \"x\"\n[prometheus]\nurl = \"u\"\nclusters_dir = \"d\"\nurll = 1\n",
        );
        let doc = parse(&src).unwrap();
        let mut p = Problems::new(&src);
        let mut root = Fields::root(&doc);
        let _ = root.get::<String>(&mut p, "ca_file");
        let _ = root.get::<String>(&mut p, "clusters_dir");
        let mut t = root.table(&mut p, "prometheus").unwrap();
        let _ = t.get::<String>(&mut p, "url");
        t.finish(&mut p);
        root.finish(&mut p);
        let got: Vec<String> = p.into_sorted().iter().map(|d| d.headline()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].ends_with("key `ca_fle`: unknown key; did you mean `ca_file`? (allowed here: ca_file, clusters_dir, prometheus)"), "{}", got[0]);
        assert!(got[1].contains("key `prometheus.clusters_dir`: `clusters_dir` is a top-level key, but it is written after a [table] header, so TOML puts it in that table: move it above the first [table]"), "{}", got[1]);
        assert!(
            got[2].contains("key `prometheus.urll`: unknown key; did you mean `url`?"),
            "{}",
            got[2]
        );
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("ca_fle", "ca_file"), 1);
        assert_eq!(edit_distance("token_flie", "token_file"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("colour", &["labels", "name"]), None);
        assert_eq!(
            closest("Token_File", &["token_file", "ca_file"]),
            Some("token_file")
        );
    }
}
