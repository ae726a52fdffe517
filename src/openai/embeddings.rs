//! `POST /v1/embeddings` on the wire: the spec's `CreateEmbeddingRequest` read into borrowed raw fields and
//! checked field by field (the field's name in `param` when it is wrong), and `CreateEmbeddingResponse`
//! serialized straight into the caller's buffer, each vector as JSON floats or as base64 of little-endian
//! `f32` bytes. The vectors themselves come from the caller; this module knows no model.

use std::borrow::Cow;
use std::fmt;

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use super::json::missing;
use super::json::{self, array, integer, string};

/// Most inputs in one request, and most tokens in a single flat token array (the spec's `maxItems`).
pub const MAX_INPUTS: usize = 2048;
/// Vector length when the request gives no `dimensions`: text-embedding-3-small's and ada-002's size, the
/// one clients most often hard-code.
pub const DEFAULT_DIMENSIONS: u32 = 1536;
/// Largest `dimensions` accepted: above every OpenAI model (3072 at most) and the common 4096 of open
/// models, and it bounds a reply to 2048 × 4096 floats.
pub const MAX_DIMENSIONS: u32 = 4096;

/// How vectors are written in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A JSON array of numbers (the spec's default).
    Float,
    /// Base64 of the little-endian `f32` bytes; the openai SDKs ask for this unless told otherwise.
    Base64,
}

/// One thing to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A non-empty text.
    Text(Cow<'a, str>),
    /// A non-empty list of token ids.
    Tokens(Vec<u32>),
}

/// A validated embeddings request.
#[derive(Debug)]
pub struct EmbeddingRequest<'a> {
    /// Model name as the client sent it.
    pub model: Cow<'a, str>,
    /// The inputs in request order, 1 to [`MAX_INPUTS`]; a single string or token array is one input.
    pub inputs: Vec<Input<'a>>,
    /// How to write the vectors.
    pub encoding: Encoding,
    /// Components per vector, 1 to [`MAX_DIMENSIONS`].
    pub dimensions: u32,
}

/// The fields the spec defines, each kept raw until checked, so a type error can name its field.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    encoding_format: Option<&'a RawValue>,
    #[serde(borrow)]
    dimensions: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
}

/// A path into `input` (`input[2]`, `input[2][5]`), formatted only when an error needs it.
#[derive(Debug, Clone, Copy)]
struct At {
    index: usize,
    token: Option<usize>,
}

impl At {
    fn item(index: usize) -> Self {
        At { index, token: None }
    }

    fn token(index: usize, token: usize) -> Self {
        At {
            index,
            token: Some(token),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "input[{}]", self.index)?;
        if let Some(token) = self.token {
            write!(f, "[{token}]")?;
        }
        Ok(())
    }
}

/// Parses and validates a request body (already checked to be within the size limit).
pub fn parse(body: &[u8], max_depth: usize) -> Result<EmbeddingRequest<'_>, ApiError> {
    let raw: RawRequest<'_> = json::parse_body(body, max_depth)?;
    let model = json::model(raw.model)?;
    let inputs = match raw.input {
        Some(input) => parse_input(input)?,
        None => return Err(missing("input")),
    };
    let encoding = match raw.encoding_format {
        None => Encoding::Float,
        Some(v) => match &*string(v, "encoding_format")? {
            "float" => Encoding::Float,
            "base64" => Encoding::Base64,
            other => {
                return Err(json::out_of_range(
                    "encoding_format",
                    "one of float, base64",
                    format_args!("'{other}'"),
                ))
            }
        },
    };
    let dimensions = raw
        .dimensions
        .map(|v| integer(v, "dimensions", 1, i64::from(MAX_DIMENSIONS)))
        .transpose()?
        .map_or(DEFAULT_DIMENSIONS, |d| d as u32);
    raw.user.map(|v| string(v, "user")).transpose()?;
    Ok(EmbeddingRequest {
        model,
        inputs,
        encoding,
        dimensions,
    })
}

fn wrong_type(param: impl fmt::Display, expected: &str, raw: &RawValue) -> ApiError {
    let param = param.to_string();
    let message = format!(
        "Invalid type for '{param}': expected {expected}, but got {} instead.",
        json::kind(raw)
    );
    ApiError::invalid(message, Some(&param), "invalid_type")
}

/// The four shapes of `input`: a string, an array of strings, an array of token ids (one input) or an
/// array of token arrays. The first item of an array decides which; every other item must match it.
fn parse_input(raw: &RawValue) -> Result<Vec<Input<'_>>, ApiError> {
    const SHAPES: &str =
        "a string, an array of strings, an array of integers or an array of arrays of integers";
    if raw.get().starts_with('"') {
        let text = string(raw, "input")?;
        if text.is_empty() {
            return Err(json::out_of_range(
                "input",
                "that is a non-empty string",
                "''",
            ));
        }
        return Ok(vec![Input::Text(text)]);
    }
    if !raw.get().starts_with('[') {
        return Err(wrong_type("input", SHAPES, raw));
    }
    let items = array(raw, "input")?;
    if items.is_empty() {
        return Err(json::out_of_range(
            "input",
            "with at least 1 item",
            "an empty array",
        ));
    }
    if items.len() > MAX_INPUTS {
        return Err(json::out_of_range(
            "input",
            &format!("with at most {MAX_INPUTS} items"),
            format_args!("{} items", items.len()),
        ));
    }
    match json::kind(items[0]) {
        "a string" => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let text = string(item, At::item(i))?;
                if text.is_empty() {
                    let rule = "that is a non-empty string";
                    return Err(json::out_of_range(At::item(i), rule, "''"));
                }
                Ok(Input::Text(text))
            })
            .collect(),
        "an array" => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let ids = array(item, At::item(i))?;
                if ids.is_empty() {
                    let rule = "with at least 1 item";
                    return Err(json::out_of_range(At::item(i), rule, "an empty array"));
                }
                token_ids(&ids, |j| At::token(i, j)).map(Input::Tokens)
            })
            .collect(),
        "a number" => token_ids(&items, At::item).map(|ids| vec![Input::Tokens(ids)]),
        _ => Err(wrong_type(
            At::item(0),
            "a string, an integer or an array of integers",
            items[0],
        )),
    }
}

/// Token ids, each a non-negative integer that fits in 32 bits (every tokenizer's vocabulary does).
fn token_ids(items: &[&RawValue], at: impl Fn(usize) -> At) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .enumerate()
        .map(|(j, id)| integer(id, at(j), 0, i64::from(u32::MAX)).map(|id| id as u32))
        .collect()
}

/// Token counts for `usage`; embeddings generate nothing, so the total is the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Tokens over all inputs.
    pub prompt_tokens: u64,
    /// The same number.
    pub total_tokens: u64,
}

impl Usage {
    /// Usage for `prompt_tokens` input tokens.
    pub fn new(prompt_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        }
    }
}

#[derive(serde::Serialize)]
struct List<'a> {
    object: &'static str,
    data: Data<'a>,
    model: &'a str,
    usage: Usage,
}

/// The `data` array, each vector produced while serializing into one reused buffer, so a reply of 2048
/// vectors never holds more than one of them.
struct Data<'a> {
    count: usize,
    encoding: Encoding,
    fill: &'a dyn Fn(usize, &mut Vec<f32>),
}

#[derive(serde::Serialize)]
struct Embedding<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a [f32]),
    Base64(&'a str),
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut vector = Vec::new();
        let mut text = String::new();
        let mut seq = s.serialize_seq(Some(self.count))?;
        for index in 0..self.count {
            vector.clear();
            (self.fill)(index, &mut vector);
            let embedding = match self.encoding {
                Encoding::Float => Vector::Float(&vector),
                Encoding::Base64 => {
                    text.clear();
                    write_base64_f32(&vector, &mut text);
                    Vector::Base64(&text)
                }
            };
            seq.serialize_element(&Embedding {
                object: "embedding",
                index,
                embedding,
            })?;
        }
        seq.end()
    }
}

/// Appends a `CreateEmbeddingResponse` to `out`: `count` embeddings, the `index`-th filled in by
/// `fill(index, buffer)` (which appends the components to an empty buffer), written as `encoding` says.
pub fn write_response(
    out: &mut Vec<u8>,
    model: &str,
    count: usize,
    encoding: Encoding,
    usage: Usage,
    fill: impl Fn(usize, &mut Vec<f32>),
) {
    let list = List {
        object: "list",
        data: Data {
            count,
            encoding,
            fill: &fill,
        },
        model,
        usage,
    };
    // Writing into a Vec cannot fail, and finite floats always serialize.
    let _ = serde_json::to_writer(out, &list);
}

/// The standard base64 alphabet (RFC 4648 §4).
const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the standard base64 (with `=` padding) of `bytes` to `out`.
pub fn encode_base64(bytes: impl IntoIterator<Item = u8>, out: &mut String) {
    let mut bytes = bytes.into_iter().fuse();
    while let Some(first) = bytes.next() {
        let second = bytes.next();
        let third = bytes.next();
        let n = u32::from(first) << 16
            | u32::from(second.unwrap_or(0)) << 8
            | u32::from(third.unwrap_or(0));
        let digit = |shift: u32| char::from(BASE64_ALPHABET[(n >> shift) as usize & 63]);
        out.push(digit(18));
        out.push(digit(12));
        out.push(if second.is_some() { digit(6) } else { '=' });
        out.push(if third.is_some() { digit(0) } else { '=' });
    }
}

/// Appends the base64 of `vector`'s little-endian `f32` bytes, what the SDKs decode with
/// `np.frombuffer(..., dtype="float32")`.
pub fn write_base64_f32(vector: &[f32], out: &mut String) {
    out.reserve((vector.len() * 4).div_ceil(3) * 4);
    encode_base64(vector.iter().flat_map(|x| x.to_le_bytes()), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> EmbeddingRequest<'_> {
        parse(body.as_bytes(), 64).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    fn err(body: &str) -> (Option<String>, &'static str) {
        let e = parse(body.as_bytes(), 64).expect_err(body);
        (e.param, e.code.unwrap_or(""))
    }

    fn text(s: &str) -> Input<'_> {
        Input::Text(Cow::Borrowed(s))
    }

    #[test]
    fn defaults() {
        let req = ok(r#"{"model":"text-embedding-3-small","input":"hello"}"#);
        assert_eq!(req.model, "text-embedding-3-small");
        assert_eq!(req.inputs, vec![text("hello")]);
        assert_eq!(
            (req.encoding, req.dimensions),
            (Encoding::Float, DEFAULT_DIMENSIONS)
        );
    }

    #[test]
    fn all_fields_accepted() {
        let req = ok(
            r#"{"model":"m","input":["a","b\nc"],"encoding_format":"base64","dimensions":8,"user":"u","extra":[1]}"#,
        );
        assert_eq!(req.inputs, vec![text("a"), text("b\nc")]);
        assert_eq!((req.encoding, req.dimensions), (Encoding::Base64, 8));
    }

    #[test]
    fn nulls_mean_absent() {
        let req =
            ok(r#"{"model":"m","input":"x","encoding_format":null,"dimensions":null,"user":null}"#);
        assert_eq!(
            (req.encoding, req.dimensions),
            (Encoding::Float, DEFAULT_DIMENSIONS)
        );
    }

    #[test]
    fn input_shapes() {
        assert_eq!(
            ok(r#"{"model":"m","input":[1212, 318, 0]}"#).inputs,
            vec![Input::Tokens(vec![1212, 318, 0])]
        );
        assert_eq!(
            ok(r#"{"model":"m","input":[[1],[2,3]]}"#).inputs,
            vec![Input::Tokens(vec![1]), Input::Tokens(vec![2, 3])]
        );
        // Whitespace is text like any other.
        assert_eq!(ok(r#"{"model":"m","input":" "}"#).inputs, vec![text(" ")]);
        let many = format!(r#"{{"model":"m","input":[{}"x"]}}"#, r#""x","#.repeat(2047));
        assert_eq!(ok(&many).inputs.len(), MAX_INPUTS);
    }

    macro_rules! rejects {
        ($($name:ident: $body:expr => ($param:expr, $code:expr),)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(err($body), ($param.map(str::to_string), $code));
            }
        )*};
    }

    rejects! {
        rejects_invalid_json: "{" => (None::<&str>, "invalid_json"),
        rejects_non_object: r#"["m"]"# => (None::<&str>, "invalid_json"),
        rejects_missing_model: r#"{"input":"x"}"# => (Some("model"), "missing_required_parameter"),
        rejects_model_number: r#"{"model":1,"input":"x"}"# => (Some("model"), "invalid_type"),
        rejects_empty_model: r#"{"model":"","input":"x"}"# => (Some("model"), "invalid_value"),
        rejects_missing_input: r#"{"model":"m"}"# => (Some("input"), "missing_required_parameter"),
        rejects_null_input: r#"{"model":"m","input":null}"# => (Some("input"), "missing_required_parameter"),
        rejects_number_input: r#"{"model":"m","input":5}"# => (Some("input"), "invalid_type"),
        rejects_object_input: r#"{"model":"m","input":{"text":"x"}}"# => (Some("input"), "invalid_type"),
        rejects_empty_string: r#"{"model":"m","input":""}"# => (Some("input"), "invalid_value"),
        rejects_empty_array: r#"{"model":"m","input":[]}"# => (Some("input"), "invalid_value"),
        rejects_empty_string_item: r#"{"model":"m","input":["a",""]}"# => (Some("input[1]"), "invalid_value"),
        rejects_empty_token_array: r#"{"model":"m","input":[[1],[]]}"# => (Some("input[1]"), "invalid_value"),
        rejects_mixed_string_number: r#"{"model":"m","input":["a",1]}"# => (Some("input[1]"), "invalid_type"),
        rejects_mixed_number_string: r#"{"model":"m","input":[1,"a"]}"# => (Some("input[1]"), "invalid_type"),
        rejects_mixed_array_number: r#"{"model":"m","input":[[1],2]}"# => (Some("input[1]"), "invalid_type"),
        rejects_null_item: r#"{"model":"m","input":[null]}"# => (Some("input[0]"), "invalid_type"),
        rejects_float_token: r#"{"model":"m","input":[1.5]}"# => (Some("input[0]"), "invalid_type"),
        rejects_negative_token: r#"{"model":"m","input":[1,-1]}"# => (Some("input[1]"), "invalid_value"),
        rejects_huge_token: r#"{"model":"m","input":[4294967296]}"# => (Some("input[0]"), "invalid_value"),
        rejects_nested_string: r#"{"model":"m","input":[[1,"a"]]}"# => (Some("input[0][1]"), "invalid_type"),
        rejects_too_many_inputs: &format!(r#"{{"model":"m","input":[{}"x"]}}"#, r#""x","#.repeat(2048)) => (Some("input"), "invalid_value"),
        rejects_too_many_tokens: &format!(r#"{{"model":"m","input":[{}1]}}"#, "1,".repeat(2048)) => (Some("input"), "invalid_value"),
        rejects_encoding_hex: r#"{"model":"m","input":"x","encoding_format":"hex"}"# => (Some("encoding_format"), "invalid_value"),
        rejects_encoding_number: r#"{"model":"m","input":"x","encoding_format":1}"# => (Some("encoding_format"), "invalid_type"),
        rejects_dimensions_zero: r#"{"model":"m","input":"x","dimensions":0}"# => (Some("dimensions"), "invalid_value"),
        rejects_dimensions_huge: r#"{"model":"m","input":"x","dimensions":4097}"# => (Some("dimensions"), "invalid_value"),
        rejects_dimensions_float: r#"{"model":"m","input":"x","dimensions":2.5}"# => (Some("dimensions"), "invalid_type"),
        rejects_dimensions_string: r#"{"model":"m","input":"x","dimensions":"8"}"# => (Some("dimensions"), "invalid_type"),
        rejects_user_number: r#"{"model":"m","input":"x","user":1}"# => (Some("user"), "invalid_type"),
        rejects_too_deep: &format!(r#"{{"model":"m","input":"x","y":{}1{}}}"#, "[".repeat(70), "]".repeat(70)) => (None::<&str>, "json_too_deep"),
    }

    #[test]
    fn rejects_invalid_utf8() {
        let e = parse(b"{\"model\":\"\xff\",\"input\":\"x\"}", 64).unwrap_err();
        assert_eq!(e.code, Some("invalid_json"));
    }

    #[test]
    fn type_errors_name_the_shapes() {
        let e = parse(br#"{"model":"m","input":5}"#, 64).unwrap_err();
        assert!(e.message.contains("an array of strings"), "{}", e.message);
        assert!(e.message.contains("got a number"), "{}", e.message);
    }

    fn base64(bytes: &[u8]) -> String {
        let mut out = String::new();
        encode_base64(bytes.iter().copied(), &mut out);
        out
    }

    /// A test-only decoder, to check that what we write reads back.
    fn decode_base64(text: &str) -> Vec<u8> {
        let value = |c: u8| BASE64_ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        let mut out = Vec::new();
        for quad in text.as_bytes().chunks(4) {
            let data: Vec<u8> = quad.iter().copied().filter(|&c| c != b'=').collect();
            let n = data
                .iter()
                .enumerate()
                .fold(0, |n, (i, &c)| n | value(c) << (18 - 6 * i));
            out.extend_from_slice(&n.to_be_bytes()[1..data.len()]);
        }
        out
    }

    #[test]
    fn base64_known_vectors() {
        // RFC 4648 §10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert_eq!(decode_base64(encoded), plain.as_bytes());
        }
        // Every alphabet position, including '+' and '/'.
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(base64(&[0x00, 0x10, 0x83]), "ABCD");
    }

    #[test]
    fn base64_f32_round_trips() {
        let vector = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            0.1,
            f32::MIN_POSITIVE,
            f32::EPSILON,
            -0.033_333_335,
        ];
        for len in 0..=vector.len() {
            let mut text = String::new();
            write_base64_f32(&vector[..len], &mut text);
            assert_eq!(text.len(), (len * 4).div_ceil(3) * 4);
            let bytes = decode_base64(&text);
            let back: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            assert_eq!(
                back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                vector[..len]
                    .iter()
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>()
            );
        }
        // 1.0f32 is 00 00 80 3f little-endian.
        let mut text = String::new();
        write_base64_f32(&[1.0], &mut text);
        assert_eq!(text, "AACAPw==");
    }

    fn response(encoding: Encoding) -> serde_json::Value {
        let mut out = Vec::new();
        let fill = |i: usize, v: &mut Vec<f32>| v.extend_from_slice(&[i as f32, 0.5]);
        write_response(&mut out, "m", 2, encoding, Usage::new(3), fill);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn response_with_floats() {
        assert_eq!(
            response(Encoding::Float),
            serde_json::json!({
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.0, 0.5]},
                    {"object": "embedding", "index": 1, "embedding": [1.0, 0.5]},
                ],
                "model": "m",
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            })
        );
    }

    #[test]
    fn response_with_base64() {
        let v = response(Encoding::Base64);
        let mut second = String::new();
        write_base64_f32(&[1.0, 0.5], &mut second);
        assert_eq!(v["data"][1]["embedding"], second.as_str());
        assert_eq!(v["data"][0]["embedding"], "AAAAAAAAAD8=");
        assert_eq!(v["data"][1]["index"], 1);
    }
}
