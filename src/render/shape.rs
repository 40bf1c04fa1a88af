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

#[cfg(test)]
mod tests {
    use super::*;

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
