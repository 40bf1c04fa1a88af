//! Reads a TOML table key by key, keeping every key's position, so that one
//! pass reports *all* problems in a file (unknown keys, wrong types, bad
//! values) instead of stopping at the first one as serde would.

use std::ops::Range;

use toml_edit::{Item, TableLike, Value};

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
    found: Vec<Diagnostic>,
    omitted: usize,
}

impl<'s> Problems<'s> {
    pub fn new(source: &'s SourceText) -> Self {
        Self {
            source,
            found: Vec::new(),
            omitted: 0,
        }
    }

    pub fn at(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        if self.found.len() < MAX_PROBLEMS_PER_FILE {
            self.found
                .push(Diagnostic::at(self.source, span, Some(key), message.into()));
        } else {
            self.omitted += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Every problem, in file order, and a last line counting those left out.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(Diagnostic::position);
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

/// Parses a whole file into a document whose items remember their spans.
pub fn parse(source: &SourceText) -> Result<toml_edit::Document<String>, Diagnostic> {
    toml_edit::Document::parse(source.text.clone()).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        Diagnostic::at(source, span, None, format!("invalid TOML: {message}"))
    })
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
    pub fn root(doc: &'d toml_edit::Document<String>) -> Self {
        Self {
            table: doc.as_table(),
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
            p.at(
                span,
                &self.path(name),
                format!("unknown key (allowed here: {})", allowed.join(", ")),
            );
        }
    }
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
}
