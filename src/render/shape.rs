//! The shape of a YAML document, and nothing more: which keys, lists and
//! strings it has. Numbers, booleans, dates and tags are opaque leaves, so
//! reading the shape never rewrites (`1.10` → `1.1`) or refuses (an integer
//! beyond u128) a scalar that Prometheus itself accepts. promfed reads its
//! base files this way and copies their text, not a re-serialised value.

use std::fmt;

use serde::de::{
    self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Map(Vec<(Shape, Shape)>),
    Seq(Vec<Shape>),
    Str(String),
    Null,
    /// A number, a boolean, a tagged value: kept as written, never read.
    Scalar,
}

impl Shape {
    pub fn get(&self, key: &str) -> Option<&Shape> {
        match self {
            Shape::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Shape::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Shape::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_str<E>(self, s: &str) -> Result<Shape, E> {
        Ok(Shape::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Shape, E> {
        Ok(Shape::Str(s))
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Null)
    }
    fn visit_none<E>(self) -> Result<Shape, E> {
        Ok(Shape::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        Shape::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Shape::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Shape::Map(entries))
    }
    /// A tagged value (`!!str 1.10`, `!custom x`): what is under the tag.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Shape, A::Error> {
        let (_tag, value): (de::IgnoredAny, _) = data.variant()?;
        value.newtype_variant::<Shape>().map(|_| Shape::Scalar)
    }
}

/// A YAML value read and thrown away, whatever it holds: reading past a
/// large part of a document builds nothing.
pub struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_none<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Skip, D::Error> {
        Skip::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Skip, A::Error> {
        let (_tag, value): (de::IgnoredAny, _) = data.variant()?;
        value.newtype_variant::<Skip>()
    }
}

/// The `job_name`s of a Prometheus configuration's `scrape_configs`, in
/// order. The configuration Prometheus reports is 8.7 MB at 1000 clusters:
/// a tree of it took 140 MB, and even libyaml's event list 100 MB. Block
/// YAML as Prometheus and promfed write it is scanned line by line; any
/// other layout is read through the events, keeping only the names.
pub fn scrape_job_names(yaml: &str) -> Result<Vec<String>, serde_norway::Error> {
    match scan_job_names(yaml) {
        Some(names) => Ok(names),
        None => serde_norway::from_str::<JobNames>(yaml).map(|j| j.0),
    }
}

/// The names from a block `scrape_configs:` at column 0 whose every item
/// starts `- job_name: <one-line scalar>`; `None` for anything else.
fn scan_job_names(yaml: &str) -> Option<Vec<String>> {
    let mut lines = yaml.lines().peekable();
    let mut found = false;
    let mut names = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with(['#', ' ']) || line.is_empty() || line.starts_with('-') {
            continue;
        }
        if !line.starts_with("scrape_configs:") {
            // Another top-level key; `scrape_configs` may come later.
            continue;
        }
        if found || line.trim_end() != "scrape_configs:" {
            return None; // twice, or in flow style: not this layout
        }
        found = true;
        while let Some(&item) = lines.peek() {
            if !(item.starts_with(['-', ' ', '#']) || item.is_empty()) {
                break; // the next top-level key
            }
            lines.next();
            if item.starts_with(' ') && names.is_empty() && !item.trim_start().starts_with('#') {
                return None; // an indented list, or a value of scrape_configs
            }
            if let Some(rest) = item.strip_prefix("- ") {
                let value = rest.strip_prefix("job_name: ")?;
                // A plain scalar may go on over indented lines: then the
                // next line is not `  key: ...` or `  - ...`.
                let next = lines.peek().copied().unwrap_or("");
                let continued = next.starts_with("    ")
                    || (next.starts_with("  ")
                        && !next[2..].contains(':')
                        && !next[2..].starts_with('-'));
                if continued {
                    return None;
                }
                names.push(serde_norway::from_str::<String>(value).ok()?);
            } else if item.starts_with('-') {
                return None;
            }
        }
    }
    found.then_some(names)
}

struct JobNames(Vec<String>);

impl<'de> Deserialize<'de> for JobNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JobNames, D::Error> {
        d.deserialize_any(JobNamesVisitor)
    }
}

struct JobNamesVisitor;

impl<'de> Visitor<'de> for JobNamesVisitor {
    type Value = JobNames;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Prometheus configuration")
    }
    /// The document (`scrape_configs:` is found among its keys) or one job
    /// (its `job_name`).
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JobNames, A::Error> {
        let mut names = Vec::new();
        while let Some(key) = map.next_key::<Shape>()? {
            match key.as_str() {
                Some("scrape_configs") => names = map.next_value::<JobList>()?.0,
                Some("job_name") => {
                    if let Shape::Str(name) = map.next_value::<Shape>()? {
                        names.push(name);
                    }
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(JobNames(names))
    }
    fn visit_unit<E>(self) -> Result<JobNames, E> {
        Ok(JobNames(Vec::new()))
    }
    fn visit_none<E>(self) -> Result<JobNames, E> {
        Ok(JobNames(Vec::new()))
    }
}

/// `scrape_configs`: each job read for its name alone.
struct JobList(Vec<String>);

impl<'de> Deserialize<'de> for JobList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JobList, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JobList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of scrape configs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JobList, A::Error> {
                let mut names = Vec::new();
                while let Some(job) = seq.next_element::<JobNames>()? {
                    names.extend(job.0);
                }
                Ok(JobList(names))
            }
            fn visit_unit<E>(self) -> Result<JobList, E> {
                Ok(JobList(Vec::new()))
            }
            fn visit_none<E>(self) -> Result<JobList, E> {
                Ok(JobList(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed names are those of the tree, whatever the scalars.
    #[test]
    fn job_names_read_streaming_are_those_of_the_whole_tree() {
        let text = "global: {scrape_interval: 15s, big: 1234567890123456789012345678901234567890123}\nrule_files: [a.yml]\nscrape_configs:\n- job_name: first\n  static_configs: [{targets: ['a:1'], labels: {v: !!str 1.10}}]\n  params:\n    match[]: ['{job=\"x\"}']\n- job_name: 'second'\n  relabel_configs: [{regex: '(.*)', replacement: '$1', n: 0x1F}]\n- {job_name: third, honor_labels: yes}\nalerting: {alertmanagers: [{static_configs: [{targets: ['b:2']}]}]}\n";
        let tree: Shape = serde_norway::from_str(text).unwrap();
        let from_tree: Vec<String> = match tree.get("scrape_configs") {
            Some(Shape::Seq(jobs)) => jobs
                .iter()
                .filter_map(|j| j.get("job_name")?.as_str().map(str::to_string))
                .collect(),
            _ => panic!("the sample has scrape_configs"),
        };
        assert_eq!(from_tree, ["first", "second", "third"]);
        assert_eq!(scrape_job_names(text).unwrap(), from_tree);
        // Not the scanned layout (a flow item): read through the events.
        assert_eq!(scan_job_names(text), None);
        assert_eq!(scrape_job_names("").unwrap(), Vec::<String>::new());
        assert_eq!(
            scrape_job_names("scrape_configs:\n").unwrap(),
            Vec::<String>::new()
        );
    }

    /// Block YAML as Prometheus reports it is scanned, and gives what the
    /// whole tree gives; layouts the scan cannot vouch for are left to the
    /// events.
    #[test]
    fn block_yaml_is_scanned_and_other_layouts_are_not() {
        let prometheus = "global:\n  scrape_interval: 1m\nscrape_configs:\n- job_name: promfed/a/kubelet\n  honor_timestamps: true\n  params:\n    match[]:\n    - '{job=\"x\"}'\n  relabel_configs:\n  - source_labels: [job_name]\n    regex: job_name\n- job_name: 'odd: name'\n  metrics_path: /m\n- job_name: \"quoted \\\"x\\\"\"\n# a comment\n\n- job_name: last\nalerting:\n  alertmanagers: []\n";
        let tree = |text: &str| -> Vec<String> {
            let t: Shape = serde_norway::from_str(text).unwrap();
            match t.get("scrape_configs") {
                Some(Shape::Seq(jobs)) => jobs
                    .iter()
                    .filter_map(|j| j.get("job_name")?.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let scanned = scan_job_names(prometheus).expect("block layout");
        assert_eq!(scanned, tree(prometheus));
        assert_eq!(scanned.len(), 4);
        for other in [
            // job_name not first in its item
            "scrape_configs:\n- scrape_interval: 1m\n  job_name: a\n",
            // a plain name wrapped over two lines
            "scrape_configs:\n- job_name: a very long\n    name\n  scrape_interval: 1m\n",
            // indented list
            "scrape_configs:\n  - job_name: a\n",
            // flow style
            "scrape_configs: [{job_name: a}]\n",
        ] {
            assert_eq!(scan_job_names(other), None, "{other}");
            assert_eq!(scrape_job_names(other).unwrap(), tree(other), "{other}");
        }
    }

    #[test]
    fn every_scalar_prometheus_accepts_is_an_opaque_leaf() {
        let text = "a: {version: 1.10, build: 0x1F, o: 0o17, e: 1e3, big: 123456789012345678901234567890, huger: 1234567890123456789012345678901234567890123, y: yes, t: ~, d: 2001-12-14, tagged: !!str 1.10, s: 'x'}\n";
        let shape: Shape = serde_norway::from_str(text).unwrap();
        let a = shape.get("a").unwrap();
        assert_eq!(a.get("version"), Some(&Shape::Scalar));
        assert_eq!(a.get("s"), Some(&Shape::Str("x".into())));
        assert_eq!(a.get("t"), Some(&Shape::Null));
    }
}
