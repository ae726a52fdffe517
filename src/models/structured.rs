//! Structured output: which functions the model calls and with what arguments, and JSON replies for JSON
//! mode. Deterministic: the same functions, choice, seed and last message give the same calls.
//!
//! The rule for `auto` (the echo model's way of "deciding"): call the functions whose name the last message
//! mentions, if that message is from the user. A mention is the name as a whole word, case-insensitively,
//! where a word is a run of ASCII letters, digits, `_` and `-` (so `get_weather` is mentioned by "Call
//! GET_WEATHER for Paris" but not by "get_weather_now" or "get weather").

use serde_json::value::RawValue;

use super::schema::{self, hash};
use super::tokens;
use crate::ids;

/// A function the request offers.
#[derive(Debug, Clone, Copy)]
pub struct Function<'a> {
    /// Its name.
    pub name: &'a str,
    /// JSON Schema of its arguments; `None`: no parameters (the arguments are `{}`).
    pub parameters: Option<&'a RawValue>,
    /// Whether it may be called (an allowed-tools choice can leave some out).
    pub allowed: bool,
}

/// How the request lets the model call functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Never: answer with text.
    None,
    /// When the last (user) message mentions a function (see the module doc).
    Auto,
    /// Always: every allowed function.
    Required,
    /// This function (an index into the functions).
    Function(usize),
}

/// The functions to call, as indices in the order offered: none means answer with text. Without
/// `parallel`, at most one.
pub fn select(
    functions: &[Function<'_>],
    choice: Choice,
    parallel: bool,
    last_user_text: Option<&str>,
) -> Vec<usize> {
    let allowed = functions.iter().enumerate().filter(|(_, f)| f.allowed);
    let mut chosen: Vec<usize> = match choice {
        Choice::None => Vec::new(),
        Choice::Function(i) if i < functions.len() => vec![i],
        Choice::Function(_) => Vec::new(),
        Choice::Required => allowed.map(|(i, _)| i).collect(),
        Choice::Auto => match last_user_text {
            Some(text) => allowed
                .filter(|(_, f)| mentions(text, f.name))
                .map(|(i, _)| i)
                .collect(),
            None => Vec::new(),
        },
    };
    if !parallel {
        chosen.truncate(1);
    }
    chosen
}

/// Whether `text` mentions `name` as a whole word, ignoring ASCII case.
pub fn mentions(text: &str, name: &str) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let (text, name) = (text.as_bytes(), name.as_bytes());
    if name.is_empty() || name.len() > text.len() {
        return false;
    }
    (0..=text.len() - name.len()).any(|at| {
        text[at..at + name.len()].eq_ignore_ascii_case(name)
            && (at == 0 || !is_word(text[at - 1]))
            && text.get(at + name.len()).is_none_or(|b| !is_word(*b))
    })
}

/// One function call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Index of the function called.
    pub function: usize,
    /// Its arguments, a JSON object valid for the function's parameters (unless cut by a token limit).
    pub arguments: String,
}

/// Calls of the `selected` functions, arguments drawn from `seed` and the words of `last_text`.
pub fn calls(
    functions: &[Function<'_>],
    selected: &[usize],
    seed: u64,
    last_text: Option<&str>,
) -> Vec<Call> {
    let words = words(last_text);
    let base = hash(seed, last_text.unwrap_or(""));
    selected
        .iter()
        .map(|&i| {
            let function = &functions[i];
            let arguments = match function.parameters {
                Some(schema) => schema::generate(Some(schema), hash(base, function.name), &words),
                None => "{}".to_string(),
            };
            Call {
                function: i,
                arguments,
            }
        })
        .collect()
}

/// Keeps at most `max_tokens` argument tokens over all calls in order (the shared token rule), dropping
/// calls left with none. Returns the tokens kept and whether anything was cut.
pub fn cut(calls: &mut Vec<Call>, max_tokens: Option<u32>) -> (usize, bool) {
    let total: usize = calls.iter().map(|c| tokens::count(&c.arguments)).sum();
    let Some(max) = max_tokens.map(|m| m as usize).filter(|m| *m < total) else {
        return (total, false);
    };
    let mut left = max;
    calls.retain_mut(|call| {
        if left == 0 {
            return false;
        }
        let (mut kept, mut end) = (0, 0);
        for token in tokens::split(&call.arguments).take(left) {
            kept += 1;
            end += token.len();
        }
        left -= kept;
        call.arguments.truncate(end);
        true
    });
    (max, true)
}

/// The seed of a request's call ids: its `seed`, the length of the conversation and the last message, so a
/// repeated request gets the same ids and a conversation's later turns get new ones.
pub fn call_key(seed: u64, messages: usize, last_text: Option<&str>) -> u64 {
    hash(seed ^ ids::mix(messages as u64), last_text.unwrap_or(""))
}

/// The id of call `call` in choice `choice`: `call_` and 16 hex digits derived from `key` (the request's
/// seed and conversation), so the same request gives the same ids and ids differ between choices and calls.
pub fn call_id(key: u64, choice: u32, call: usize, buf: &mut [u8; 32]) -> &str {
    let id = ids::mix(key ^ ids::mix(u64::from(choice) << 32 | call as u64));
    ids::write_hex_id("call_", id, buf)
}

/// The JSON-mode reply without a schema: `{"echo": <the last message's text, or null>}`.
pub fn json_object(last_text: Option<&str>) -> String {
    let mut out = String::from("{\"echo\": ");
    // Serializing a string or null into a String cannot fail.
    out.push_str(&serde_json::to_string(&last_text).unwrap_or_default());
    out.push('}');
    out
}

/// The structured-output reply: JSON valid for `schema`, drawn from `seed` and the words of `last_text`.
pub fn json_schema(schema: &RawValue, seed: u64, last_text: Option<&str>) -> String {
    let base = hash(seed, last_text.unwrap_or(""));
    schema::generate(Some(schema), base, &words(last_text))
}

/// Most words of the last message reused in strings.
const MAX_WORDS: usize = 256;

/// Shorter words ("is", "a") are left out of strings when the message has longer ones.
const MIN_WORD_CHARS: usize = 3;

/// The words of `text` for generated strings: split at whitespace, punctuation at the ends trimmed, short
/// words left out unless there are no others.
fn words(text: Option<&str>) -> Vec<&str> {
    let all = text
        .unwrap_or("")
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty());
    let long: Vec<&str> = all
        .clone()
        .filter(|w| w.chars().count() >= MIN_WORD_CHARS)
        .take(MAX_WORDS)
        .collect();
    if long.is_empty() {
        all.take(MAX_WORDS).collect()
    } else {
        long
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    const WEATHER: &str =
        r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#;

    fn functions<'a>(params: &'a RawValue) -> [Function<'a>; 3] {
        let f = |name| Function {
            name,
            parameters: Some(params),
            allowed: true,
        };
        [f("get_weather"), f("get_time"), f("book-flight")]
    }

    #[test]
    fn choice_rules() {
        let params = raw(WEATHER);
        let fs = functions(params);
        let text = Some("what is the Get_Weather, and get_time?");
        assert_eq!(select(&fs, Choice::None, true, text), Vec::<usize>::new());
        assert_eq!(select(&fs, Choice::Required, true, None), vec![0, 1, 2]);
        assert_eq!(select(&fs, Choice::Required, false, None), vec![0]);
        assert_eq!(select(&fs, Choice::Function(2), true, None), vec![2]);
        assert_eq!(select(&fs, Choice::Auto, true, text), vec![0, 1]);
        assert_eq!(select(&fs, Choice::Auto, false, text), vec![0]);
        // Auto needs a user message that mentions a name.
        assert_eq!(select(&fs, Choice::Auto, true, None), Vec::<usize>::new());
        assert_eq!(
            select(&fs, Choice::Auto, true, Some("weather please")),
            Vec::<usize>::new()
        );
        let mut limited = fs;
        limited[0].allowed = false;
        assert_eq!(select(&limited, Choice::Auto, true, text), vec![1]);
        assert_eq!(select(&limited, Choice::Required, true, None), vec![1, 2]);
    }

    #[test]
    fn mentions_are_whole_words() {
        assert!(mentions("call GET_WEATHER now", "get_weather"));
        assert!(mentions("get_weather", "get_weather"));
        assert!(mentions("(book-flight)", "book-flight"));
        assert!(!mentions("get_weather_now", "get_weather"));
        assert!(!mentions("get weather", "get_weather"));
        assert!(!mentions("a-f", "f"));
        assert!(mentions("f, then g", "f"));
        assert!(!mentions("", "f"));
    }

    #[test]
    fn calls_are_deterministic_json() {
        let params = raw(WEATHER);
        let fs = functions(params);
        let a = calls(&fs, &[0, 1], 42, Some("weather in Paris"));
        assert_eq!(a, calls(&fs, &[0, 1], 42, Some("weather in Paris")));
        assert_ne!(a, calls(&fs, &[0, 1], 43, Some("weather in Paris")));
        for call in &a {
            let v: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
            let city = v["city"].as_str().unwrap();
            assert!(
                city.split(' ').all(|w| ["weather", "Paris"].contains(&w)),
                "{city}"
            );
        }
        let none = [Function {
            name: "ping",
            parameters: None,
            allowed: true,
        }];
        assert_eq!(calls(&none, &[0], 1, None)[0].arguments, "{}");
    }

    #[test]
    fn cut_keeps_the_first_tokens() {
        let mk = |a: &str| Call {
            function: 0,
            arguments: a.to_string(),
        };
        let mut all = vec![mk(r#"{"a": 1, "b": 2}"#), mk(r#"{"c": 3}"#)];
        assert_eq!(cut(&mut all.clone(), None), (6, false));
        assert_eq!(cut(&mut all.clone(), Some(6)), (6, false));
        assert_eq!(cut(&mut all, Some(3)), (3, true));
        assert_eq!(all, vec![mk(r#"{"a": 1, "b":"#)]);
        let mut all = vec![mk(r#"{"a": 1, "b": 2}"#), mk(r#"{"c": 3}"#)];
        assert_eq!(cut(&mut all, Some(5)), (5, true));
        assert_eq!(all[1].arguments, r#"{"c":"#);
    }

    #[test]
    fn ids_differ_by_choice_and_call() {
        let (mut a, mut b, mut c) = ([0; 32], [0; 32], [0; 32]);
        let (x, y, z) = (
            call_id(5, 0, 0, &mut a).to_string(),
            call_id(5, 1, 0, &mut b).to_string(),
            call_id(5, 0, 1, &mut c).to_string(),
        );
        assert!(x.starts_with("call_") && x.len() == 21, "{x}");
        assert!(x != y && x != z && y != z);
        assert_eq!(call_id(5, 0, 0, &mut a), x);
    }

    #[test]
    fn json_object_echoes() {
        assert_eq!(json_object(Some("hi \"x\"")), r#"{"echo": "hi \"x\""}"#);
        assert_eq!(json_object(None), r#"{"echo": null}"#);
        assert_eq!(tokens::count(&json_object(Some("a b"))), 3);
    }
}
