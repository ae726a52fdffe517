//! A deterministic JSON value for a JSON Schema: what a model "generates" for function arguments and
//! structured output. Same schema, seed and words → same bytes. It knows JSON Schema, not OpenAI.
//!
//! Honoured: `type` (a name or a list; `null` only when nothing else is allowed or nesting is deep),
//! `properties` (in schema order, every one filled while nesting is shallow), `required`, `items`, `enum`,
//! `const`, `default` (used as is), `minimum` / `maximum` / `exclusiveMinimum` / `exclusiveMaximum` /
//! `multipleOf`, `minItems` / `maxItems` / `uniqueItems`, `minLength` / `maxLength`, common `format`s
//! (`date-time`, `date`, `time`, `email`, `uri`, `uuid`, `ipv4`, `hostname`), `anyOf` / `oneOf` (the first
//! non-null branch), `allOf` (merged) and local `$ref`s (`#/$defs/…`, `#/definitions/…`, `#`). Not honoured:
//! `pattern`, `not`, `if`/`then`, remote `$ref`s. Strings reuse the caller's words (the last message).
//!
//! The schema comes from a client, so the work is bounded: each subschema is parsed once (shallowly, with
//! `RawValue` children), nesting past [`MAX_DEPTH`] gives `null`, and past [`MAX_BYTES`] of output optional
//! properties and extra items are left out.

mod keywords;

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::value::RawValue;

use self::keywords::{parse, Entries, Node, Type};
use crate::ids::mix;

/// Deepest nesting of arrays and objects followed; deeper values are `null`. Recursion here runs on a
/// coroutine stack, and real tool schemas are a few levels deep.
pub const MAX_DEPTH: usize = 12;
/// From this nesting on only what is required is generated (no optional properties, `minItems` items,
/// `null` where allowed), so recursive schemas (a tree of nodes) end.
const SHALLOW_DEPTH: usize = 4;
/// `anyOf` branches entered on one path, so a branch that refers back to its own `anyOf` terminates.
const MAX_BRANCHES: usize = 16;
/// Output size past which optional properties and extra array items are left out and new values are
/// `null`: a schema asking for a million items must not cost the server memory.
pub const MAX_BYTES: usize = 64 * 1024;
/// Items in an array when the schema does not say: 1 to this many.
const MAX_FREE_ITEMS: u64 = 3;
/// Longest string padded up to `minLength`, in characters.
const MAX_STRING: u64 = 4096;
/// Tries to find an item unlike the others for `uniqueItems`.
const UNIQUE_TRIES: usize = 32;
/// Multiples tried for a `multipleOf` number before settling on the first.
const MULTIPLE_TRIES: u64 = 16;

/// splitmix64's increment (the golden ratio in 64 bits).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seeded stream of pseudo-random numbers (splitmix64): cheap, and the same seed gives the same stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix(self.0)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Mixes `text` into `seed` (FNV-1a over the bytes, then splitmix64's finalizer).
pub fn hash(seed: u64, text: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ mix(seed);
    for &b in text.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h ^ text.len() as u64)
}

/// A JSON text valid for `schema` (`None`: any value, so a string), deterministic in `seed` and `words`.
/// Separators are `", "` and `": "`, so the shared token rule splits it into several tokens.
pub fn generate(schema: Option<&RawValue>, seed: u64, words: &[&str]) -> String {
    let words = if words.is_empty() {
        FALLBACK_WORDS
    } else {
        words
    };
    let mut generator = Generator {
        root: schema,
        words,
        rng: Rng::new(seed),
        nodes: HashMap::new(),
        refs: HashMap::new(),
        branches: 0,
        out: Vec::new(),
    };
    match schema {
        Some(schema) => generator.value(schema, 0),
        None => generator.node_value(&Node::default(), 0),
    }
    // Everything written is UTF-8: whole `str`s, JSON escapes and ASCII punctuation.
    String::from_utf8(generator.out).unwrap_or_default()
}

/// Words for strings when the caller has none.
const FALLBACK_WORDS: &[&str] = &["standin", "echo", "value"];

struct Generator<'s, 'w> {
    root: Option<&'s RawValue>,
    words: &'w [&'w str],
    rng: Rng,
    /// Merged nodes by the address of their raw schema (unique within one body), so each subschema is
    /// parsed once however many items use it.
    nodes: HashMap<usize, Rc<Node<'s>>>,
    /// Resolved `$ref` targets.
    refs: HashMap<String, Option<&'s RawValue>>,
    /// `anyOf` branches entered on the current path (see [`MAX_BRANCHES`]).
    branches: usize,
    out: Vec<u8>,
}

impl<'s> Generator<'s, '_> {
    /// The schema `raw` with its `$ref` and `allOf` merged in. While a schema is being merged, reaching it
    /// again (a cycle) gives its own keywords only, so every subschema is read once.
    fn node(&mut self, raw: &'s RawValue) -> Rc<Node<'s>> {
        let key = raw.get().as_ptr() as usize;
        if let Some(node) = self.nodes.get(&key) {
            return node.clone();
        }
        let mut node = Node::read(raw);
        let mut parts = std::mem::take(&mut node.all_of);
        if let Some(target) = node.reference.take().and_then(|r| self.resolve(&r)) {
            parts.insert(0, target);
        }
        if !parts.is_empty() {
            self.nodes.insert(key, Rc::new(node.clone()));
            for part in parts {
                let part = self.node(part);
                node.absorb(&part);
            }
        }
        let node = Rc::new(node);
        self.nodes.insert(key, node.clone());
        node
    }

    /// The target of a local `$ref` (`#` or a JSON pointer such as `#/$defs/Item`).
    fn resolve(&mut self, reference: &str) -> Option<&'s RawValue> {
        if let Some(target) = self.refs.get(reference) {
            return *target;
        }
        let target = reference.strip_prefix('#').and_then(|pointer| {
            let mut at = self.root?;
            for segment in pointer.split('/').skip(1) {
                let segment = segment.replace("~1", "/").replace("~0", "~");
                at = if at.get().starts_with('[') {
                    let index: usize = segment.parse().ok()?;
                    *parse::<Vec<&RawValue>>(at)?.get(index)?
                } else {
                    let entries = parse::<Entries<'s>>(at)?;
                    entries.0.into_iter().find(|(k, _)| *k == segment)?.1
                };
            }
            Some(at)
        });
        self.refs.insert(reference.to_string(), target);
        target
    }

    fn value(&mut self, raw: &'s RawValue, depth: usize) {
        let node = self.node(raw);
        self.node_value(&node, depth);
    }

    fn node_value(&mut self, node: &Node<'s>, depth: usize) {
        if depth > MAX_DEPTH || self.out.len() > MAX_BYTES || node.never {
            self.out.extend_from_slice(b"null");
            return;
        }
        if let Some(constant) = node.constant {
            return self.copy(constant);
        }
        if !node.enumeration.is_empty() {
            let pick = self.rng.below(node.enumeration.len() as u64) as usize;
            return self.copy(node.enumeration[pick]);
        }
        if let Some(default) = node.default {
            return self.copy(default);
        }
        let shallow = depth >= SHALLOW_DEPTH;
        if !node.any_of.is_empty() {
            return self.branch(node, depth, shallow);
        }
        match pick_type(node, shallow) {
            Type::Null => self.out.extend_from_slice(b"null"),
            Type::Boolean => {
                let word: &[u8] = if self.rng.below(2) == 0 {
                    b"true"
                } else {
                    b"false"
                };
                self.out.extend_from_slice(word);
            }
            Type::Integer => self.integer(node),
            Type::Number => self.number(node),
            Type::String => self.string(node, shallow),
            Type::Array => self.array(node, depth, shallow),
            Type::Object => self.object(node, depth, shallow),
        }
    }

    /// A value from the schema itself (`const`, `enum`, `default`), byte for byte.
    fn copy(&mut self, raw: &RawValue) {
        self.out.extend_from_slice(raw.get().trim().as_bytes());
    }

    /// A value for one `anyOf` / `oneOf` branch: the first that is not `null` (or `null` deep down, which
    /// ends recursive schemas), with the branch's siblings merged in (a common pattern puts `description`
    /// or `default` next to `anyOf`).
    fn branch(&mut self, node: &Node<'s>, depth: usize, shallow: bool) {
        if self.branches >= MAX_BRANCHES {
            self.out.extend_from_slice(b"null");
            return;
        }
        let branches: Vec<Rc<Node<'s>>> = node.any_of.iter().map(|b| self.node(b)).collect();
        let null = branches.iter().position(|b| b.is_null_only());
        let pick = match null {
            Some(i) if shallow => i,
            _ => branches
                .iter()
                .position(|b| !b.is_null_only() && !b.never)
                .unwrap_or(0),
        };
        let mut merged = (*branches[pick]).clone();
        let mut siblings = node.clone();
        siblings.any_of.clear();
        merged.absorb(&siblings);
        self.branches += 1;
        self.node_value(&merged, depth);
        self.branches -= 1;
    }

    fn object(&mut self, node: &Node<'s>, depth: usize, shallow: bool) {
        self.out.push(b'{');
        let mut first = true;
        for (name, schema) in &node.properties {
            let required = node.required.contains(name);
            if !required && (shallow || self.out.len() > MAX_BYTES) {
                continue;
            }
            self.key(name, &mut first);
            self.value(schema, depth + 1);
        }
        // Required names without a schema of their own: any value will do.
        for name in &node.required {
            if !node.properties.iter().any(|(n, _)| n == name) {
                self.key(name, &mut first);
                self.node_value(&Node::default(), depth + 1);
            }
        }
        self.out.push(b'}');
    }

    fn key(&mut self, name: &str, first: &mut bool) {
        if !std::mem::take(first) {
            self.out.extend_from_slice(b", ");
        }
        let _ = serde_json::to_writer(&mut self.out, name);
        self.out.extend_from_slice(b": ");
    }

    fn array(&mut self, node: &Node<'s>, depth: usize, shallow: bool) {
        let min = node.min_items.unwrap_or(0);
        let max = node.max_items.unwrap_or(u64::MAX).max(min);
        let free = if shallow {
            0
        } else {
            1 + self.rng.below(MAX_FREE_ITEMS)
        };
        let count = free.clamp(min, max);
        let items = node.items.map(|i| self.node(i));
        let any = Node::default();
        let item = items.as_deref().unwrap_or(&any);
        self.out.push(b'[');
        let mut starts: Vec<(usize, usize)> = Vec::new();
        for i in 0..count {
            // Past the budget even `minItems` gives way: the reply stays bounded.
            if self.out.len() > MAX_BYTES {
                break;
            }
            let start = self.out.len();
            if i > 0 {
                self.out.extend_from_slice(b", ");
            }
            let begin = self.out.len();
            let mut unique = false;
            for _ in 0..UNIQUE_TRIES {
                self.out.truncate(begin);
                self.node_value(item, depth + 1);
                let this = &self.out[begin..];
                unique =
                    !node.unique_items || !starts.iter().any(|&(s, e)| &self.out[s..e] == this);
                if unique {
                    break;
                }
            }
            if !unique && i >= min {
                self.out.truncate(start);
                break;
            }
            starts.push((begin, self.out.len()));
        }
        self.out.push(b']');
    }

    fn string(&mut self, node: &Node<'s>, shallow: bool) {
        let mut text = match node.format.as_deref() {
            Some(format) => self.formatted(format),
            None => None,
        }
        .unwrap_or_else(|| {
            let words = if shallow { 1 } else { 1 + self.rng.below(3) };
            let mut text = String::new();
            for i in 0..words {
                if i > 0 {
                    text.push(' ');
                }
                text.push_str(self.words[self.rng.below(self.words.len() as u64) as usize]);
            }
            text
        });
        let min = node.min_length.unwrap_or(0).min(MAX_STRING) as usize;
        let mut chars = text.chars().count();
        while chars < min {
            let word = self.words[self.rng.below(self.words.len() as u64) as usize];
            text.push(' ');
            text.push_str(word);
            chars += 1 + word.chars().count();
        }
        if let Some(max) = node.max_length {
            if let Some((cut, _)) = text.char_indices().nth(max as usize) {
                text.truncate(cut);
            }
        }
        let _ = serde_json::to_writer(&mut self.out, &text);
    }

    /// A string in a common `format`, or `None` for formats left to plain words.
    fn formatted(&mut self, format: &str) -> Option<String> {
        let r = self.rng.next_u64();
        let (year, month, day) = (2020 + r % 10, 1 + (r >> 8) % 12, 1 + (r >> 16) % 28);
        let (hour, minute, second) = ((r >> 24) % 24, (r >> 32) % 60, (r >> 40) % 60);
        let word: String = self.words[(r % self.words.len() as u64) as usize]
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let word = if word.is_empty() { "user".into() } else { word };
        Some(match format {
            "date-time" => {
                format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
            }
            "date" => format!("{year}-{month:02}-{day:02}"),
            "time" => format!("{hour:02}:{minute:02}:{second:02}Z"),
            "email" | "idn-email" => format!("{word}@example.com"),
            "uri" | "url" | "iri" | "uri-reference" | "iri-reference" => {
                format!("https://example.com/{word}")
            }
            "hostname" | "idn-hostname" => format!("{word}.example.com"),
            "ipv4" => format!("192.0.2.{}", r % 256),
            "ipv6" => format!("2001:db8::{:x}", r % 65536),
            "uuid" => {
                let s = self.rng.next_u64();
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    r >> 32,
                    (r >> 16) & 0xffff,
                    r & 0xfff,
                    0x8000 | (s >> 48) & 0x3fff,
                    s & 0xffff_ffff_ffff
                )
            }
            _ => return None,
        })
    }

    fn integer(&mut self, node: &Node<'s>) {
        let (lo, hi) = integer_range(node);
        let value = match node.multiple_of.filter(|m| m.fract() == 0.0 && *m <= 1e15) {
            Some(m) => {
                let m = m as i128;
                let (first, last) = (div_ceil(lo, m), hi.div_euclid(m));
                if first <= last {
                    (first + self.below_i128(last - first + 1)) * m
                } else {
                    lo
                }
            }
            None => lo + self.below_i128(hi - lo + 1),
        };
        let value = value.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn below_i128(&mut self, n: i128) -> i128 {
        if n <= 0 {
            0
        } else {
            (u128::from(self.rng.next_u64()) % n as u128) as i128
        }
    }

    fn number(&mut self, node: &Node<'s>) {
        let (lo, hi) = number_range(node);
        let inside = |v: f64| {
            let above = match node.minimum {
                Some((m, true)) => v > m,
                Some((m, false)) => v >= m,
                None => true,
            };
            let below = match node.maximum {
                Some((m, true)) => v < m,
                Some((m, false)) => v <= m,
                None => true,
            };
            v.is_finite() && above && below
        };
        let value = match node.multiple_of {
            Some(m) => {
                let (first, last) = ((lo / m).ceil(), (hi / m).floor());
                let steps = (last - first).clamp(0.0, 1e15) as u64 + 1;
                let start = self.rng.below(steps);
                // A multiple whose quotient is exact in floating point, as validators check it
                // (`0.3 / 0.1` is not 3), preferring a short decimal (0.4 over 0.30000000000000004).
                (0..MULTIPLE_TRIES.min(steps))
                    .map(|i| (first + ((start + i) % steps) as f64) * m)
                    .flat_map(|v| [(v * 1e9).round() / 1e9, v])
                    .find(|v| inside(*v) && (v / m).fract() == 0.0)
                    .unwrap_or(first * m)
            }
            None => {
                let raw = lo + (hi - lo) * (0.1 + 0.8 * self.rng.unit());
                let rounded = (raw * 100.0).round() / 100.0;
                if inside(rounded) {
                    rounded
                } else if inside(raw) {
                    raw
                } else {
                    lo / 2.0 + hi / 2.0
                }
            }
        };
        let value = if value.is_finite() { value } else { 0.0 };
        let _ = serde_json::to_writer(&mut self.out, &value);
    }
}

/// The type to generate: the first allowed one that is not `null`, unless only `null` is allowed or nesting
/// is deep and `null` is allowed; without `type`, what the other keywords suggest.
fn pick_type(node: &Node<'_>, shallow: bool) -> Type {
    let nullable = node.types.contains(&Type::Null);
    match node.types.iter().find(|t| **t != Type::Null) {
        _ if nullable && shallow => Type::Null,
        Some(t) => *t,
        None if nullable => Type::Null,
        None if !node.properties.is_empty() || !node.required.is_empty() => Type::Object,
        None if node.items.is_some() || node.min_items.is_some() => Type::Array,
        None if node.minimum.is_some() || node.maximum.is_some() => Type::Number,
        None => Type::String,
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    -((-a).div_euclid(b))
}

/// Integer bounds, inclusive; without bounds 0–100 (or 100 wide from the one given).
fn integer_range(node: &Node<'_>) -> (i128, i128) {
    /// Keeps bounds to what fits in a JSON integer clients parse exactly.
    const LIMIT: f64 = 9.0e15;
    let lo = node.minimum.map(|(m, exclusive)| {
        let m = m.clamp(-LIMIT, LIMIT);
        if exclusive {
            m.floor() as i128 + 1
        } else {
            m.ceil() as i128
        }
    });
    let hi = node.maximum.map(|(m, exclusive)| {
        let m = m.clamp(-LIMIT, LIMIT);
        if exclusive {
            m.ceil() as i128 - 1
        } else {
            m.floor() as i128
        }
    });
    match (lo, hi) {
        (Some(lo), Some(hi)) => (lo, hi.max(lo)),
        (Some(lo), None) => (lo, lo + 100),
        (None, Some(hi)) => (hi.min(100) - 100, hi.min(100)),
        (None, None) => (0, 100),
    }
}

/// Number bounds (exclusiveness is checked by the caller); without bounds 0–100.
fn number_range(node: &Node<'_>) -> (f64, f64) {
    match (node.minimum, node.maximum) {
        (Some((lo, _)), Some((hi, _))) => (lo, hi.max(lo)),
        (Some((lo, _)), None) => (lo, lo + 100.0),
        (None, Some((hi, _))) => (hi.min(100.0) - 100.0, hi.min(100.0)),
        (None, None) => (0.0, 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A small validator for the keywords the generator honours, written independently of it (the Python
    /// suite checks the same outputs with the `jsonschema` package).
    fn check(schema: &Value, value: &Value, root: &Value) -> Result<(), String> {
        let fail = |why: &str| Err(format!("{value} fails {schema}: {why}"));
        let Some(s) = schema.as_object() else {
            return if *schema == json!(false) {
                fail("false")
            } else {
                Ok(())
            };
        };
        if let Some(Value::String(r)) = s.get("$ref") {
            let target = root.pointer(&r[1..]).ok_or("dangling $ref")?;
            check(target, value, root)?;
        }
        for part in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            check(part, value, root)?;
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = s.get(key).and_then(Value::as_array) {
                if !branches.iter().any(|b| check(b, value, root).is_ok()) {
                    return fail(key);
                }
            }
        }
        if let Some(c) = s.get("const") {
            if c != value {
                return fail("const");
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(value) {
                return fail("enum");
            }
        }
        let type_ok = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        match s.get("type") {
            Some(Value::String(t)) if !type_ok(t) => return fail("type"),
            Some(Value::Array(ts)) if !ts.iter().any(|t| type_ok(t.as_str().unwrap_or(""))) => {
                return fail("type")
            }
            _ => {}
        }
        let num = |k: &str| s.get(k).and_then(Value::as_f64);
        if let Some(n) = value.as_f64() {
            let bad = num("minimum").is_some_and(|m| n < m)
                || num("maximum").is_some_and(|m| n > m)
                || num("exclusiveMinimum").is_some_and(|m| n <= m)
                || num("exclusiveMaximum").is_some_and(|m| n >= m)
                // serde_json parses floats to within an ulp, so the Python suite checks multiples exactly.
                || num("multipleOf").is_some_and(|m| ((n / m).round() - n / m).abs() > 1e-9);
            if bad {
                return fail("number bounds");
            }
        }
        if let Some(text) = value.as_str() {
            let len = text.chars().count() as f64;
            if num("minLength").is_some_and(|m| len < m)
                || num("maxLength").is_some_and(|m| len > m)
            {
                return fail("length");
            }
            let shape_ok = match s.get("format").and_then(Value::as_str) {
                Some("date-time") => {
                    text.len() == 20 && &text[10..11] == "T" && text.ends_with('Z')
                }
                Some("date") => text.len() == 10 && text.as_bytes()[4] == b'-',
                Some("email") => text.contains('@'),
                Some("uri") => text.starts_with("https://"),
                Some("uuid") => text.len() == 36 && text.split('-').count() == 5,
                _ => true,
            };
            if !shape_ok {
                return fail("format");
            }
        }
        if let Some(items) = value.as_array() {
            let len = items.len() as f64;
            if num("minItems").is_some_and(|m| len < m) || num("maxItems").is_some_and(|m| len > m)
            {
                return fail("items count");
            }
            if s.get("uniqueItems") == Some(&json!(true)) {
                for (i, a) in items.iter().enumerate() {
                    if items[..i].contains(a) {
                        return fail("unique");
                    }
                }
            }
            if let Some(item) = s.get("items") {
                for v in items {
                    check(item, v, root)?;
                }
            }
        }
        if let Some(object) = value.as_object() {
            for name in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !object.contains_key(name.as_str().unwrap_or("")) {
                    return fail("required");
                }
            }
            if let Some(Value::Object(props)) = s.get("properties") {
                for (name, v) in object {
                    match props.get(name) {
                        Some(p) => check(p, v, root)?,
                        None if s.get("additionalProperties") == Some(&json!(false)) => {
                            return fail("additional property")
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn generated(schema: &str, seed: u64) -> String {
        let raw: &RawValue = serde_json::from_str(schema).unwrap();
        generate(Some(raw), seed, &["Paris", "rainy", "weather"])
    }

    /// Schemas from real tool definitions and structured outputs (OpenAI's docs, pydantic, zod).
    const SCHEMAS: &[&str] = &[
        r#"{"type":"object","properties":{"location":{"type":"string","description":"City"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}"#,
        r#"{"type":"object","properties":{"n":{"type":"integer","minimum":3,"maximum":5},"x":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1},"step":{"type":"integer","multipleOf":7,"minimum":10,"maximum":30},"f":{"type":"number","multipleOf":0.25,"minimum":-1,"maximum":1},"tenth":{"type":"number","multipleOf":0.1,"minimum":0,"maximum":5}},"required":["n","x"],"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","maxLength":4},"minItems":2,"maxItems":5,"uniqueItems":true},"flags":{"type":"array","items":{"type":"boolean"},"maxItems":0}}}"#,
        r#"{"type":"object","properties":{"kind":{"const":"event"},"when":{"type":"string","format":"date-time"},"day":{"type":"string","format":"date"},"mail":{"type":"string","format":"email"},"site":{"type":"string","format":"uri"},"id":{"type":"string","format":"uuid"},"long":{"type":"string","minLength":30}},"required":["kind","when"]}"#,
        r#"{"type":"object","properties":{"note":{"anyOf":[{"type":"string"},{"type":"null"}]},"count":{"type":["integer","null"]},"mode":{"default":"fast","type":"string"}},"required":["note","count","mode"],"additionalProperties":false}"#,
        r##"{"$defs":{"Step":{"type":"object","properties":{"explanation":{"type":"string"},"output":{"type":"string"}},"required":["explanation","output"],"additionalProperties":false}},"type":"object","properties":{"steps":{"type":"array","items":{"$ref":"#/$defs/Step"}},"final_answer":{"type":"string"}},"required":["steps","final_answer"],"additionalProperties":false}"##,
        r##"{"definitions":{"Node":{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/definitions/Node"}}},"required":["name","children"]}},"$ref":"#/definitions/Node"}"##,
        r#"{"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},{"properties":{"b":{"type":"boolean"}},"required":["b"]}]}"#,
        r#"{"type":"object","properties":{"nested":{"type":"object","properties":{"deeper":{"type":"object","properties":{"leaf":{"type":"number","minimum":1e300}},"required":["leaf"]}},"required":["deeper"]}},"required":["nested"]}"#,
        r#"{"type":"object","required":["free"],"properties":{"any":{},"obj":{"type":"object"},"big":{"type":"integer","minimum":-1e30}}}"#,
        r#"{"type":"array","items":{"oneOf":[{"type":"integer","maximum":-10},{"type":"string","minLength":2,"maxLength":2}]},"minItems":3}"#,
        r#"{"type":"string","enum":["a","b","c"]}"#,
        r#"{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer","exclusiveMinimum":true,"minimum":5,"maximum":6}}}"#,
        "true",
        "{}",
    ];

    #[test]
    fn generated_values_validate() {
        for schema_text in SCHEMAS {
            let schema: Value = serde_json::from_str(schema_text).unwrap();
            for seed in 0..40 {
                let out = generated(schema_text, seed);
                let value: Value = serde_json::from_str(&out)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {out} for {schema_text}"));
                check(&schema, &value, &schema).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            }
        }
    }

    #[test]
    fn same_seed_same_bytes_in_schema_order() {
        let schema = SCHEMAS[0];
        assert_eq!(generated(schema, 9), generated(schema, 9));
        let outputs: std::collections::HashSet<String> =
            (0..20).map(|seed| generated(schema, seed)).collect();
        assert!(outputs.len() > 5, "{outputs:?}");
        let out = generated(schema, 1);
        assert!(out.starts_with(r#"{"location": ""#), "{out}");
        assert!(out.find("\"unit\"") > out.find("\"location\""), "{out}");
        // Spaced separators: several tokens by the shared rule.
        assert!(super::super::tokens::count(&out) >= 4, "{out}");
    }

    #[test]
    fn strings_reuse_the_words() {
        let out = generated(r#"{"type":"string"}"#, 3);
        let text: String = serde_json::from_str(&out).unwrap();
        assert!(
            text.split(' ')
                .all(|w| ["Paris", "rainy", "weather"].contains(&w)),
            "{text}"
        );
        let raw: &RawValue = serde_json::from_str(r#"{"type":"string"}"#).unwrap();
        let fallback: String = serde_json::from_str(&generate(Some(raw), 3, &[])).unwrap();
        assert!(
            fallback.split(' ').all(|w| FALLBACK_WORDS.contains(&w)),
            "{fallback}"
        );
    }

    #[test]
    fn hostile_schemas_stay_bounded() {
        let cases = [
            // A million required items, nested.
            r#"{"type":"array","minItems":1000000,"items":{"type":"array","minItems":1000000}}"#
                .to_string(),
            // A schema that is its own allOf, ref and anyOf branch.
            r##"{"allOf":[{"$ref":"#"},{"$ref":"#"}],"anyOf":[{"$ref":"#"}]}"##.to_string(),
            // Deeper than MAX_DEPTH.
            format!(
                "{}{}",
                r#"{"type":"object","required":["a"],"properties":{"a":"#.repeat(40),
                "{}".to_string() + &"}}".repeat(40)
            ),
            // Wrong keyword types are ignored.
            r#"{"type":5,"properties":[],"required":"a","minItems":"x","enum":{},"items":7}"#
                .to_string(),
            r#"{"$ref":"http://example.com/remote"}"#.to_string(),
            r#"false"#.to_string(),
            r#"{"type":"string","minLength":100000000}"#.to_string(),
        ];
        for schema in &cases {
            let out = generated(schema, 1);
            assert!(
                out.len() < MAX_BYTES + 8192,
                "{} bytes for {schema}",
                out.len()
            );
            serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        }
    }

    #[test]
    fn without_schema_any_value_is_a_string() {
        let out = generate(None, 1, &["hi"]);
        let text: String = serde_json::from_str(&out).unwrap();
        assert!(text.split(' ').all(|w| w == "hi"), "{out}");
    }
}
