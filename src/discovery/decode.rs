//! JSON from an API server into promfed's types, with errors that name the
//! field and the type expected but never quote the server's value: serde's
//! own messages do (`invalid type: string "Bearer …", expected …`), and a
//! server may echo the request's credentials into any field.
//!
//! Also the one rule for what Go marshals as `null`: a list or map field
//! without `omitempty` arrives as `null` when it is empty, and an optional
//! one may be absent; both decode as empty (`null_as_empty`).

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};

/// Decodes `bytes`; the error is safe to show.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| describe(&shown_path(e.path()), e.inner()))?;
    json.end().map_err(|e| describe("", &e))?;
    Ok(value)
}

/// Decodes an already parsed value (a watch event's object).
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| describe(&shown_path(e.path()), e.inner()))
}

/// `null` or absent as `T::default()` (an empty list or map), otherwise `T`.
pub fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// What went wrong, where, in promfed's words and serde's fixed ones.
fn describe(path: &str, e: &serde_json::Error) -> String {
    let at = match path {
        "" => String::new(),
        p => format!(" at `{p}`"),
    };
    let position = match e.line() {
        0 => String::new(),
        line => format!(" (line {line}, column {})", e.column()),
    };
    let what = match e.classify() {
        serde_json::error::Category::Data => shape(&message_of(e)),
        // serde_json's syntax and end-of-input messages are fixed words.
        _ => message_of(e),
    };
    format!("{what}{at}{position}")
}

/// serde_json's message without its own ` at line L column C`.
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// A data error's message with the value taken out: serde says
/// `invalid type: <found> <value>, expected <what>` and `invalid value:
/// <found> <value>, expected <what>`, and the expected part is promfed's
/// own types' words. A message of another shape is not shown at all.
fn shape(message: &str) -> String {
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, what)| what.to_string());
    for (prefix, says) in [("invalid type: ", "type"), ("invalid value: ", "value")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let found = rest.split([' ', ',']).next().unwrap_or_default();
            let found = match found {
                "string" | "integer" | "floating" | "boolean" | "null" | "map" | "sequence"
                | "unit" | "character" | "byte" => found,
                _ => "something else",
            };
            let a = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            return match expected {
                Some(what) => format!("{a} {found} where {what} was expected"),
                None => format!("{a} {found} of the wrong {says}"),
            };
        }
    }
    if message.starts_with("missing field ") {
        // The field's name is promfed's own.
        return message.to_string();
    }
    match expected {
        Some(what) => format!("a value where {what} was expected"),
        None => "a value promfed cannot read".to_string(),
    }
}

/// A field path, e.g. `items[3].metadata.name`. Struct fields and map
/// keys look alike to serde, and a map's keys are the server's text (a
/// label's key may be anything): a segment that is not a plain field name
/// is shown as `?`.
fn shown_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut shown = String::new();
    for segment in path.iter().take(32) {
        match segment {
            Segment::Seq { index } => shown.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_field(&mut shown, key),
            Segment::Enum { variant } => push_field(&mut shown, variant),
            Segment::Unknown => push_field(&mut shown, "?"),
        }
    }
    shown
}

/// Kubernetes field names are short words in camelCase.
fn push_field(shown: &mut String, name: &str) {
    if !shown.is_empty() {
        shown.push('.');
    }
    let plain = name.len() <= 40 && name.chars().all(|c| c.is_ascii_alphabetic());
    shown.push_str(if plain { name } else { "?" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Meta {
        name: String,
        #[serde(default, deserialize_with = "null_as_empty")]
        labels: std::collections::BTreeMap<String, String>,
        port: Option<u16>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        metadata: Meta,
        #[serde(default, deserialize_with = "null_as_empty")]
        ports: Vec<u16>,
    }

    const SECRET: &str = "s3cr3t-T0KEN";

    #[test]
    fn errors_name_the_field_and_the_type_never_the_value() {
        for (json, says) in [
            (
                format!(r#"{{"metadata":"Bearer {SECRET}"}}"#),
                "a string where struct Meta was expected at `metadata`",
            ),
            (
                format!(r#"{{"metadata":{{"name":["Bearer {SECRET}"]}}}}"#),
                "a sequence where a string was expected at `metadata.name`",
            ),
            (
                format!(r#"{{"metadata":{{"name":"n","labels":{{"{SECRET}":7}}}}}}"#),
                "an integer where a string was expected at `metadata.labels.?`",
            ),
            (
                format!(r#"{{"metadata":{{"name":"n","port":"{SECRET}"}}}}"#),
                "a string where u16 was expected at `metadata.port`",
            ),
            (
                r#"{"metadata":{"name":"n","port":70000}}"#.to_string(),
                "an integer where u16 was expected",
            ),
            (
                format!(r#"{{"metadata":{{"name":"n"}}}} "{SECRET}""#),
                "trailing characters",
            ),
            (
                format!(r#"{{"metadata":{{"name":"n", "{SECRET}"#),
                "EOF while parsing",
            ),
        ] {
            let e = from_slice::<Item>(json.as_bytes()).unwrap_err();
            assert!(!e.contains(SECRET) && !e.contains("Bearer"), "{e}");
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn null_and_absent_lists_and_maps_are_empty() {
        for json in [
            r#"{"metadata":{"name":"n","labels":null},"ports":null}"#,
            r#"{"metadata":{"name":"n"}}"#,
        ] {
            let item: Item = from_slice(json.as_bytes()).unwrap();
            assert!(item.ports.is_empty() && item.metadata.labels.is_empty());
        }
    }

    #[test]
    fn values_decode_with_the_same_care() {
        let value = serde_json::json!({"metadata": {"name": {"x": format!("Bearer {SECRET}")}}});
        let e = from_value::<Item>(&value).unwrap_err();
        assert!(!e.contains(SECRET), "{e}");
        assert!(e.contains("at `metadata.name`"), "{e}");
    }
}
