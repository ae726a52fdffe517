//! JSON helpers for request validation: a nesting-depth pre-scan (so serde never recurses deeper than the
//! configured limit on a coroutine stack) and typed readers over borrowed `RawValue`s that name the field at
//! fault when the type or range is wrong.

use std::borrow::Cow;
use std::fmt::Display;

use serde_json::value::RawValue;

use super::error::ApiError;

/// Fails if `body` nests arrays/objects deeper than `max` (strings and escapes skipped correctly).
pub fn check_depth(body: &[u8], max: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        match b {
            // Strings are most of a body: skipped to their closing quote eight bytes at a time.
            b'"' => loop {
                i = string_run_end(body, i);
                match body.get(i) {
                    Some(b'\\') => i += 2,
                    Some(_) => {
                        i += 1;
                        break;
                    }
                    None => break,
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    let message = format!(
                        "The request body nests JSON deeper than the limit of {max} levels."
                    );
                    return Err(ApiError::invalid(message, None, "json_too_deep"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Where the run of string bytes from `i` ends: at the next `"` or `\\` (or the end of `s`).
fn string_run_end(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = ONES * 0x80;
    // A byte of `x` is zero where `(x - ONES) & !x & HIGHS` has its top bit.
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    while let Some(word) = s.get(i..i + 8) {
        let w = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        if zero_byte(w ^ (ONES * u64::from(b'"'))) | zero_byte(w ^ (ONES * u64::from(b'\\'))) != 0 {
            break;
        }
        i += 8;
    }
    while s.get(i).is_some_and(|&b| b != b'"' && b != b'\\') {
        i += 1;
    }
    i
}

/// Checks a request body (UTF-8, nesting depth) and reads its top-level fields into `T`: the first step of
/// every endpoint's parser.
pub fn parse_body<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
    max_depth: usize,
) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::invalid("The request body is not valid UTF-8.", None, "invalid_json")
    })?;
    check_depth(body, max_depth)?;
    serde_json::from_str(text).map_err(|e| {
        let message = format!(
            "We could not parse the JSON body of your request ({e}). The body must be a JSON object."
        );
        ApiError::invalid(message, None, "invalid_json")
    })
}

/// The required, non-empty `model` field.
pub fn model(raw: Option<&RawValue>) -> Result<Cow<'_, str>, ApiError> {
    let model = string(raw.ok_or_else(|| missing("model"))?, "model")?;
    if model.is_empty() {
        return Err(out_of_range("model", "that is a non-empty string", "''"));
    }
    Ok(model)
}

/// A required field is absent.
pub fn missing(param: impl Display) -> ApiError {
    let param = param.to_string();
    ApiError::invalid(
        format!("Missing required parameter: '{param}'."),
        Some(&param),
        "missing_required_parameter",
    )
}

#[derive(serde::Deserialize)]
struct RawStreamOptions<'a> {
    #[serde(borrow)]
    include_usage: Option<&'a RawValue>,
    #[serde(borrow)]
    include_obfuscation: Option<&'a RawValue>,
}

/// `stream_options`, allowed only with `stream: true` (as OpenAI rules); returns `include_usage`.
pub fn stream_options(raw: Option<&RawValue>, stream: bool) -> Result<bool, ApiError> {
    let Some(options) = raw else { return Ok(false) };
    if !stream {
        let message = "The 'stream_options' parameter is only allowed when 'stream' is enabled.";
        return Err(ApiError::invalid(
            message,
            Some("stream_options"),
            "invalid_value",
        ));
    }
    let options: RawStreamOptions<'_> = object(options, "stream_options")?;
    if let Some(v) = options.include_obfuscation {
        boolean(v, "stream_options.include_obfuscation")?;
    }
    options
        .include_usage
        .map_or(Ok(false), |v| boolean(v, "stream_options.include_usage"))
}

/// `stop`: a string or up to `MAX_STOP` strings; empty strings are dropped.
pub fn stop(raw: &RawValue) -> Result<Vec<Cow<'_, str>>, ApiError> {
    use super::chat::MAX_STOP;
    if raw.get().starts_with('"') {
        let s = string(raw, "stop")?;
        return Ok(if s.is_empty() { Vec::new() } else { vec![s] });
    }
    let items = array(raw, "stop")?;
    if items.len() > MAX_STOP {
        return Err(out_of_range(
            "stop",
            &format!("with at most {MAX_STOP} items"),
            format!("{} items", items.len()),
        ));
    }
    let mut stop = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let s = string(item, format_args!("stop[{i}]"))?;
        if !s.is_empty() {
            stop.push(s);
        }
    }
    Ok(stop)
}

/// The JSON kind of a raw value, for error messages.
pub fn kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn wrong_type(param: impl Display, expected: &str, raw: &RawValue) -> ApiError {
    let param = param.to_string();
    let got = kind(raw);
    let noun = got.trim_start_matches("an ").trim_start_matches("a ");
    let message = if expected.contains(noun) {
        // Right kind, unreadable value: a lone surrogate escape, or a number past f64's range.
        let why = if got == "a string" {
            "it holds an invalid escape, such as a lone surrogate"
        } else {
            "it is out of range"
        };
        format!("Invalid type for '{param}': expected {expected}, but got {got} that cannot be read: {why}.")
    } else {
        format!("Invalid type for '{param}': expected {expected}, but got {got} instead.")
    };
    ApiError::invalid(message, Some(&param), "invalid_type")
}

/// A range error in OpenAI's wording.
pub fn out_of_range(param: impl Display, rule: &str, got: impl Display) -> ApiError {
    let param = param.to_string();
    let message =
        format!("Invalid value for '{param}': expected a value {rule}, but got {got} instead.");
    ApiError::invalid(message, Some(&param), "invalid_value")
}

/// A string, borrowed when it has no escapes. `param` (here and below) is only formatted on error, so
/// callers pass `format_args!` paths without allocating on success.
pub fn string<'a>(raw: &'a RawValue, param: impl Display + Copy) -> Result<Cow<'a, str>, ApiError> {
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(wrong_type(param, "a string", raw));
    }
    // serde_json checked the value when it made the RawValue (UTF-8, no raw control characters), so a
    // string without escapes is exactly the text between its quotes.
    if !text.contains('\\') {
        return Ok(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    if let Ok(s) = serde_json::from_str::<&'a str>(text) {
        return Ok(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw.get())
        .map(Cow::Owned)
        .map_err(|_| wrong_type(param, "a string", raw))
}

/// An integer in `min..=max`.
pub fn integer(
    raw: &RawValue,
    param: impl Display + Copy,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let n: i64 =
        serde_json::from_str(raw.get()).map_err(|_| wrong_type(param, "an integer", raw))?;
    if n < min {
        return Err(out_of_range(param, &format!(">= {min}"), n));
    }
    if n > max {
        return Err(out_of_range(param, &format!("<= {max}"), n));
    }
    Ok(n)
}

/// A number in `min..=max`.
pub fn number(
    raw: &RawValue,
    param: impl Display + Copy,
    min: f64,
    max: f64,
) -> Result<f64, ApiError> {
    if kind(raw) != "a number" {
        return Err(wrong_type(param, "a number", raw));
    }
    let n: f64 = serde_json::from_str(raw.get()).map_err(|_| wrong_type(param, "a number", raw))?;
    if !(min..=max).contains(&n) {
        return Err(out_of_range(param, &format!("between {min} and {max}"), n));
    }
    Ok(n)
}

/// A boolean.
pub fn boolean(raw: &RawValue, param: impl Display + Copy) -> Result<bool, ApiError> {
    match raw.get() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(wrong_type(param, "a boolean", raw)),
    }
}

/// The members of an array.
pub fn array(raw: &RawValue, param: impl Display + Copy) -> Result<Vec<&RawValue>, ApiError> {
    if !raw.get().starts_with('[') {
        return Err(wrong_type(param, "an array", raw));
    }
    serde_json::from_str(raw.get()).map_err(|_| wrong_type(param, "an array", raw))
}

/// Checks that a value is an object and reads it as `T`.
pub fn object<'a, T: serde::Deserialize<'a>>(
    raw: &'a RawValue,
    param: impl Display + Copy,
) -> Result<T, ApiError> {
    if !raw.get().starts_with('{') {
        return Err(wrong_type(param, "an object", raw));
    }
    serde_json::from_str(raw.get()).map_err(|e| {
        let param = param.to_string();
        let message = format!("Invalid '{param}': {e}.");
        ApiError::invalid(message, Some(&param), "invalid_value")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn depth_counts_only_structure() {
        assert!(check_depth(br#"{"a":[[1]]}"#, 3).is_ok());
        assert_eq!(
            check_depth(br#"{"a":[[[1]]]}"#, 3).unwrap_err().code,
            Some("json_too_deep")
        );
        // Brackets inside strings, including after escaped quotes, do not count.
        assert!(check_depth(br#"{"a":"[[[[\"[[[["}"#, 1).is_ok());
        assert!(check_depth(&b"[".repeat(100_000), 64).is_err());
        // Escaped quotes and backslashes at every offset of the eight-byte steps, and strings left open.
        for pad in 0..10 {
            let text = "x".repeat(pad);
            let body = format!(r#"{{"a":"{text}\\\"[[[\\","b":[["{text}\\\\"]]}}"#);
            assert!(check_depth(body.as_bytes(), 3).is_ok(), "{body}");
            assert!(check_depth(body.as_bytes(), 2).is_err(), "{body}");
            let open = format!(r#"{{"a":"{text}\\"#);
            assert!(check_depth(open.as_bytes(), 1).is_ok(), "{open}");
        }
    }

    #[test]
    fn readers_name_the_param() {
        let e = integer(raw(r#""2""#), "n", 1, 128).unwrap_err();
        assert_eq!(
            (e.param.as_deref(), e.code),
            (Some("n"), Some("invalid_type"))
        );
        assert!(e.message.contains("got a string"), "{}", e.message);
        let e = integer(raw("200"), "n", 1, 128).unwrap_err();
        assert_eq!(e.code, Some("invalid_value"));
        assert!(integer(raw("2.5"), "n", 1, 128).is_err());
        assert_eq!(integer(raw("7"), "n", 1, 128).unwrap(), 7);
        assert_eq!(number(raw("1.5"), "t", 0.0, 2.0).unwrap(), 1.5);
        assert!(number(raw("true"), "t", 0.0, 2.0).is_err());
        assert!(number(raw("2.01"), "t", 0.0, 2.0).is_err());
        assert!(boolean(raw("1"), "stream").is_err());
        assert!(array(raw("{}"), "messages").is_err());
        assert_eq!(array(raw("[1, {}]"), "m").unwrap().len(), 2);
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        assert!(matches!(
            string(raw(r#""plain""#), "s").unwrap(),
            Cow::Borrowed("plain")
        ));
        assert_eq!(string(raw(r#""a\nb""#), "s").unwrap(), "a\nb");
        assert!(string(raw("5"), "s").is_err());
        assert!(matches!(
            string(raw(r#" "" "#), "s").unwrap(),
            Cow::Borrowed("")
        ));
        assert_eq!(string(raw(r#""é\u00e9 \\""#), "s").unwrap(), "éé \\");
        assert!(matches!(
            string(raw(r#""né ☃""#), "s").unwrap(),
            Cow::Borrowed("né ☃")
        ));
    }

    #[test]
    fn booleans_are_only_true_and_false() {
        assert!(boolean(raw(" true "), "stream").unwrap());
        assert!(!boolean(raw("false"), "stream").unwrap());
        for other in ["1", "null", r#""true""#, "[true]"] {
            let e = boolean(raw(other), "stream").unwrap_err();
            assert_eq!(e.code, Some("invalid_type"), "{other}");
        }
    }
}
