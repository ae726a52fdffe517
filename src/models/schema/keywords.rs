//! The keywords of one JSON Schema object, read leniently into a [`Node`]: a keyword of the wrong type is
//! ignored instead of failing the schema, children stay raw (parsed when the generator reaches them), and
//! object members keep their order. `$ref` and `allOf` are resolved by the generator, which merges nodes
//! with [`Node::absorb`].

use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// JSON types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl Type {
    pub(super) fn named(name: &str) -> Option<Type> {
        Some(match name {
            "null" => Type::Null,
            "boolean" => Type::Boolean,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "string" => Type::String,
            "array" => Type::Array,
            "object" => Type::Object,
            _ => return None,
        })
    }
}

/// The keywords of one schema object, each kept raw: a keyword of the wrong type is ignored rather than
/// failing the whole schema.
#[derive(Deserialize, Default)]
struct Keywords<'s> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'s RawValue>,
    #[serde(borrow)]
    properties: Option<&'s RawValue>,
    #[serde(borrow)]
    required: Option<&'s RawValue>,
    #[serde(borrow)]
    items: Option<&'s RawValue>,
    #[serde(borrow, rename = "anyOf")]
    any_of: Option<&'s RawValue>,
    #[serde(borrow, rename = "oneOf")]
    one_of: Option<&'s RawValue>,
    #[serde(borrow, rename = "allOf")]
    all_of: Option<&'s RawValue>,
    #[serde(borrow, rename = "$ref")]
    reference: Option<&'s RawValue>,
    #[serde(borrow, rename = "enum")]
    enumeration: Option<&'s RawValue>,
    #[serde(borrow, rename = "const")]
    constant: Option<&'s RawValue>,
    #[serde(borrow)]
    default: Option<&'s RawValue>,
    #[serde(borrow)]
    minimum: Option<&'s RawValue>,
    #[serde(borrow)]
    maximum: Option<&'s RawValue>,
    #[serde(borrow, rename = "exclusiveMinimum")]
    exclusive_minimum: Option<&'s RawValue>,
    #[serde(borrow, rename = "exclusiveMaximum")]
    exclusive_maximum: Option<&'s RawValue>,
    #[serde(borrow, rename = "multipleOf")]
    multiple_of: Option<&'s RawValue>,
    #[serde(borrow, rename = "minItems")]
    min_items: Option<&'s RawValue>,
    #[serde(borrow, rename = "maxItems")]
    max_items: Option<&'s RawValue>,
    #[serde(borrow, rename = "uniqueItems")]
    unique_items: Option<&'s RawValue>,
    #[serde(borrow, rename = "minLength")]
    min_length: Option<&'s RawValue>,
    #[serde(borrow, rename = "maxLength")]
    max_length: Option<&'s RawValue>,
    #[serde(borrow)]
    format: Option<&'s RawValue>,
}

/// One schema, read leniently; `$ref` and `allOf` are merged in by [`Generator::node`].
#[derive(Debug, Clone, Default)]
pub(super) struct Node<'s> {
    /// Allowed types in the schema's order; empty: not said.
    pub(super) types: Vec<Type>,
    /// `false` as a schema: nothing is valid.
    pub(super) never: bool,
    pub(super) properties: Vec<(Cow<'s, str>, &'s RawValue)>,
    pub(super) required: Vec<Cow<'s, str>>,
    pub(super) items: Option<&'s RawValue>,
    /// `anyOf` then `oneOf` branches.
    pub(super) any_of: Vec<&'s RawValue>,
    pub(super) all_of: Vec<&'s RawValue>,
    pub(super) reference: Option<Cow<'s, str>>,
    pub(super) enumeration: Vec<&'s RawValue>,
    pub(super) constant: Option<&'s RawValue>,
    pub(super) default: Option<&'s RawValue>,
    /// Lower bound and whether it is exclusive.
    pub(super) minimum: Option<(f64, bool)>,
    pub(super) maximum: Option<(f64, bool)>,
    pub(super) multiple_of: Option<f64>,
    pub(super) min_items: Option<u64>,
    pub(super) max_items: Option<u64>,
    pub(super) unique_items: bool,
    pub(super) min_length: Option<u64>,
    pub(super) max_length: Option<u64>,
    pub(super) format: Option<Cow<'s, str>>,
}

/// An object's members in order (serde_json's own map sorts them).
pub(super) struct Entries<'s>(pub(super) Vec<(Cow<'s, str>, &'s RawValue)>);

/// A string, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Text<'s>(#[serde(borrow)] Cow<'s, str>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Entries<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(Text(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

pub(super) fn parse<'s, T: Deserialize<'s>>(raw: &'s RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

fn number(raw: Option<&RawValue>) -> Option<f64> {
    raw.and_then(parse::<f64>).filter(|n| n.is_finite())
}

fn count(raw: Option<&RawValue>) -> Option<u64> {
    raw.and_then(parse::<u64>)
}

fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    raw.and_then(parse::<Text<'_>>).map(|t| t.0)
}

fn list(raw: Option<&RawValue>) -> Vec<&RawValue> {
    raw.and_then(parse::<Vec<&RawValue>>).unwrap_or_default()
}

/// A bound: `minimum` (inclusive) and `exclusiveMinimum` (a number since draft 6, a flag in draft 4).
fn bound(plain: Option<&RawValue>, exclusive: Option<&RawValue>) -> Option<(f64, bool)> {
    let flag = exclusive.and_then(parse::<bool>).unwrap_or(false);
    match (number(plain), number(exclusive)) {
        (Some(p), Some(e)) => Some(if e >= p { (e, true) } else { (p, false) }),
        (Some(p), None) => Some((p, flag)),
        (None, Some(e)) => Some((e, true)),
        (None, None) => None,
    }
}

impl<'s> Node<'s> {
    pub(super) fn read(raw: &'s RawValue) -> Node<'s> {
        match raw.get().trim() {
            "false" => {
                return Node {
                    never: true,
                    ..Node::default()
                }
            }
            s if !s.starts_with('{') => return Node::default(),
            _ => {}
        }
        let Some(k) = parse::<Keywords<'s>>(raw) else {
            return Node::default();
        };
        let types = match k.kind {
            Some(kind) if kind.get().starts_with('[') => list(Some(kind))
                .into_iter()
                .filter_map(|t| text(Some(t)).and_then(|t| Type::named(&t)))
                .collect(),
            kind => text(kind)
                .and_then(|t| Type::named(&t))
                .into_iter()
                .collect(),
        };
        let properties = k
            .properties
            .and_then(parse::<Entries<'s>>)
            .map(|e| e.0)
            .unwrap_or_default();
        let required = list(k.required)
            .into_iter()
            .filter_map(|r| text(Some(r)))
            .collect();
        let mut any_of = list(k.any_of);
        any_of.extend(list(k.one_of));
        Node {
            types,
            never: false,
            properties,
            required,
            items: k.items.filter(|i| !i.get().starts_with('[')),
            any_of,
            all_of: list(k.all_of),
            reference: text(k.reference),
            enumeration: list(k.enumeration),
            constant: k.constant,
            default: k.default,
            minimum: bound(k.minimum, k.exclusive_minimum),
            maximum: bound(k.maximum, k.exclusive_maximum),
            multiple_of: number(k.multiple_of).filter(|m| *m > 0.0),
            min_items: count(k.min_items),
            max_items: count(k.max_items),
            unique_items: k.unique_items.and_then(parse::<bool>).unwrap_or(false),
            min_length: count(k.min_length),
            max_length: count(k.max_length),
            format: text(k.format),
        }
    }

    /// Adds what `other` says and `self` does not (for `allOf` and `$ref` with siblings).
    pub(super) fn absorb(&mut self, other: &Node<'s>) {
        if self.types.is_empty() {
            self.types = other.types.clone();
        } else if !other.types.is_empty() {
            let both: Vec<Type> = self
                .types
                .iter()
                .copied()
                .filter(|t| other.types.contains(t))
                .collect();
            if !both.is_empty() {
                self.types = both;
            }
        }
        self.never |= other.never;
        for (name, schema) in &other.properties {
            if !self.properties.iter().any(|(n, _)| n == name) {
                self.properties.push((name.clone(), schema));
            }
        }
        for name in &other.required {
            if !self.required.contains(name) {
                self.required.push(name.clone());
            }
        }
        fn fill<T: Clone>(mine: &mut Option<T>, theirs: &Option<T>) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
        fill(&mut self.items, &other.items);
        fill(&mut self.constant, &other.constant);
        fill(&mut self.default, &other.default);
        fill(&mut self.minimum, &other.minimum);
        fill(&mut self.maximum, &other.maximum);
        fill(&mut self.multiple_of, &other.multiple_of);
        fill(&mut self.min_items, &other.min_items);
        fill(&mut self.max_items, &other.max_items);
        fill(&mut self.min_length, &other.min_length);
        fill(&mut self.max_length, &other.max_length);
        fill(&mut self.format, &other.format);
        if self.any_of.is_empty() {
            self.any_of.clone_from(&other.any_of);
        }
        if self.enumeration.is_empty() {
            self.enumeration.clone_from(&other.enumeration);
        }
        self.unique_items |= other.unique_items;
    }

    /// Only `null` is allowed.
    pub(super) fn is_null_only(&self) -> bool {
        self.types == [Type::Null]
    }
}
