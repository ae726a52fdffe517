//! Repairs for what OpenAI-compatible servers get wrong, so clients see the OpenAI spec whatever the
//! upstream: error bodies re-shaped into the `{"error":{…}}` envelope, and completion bodies with the
//! fields SDKs require (`finish_reason` null rather than `""`, an `object`, a `usage`). Pure functions over
//! bytes; the streaming side is [`stream::StreamFixer`]. Content is never touched.

mod stream;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::openai::response::Usage;

pub use stream::StreamFixer;

/// Longest error message passed on, in characters: an upstream's HTML error page or stack trace is not a
/// message, and 1,000 characters keeps every real validation message whole.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// Which API a body belongs to; decides the `object` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`: `chat.completion` and `chat.completion.chunk`.
    Chat,
    /// Legacy `/v1/completions`: `text_completion` for both.
    Completions,
}

impl Endpoint {
    fn object(self, streaming: bool) -> &'static str {
        match (self, streaming) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }
}

/// The `type` for an error whose upstream gave none, as standin's own errors word it (`openai::error`,
/// `ratelimit`): every 4xx is an `invalid_request_error` (OpenAI's 401 and 404 included), a 429 is a
/// `requests` limit, and anything else is the upstream's failure, a `server_error`.
pub fn error_type(status: u16) -> &'static str {
    match status {
        429 => "requests",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

#[derive(Serialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Serialize)]
struct ErrorBody {
    message: String,
    #[serde(rename = "type")]
    kind: String,
    param: Option<String>,
    code: Option<String>,
}

/// Re-shapes an upstream's error body into `{"error":{"message","type","param","code"}}` with a string
/// message and type, and `param` and `code` strings or null. Understood: OpenAI's shape (integer codes
/// become strings, or null when equal to the status), flat `{"message","type","code"}` (older vLLM),
/// `{"error":"text"}` (Ollama; TGI's `error_type` becomes the code), FastAPI's `{"detail":…}` (text, or
/// validation errors joined, the first one's location as `param`). Anything else becomes the message,
/// HTML tags stripped, cut to [`MAX_MESSAGE_CHARS`].
pub fn error_envelope(status: u16, body: &[u8]) -> Vec<u8> {
    let error = match serde_json::from_slice::<Value>(body) {
        Ok(value) => from_json(status, &value),
        Err(_) => text_error(status, &String::from_utf8_lossy(body)),
    };
    encode(error)
}

/// The envelope for an already parsed error value (a body or an SSE error event).
fn envelope_from_value(status: u16, value: &Value) -> Vec<u8> {
    encode(from_json(status, value))
}

fn encode(error: ErrorBody) -> Vec<u8> {
    // Strings and options only: serializing cannot fail.
    serde_json::to_vec(&Envelope { error }).unwrap_or_default()
}

fn from_json(status: u16, value: &Value) -> ErrorBody {
    let Value::Object(top) = value else {
        return match value {
            Value::String(text) => text_error(status, text),
            other => text_error(status, &other.to_string()),
        };
    };
    match top.get("error") {
        Some(Value::Object(inner)) => fields(status, inner),
        Some(Value::String(text)) => ErrorBody {
            code: top.get("error_type").and_then(code_of(status)),
            ..text_error(status, text)
        },
        Some(other) if !other.is_null() => text_error(status, &other.to_string()),
        _ => match top.get("detail") {
            Some(detail) => from_detail(status, detail),
            None if top.get("message").is_some() => fields(status, top),
            None => text_error(status, &value.to_string()),
        },
    }
}

/// OpenAI-style fields, each repaired to its spec type.
fn fields(status: u16, map: &Map<String, Value>) -> ErrorBody {
    let message = match map.get("message") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Null) | None => default_message(status),
        Some(other) => other.to_string(),
    };
    let kind = match map.get("type") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => error_type(status).to_string(),
    };
    ErrorBody {
        message: truncate(message),
        kind,
        param: map.get("param").and_then(param_of),
        code: map.get("code").and_then(code_of(status)),
    }
}

/// FastAPI / pydantic: `{"detail": "text"}` or `{"detail": [{"loc": [...], "msg": "...", ...}]}`.
fn from_detail(status: u16, detail: &Value) -> ErrorBody {
    let Value::Array(items) = detail else {
        return match detail {
            Value::String(text) => text_error(status, text),
            other => text_error(status, &other.to_string()),
        };
    };
    let mut message = String::new();
    let mut param = None;
    for item in items {
        let loc = item.get("loc").and_then(param_of);
        let msg = item
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("invalid value");
        if !message.is_empty() {
            message.push_str("; ");
        }
        match &loc {
            Some(loc) => message.push_str(&format!("{loc}: {msg}")),
            None => message.push_str(msg),
        }
        param = param.or(loc);
    }
    ErrorBody {
        param,
        ..text_error(status, &message)
    }
}

/// A string param as is; a location list (`["body", "messages", 0]`) joined with dots, `body` dropped.
fn param_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(parts) => {
            let parts: Vec<String> = parts
                .iter()
                .skip_while(|p| p.as_str() == Some("body"))
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                .collect();
            (!parts.is_empty()).then(|| parts.join("."))
        }
        _ => None,
    }
}

/// A string code as is; an integer as its digits, or null when it only repeats the HTTP status.
fn code_of(status: u16) -> impl Fn(&Value) -> Option<String> {
    move |value| match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.as_u64() == Some(u64::from(status)) => None,
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An error from free text: HTML tags removed, whitespace collapsed, cut to size.
fn text_error(status: u16, text: &str) -> ErrorBody {
    let text = if text.trim_start().starts_with('<') {
        strip_tags(text)
    } else {
        text.to_string()
    };
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    ErrorBody {
        message: if text.is_empty() {
            default_message(status)
        } else {
            truncate(text)
        },
        kind: error_type(status).to_string(),
        param: None,
        code: None,
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn default_message(status: u16) -> String {
    format!("The upstream model server returned HTTP {status}.")
}

fn truncate(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// Counts tokens of text that arrives in pieces, with the crate's one rule ([`crate::models::tokens`]): a token is a run
/// of non-whitespace with the whitespace before it, so the count is the number of such runs, or 1 for
/// text that is all whitespace. Pieces may split a word; the count is the same as for the joined text.
#[derive(Debug, Default, Clone, Copy)]
struct TokenCounter {
    runs: u64,
    in_word: bool,
    any: bool,
}

impl TokenCounter {
    fn push(&mut self, text: &str) {
        for c in text.chars() {
            let word = !c.is_whitespace();
            self.runs += u64::from(word && !self.in_word);
            self.in_word = word;
            self.any = true;
        }
    }

    fn count(&self) -> u64 {
        if self.runs == 0 {
            u64::from(self.any)
        } else {
            self.runs
        }
    }
}

/// Feeds `counter` the generated text of one choice (message or delta): content, reasoning, tool call
/// arguments, legacy `text`. All of it is generated, so all of it counts as completion tokens.
fn count_choice(counter: &mut TokenCounter, choice: &Map<String, Value>) {
    let mut push = |v: Option<&Value>| {
        if let Some(Value::String(s)) = v {
            counter.push(s);
        }
    };
    push(choice.get("text"));
    for key in ["message", "delta"] {
        let Some(Value::Object(msg)) = choice.get(key) else {
            continue;
        };
        push(msg.get("content"));
        push(msg.get("reasoning_content"));
        if let Some(Value::Array(calls)) = msg.get("tool_calls") {
            for call in calls {
                push(call.get("function").and_then(|f| f.get("arguments")));
            }
        }
    }
}

/// `finish_reason: ""` or missing becomes `missing` (null in a stream chunk, where the end comes later;
/// `stop` in a whole body, which is the end); a missing `index` becomes the choice's position. True if changed.
fn fix_choice(choice: &mut Map<String, Value>, position: usize, missing: Value) -> bool {
    let mut changed = false;
    match choice.get("finish_reason") {
        Some(Value::String(s)) if s.is_empty() => {
            choice.insert("finish_reason".into(), missing);
            changed = true;
        }
        None => {
            choice.insert("finish_reason".into(), missing);
            changed = true;
        }
        _ => {}
    }
    if !choice.contains_key("index") {
        choice.insert("index".into(), position.into());
        changed = true;
    }
    changed
}

/// A usage object with `total_tokens` filled in when the upstream left it out; true if changed.
fn fix_usage(usage: &mut Value) -> bool {
    let Value::Object(map) = usage else {
        return false;
    };
    let count = |k: &str| map.get(k).and_then(Value::as_u64);
    match (
        count("prompt_tokens"),
        count("completion_tokens"),
        map.get("total_tokens"),
    ) {
        (Some(p), Some(c), None) => {
            map.insert("total_tokens".into(), (p + c).into());
            true
        }
        _ => false,
    }
}

fn usage_value(prompt_tokens: u64, completion_tokens: u64) -> Value {
    serde_json::to_value(Usage::new(prompt_tokens, completion_tokens)).unwrap_or(Value::Null)
}

/// Repairs a whole (non-streaming) completion body: `object` added if missing, each choice's
/// `finish_reason` null rather than `""` or missing, `usage` added when missing (completion tokens counted
/// by the [`crate::models::tokens`] rule over the generated text, prompt tokens as the caller estimates them). Returns the
/// body unchanged when nothing needed fixing, and `None` for a body that is not a completion (not JSON, or
/// an error object), which the caller treats as an upstream error.
pub fn fix_completion(endpoint: Endpoint, body: &[u8], prompt_tokens: u64) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let Some(Value::Array(choices)) = map.get_mut("choices") else {
        return None;
    };
    let mut changed = false;
    let mut completion_tokens = 0;
    for (position, choice) in choices.iter_mut().enumerate() {
        if let Value::Object(choice) = choice {
            // A whole body is the end: a missing reason is the natural one.
            let calls = (choice.get("message").and_then(|m| m.get("tool_calls")))
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty());
            let missing = if calls { "tool_calls" } else { "stop" };
            changed |= fix_choice(choice, position, Value::from(missing));
            // Required by the spec (nullable); many servers leave them out.
            if !choice.contains_key("logprobs") {
                choice.insert("logprobs".into(), Value::Null);
                changed = true;
            }
            if let Some(Value::Object(message)) = choice.get_mut("message") {
                if !message.contains_key("refusal") {
                    message.insert("refusal".into(), Value::Null);
                    changed = true;
                }
            }
            let mut counter = TokenCounter::default();
            count_choice(&mut counter, choice);
            completion_tokens += counter.count();
        }
    }
    if !matches!(map.get("object"), Some(Value::String(s)) if !s.is_empty()) {
        map.insert("object".into(), endpoint.object(false).into());
        changed = true;
    }
    match map.get_mut("usage") {
        Some(usage) if !usage.is_null() => changed |= fix_usage(usage),
        _ => {
            map.insert(
                "usage".into(),
                usage_value(prompt_tokens, completion_tokens),
            );
            changed = true;
        }
    }
    if !changed {
        return Some(body.to_vec());
    }
    serde_json::to_vec(&map).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::models::tokens;

    fn envelope(status: u16, body: &str) -> Value {
        serde_json::from_slice(&error_envelope(status, body.as_bytes())).unwrap()
    }

    fn shape(message: &str, kind: &str, param: Value, code: Value) -> Value {
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
    }

    #[test]
    fn upstream_error_shapes_become_the_envelope() {
        let null = Value::Null;
        for (status, body, expected) in [
            (400, r#"{"error":{"message":"bad","type":"invalid_request_error","param":"n","code":"x"}}"#, shape("bad", "invalid_request_error", json!("n"), json!("x"))),
            (429, r#"{"error":{"message":"slow down","code":429}}"#, shape("slow down", "requests", null.clone(), null.clone())),
            (400, r#"{"error":{"message":"m","code":1234,"type":""}}"#, shape("m", "invalid_request_error", null.clone(), json!("1234"))),
            (400, r#"{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}"#, shape("too long", "BadRequestError", null.clone(), null.clone())),
            (404, r#"{"error":"model 'llama3' not found"}"#, shape("model 'llama3' not found", "invalid_request_error", null.clone(), null.clone())),
            (422, r#"{"error":"Input validation error: `inputs` must be non-empty","error_type":"validation"}"#, shape("Input validation error: `inputs` must be non-empty", "invalid_request_error", null.clone(), json!("validation"))),
            (401, r#"{"detail":"Not authenticated"}"#, shape("Not authenticated", "invalid_request_error", null.clone(), null.clone())),
            (422, r#"{"detail":[{"loc":["body","messages",0,"role"],"msg":"field required","type":"missing"},{"loc":["body","n"],"msg":"too big"}]}"#,
                shape("messages.0.role: field required; n: too big", "invalid_request_error", json!("messages.0.role"), null.clone())),
            (500, r#"{"error":{"message":{"nested":true}}}"#, shape(r#"{"nested":true}"#, "server_error", null.clone(), null.clone())),
            (503, "upstream connect error or disconnect/reset before headers", shape("upstream connect error or disconnect/reset before headers", "server_error", null.clone(), null.clone())),
            (502, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>", shape("502 Bad Gateway 502 Bad Gateway", "server_error", null.clone(), null.clone())),
            (500, "", shape("The upstream model server returned HTTP 500.", "server_error", null.clone(), null.clone())),
            (400, "[1,2]", shape("[1,2]", "invalid_request_error", null.clone(), null.clone())),
            (400, r#"{"error":{"param":["messages",1]}}"#, shape("The upstream model server returned HTTP 400.", "invalid_request_error", json!("messages.1"), null)),
        ] {
            assert_eq!(envelope(status, body), expected, "{body}");
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let v = envelope(500, &"é".repeat(MAX_MESSAGE_CHARS + 5));
        let message = v["error"]["message"].as_str().unwrap();
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
        let v = envelope(
            400,
            &json!({"error": {"message": "x".repeat(5000)}}).to_string(),
        );
        assert_eq!(
            v["error"]["message"].as_str().unwrap().chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn token_counter_matches_the_crate_rule_over_any_split() {
        for text in [
            "Hello  world, again",
            "   ",
            "",
            " a ",
            "a\n\nb\t",
            "héllo wörld",
        ] {
            for i in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                let mut counter = TokenCounter::default();
                counter.push(&text[..i]);
                counter.push(&text[i..]);
                assert_eq!(
                    counter.count(),
                    tokens::count(text) as u64,
                    "{text:?} split at {i}"
                );
            }
        }
    }

    fn fixed(endpoint: Endpoint, body: &Value) -> Value {
        let out = fix_completion(endpoint, body.to_string().as_bytes(), 5).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn completion_gets_a_finish_reason_object_and_usage() {
        let body = json!({"id":"c","model":"m","choices":[
            {"message":{"role":"assistant","content":"two words  \n"},"finish_reason":""},
            {"index":1,"message":{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":"{\"a\": 1}"}}]}}]});
        let v = fixed(Endpoint::Chat, &body);
        assert_eq!(v["object"], "chat.completion");
        // The spec's whole completion has no null finish_reason: the body ended, so `stop` (or `tool_calls`).
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["choices"][0]["index"], 0);
        assert_eq!(v["choices"][1]["finish_reason"], "tool_calls");
        // Fields the spec requires (nullable) are added.
        assert_eq!(v["choices"][0]["logprobs"], Value::Null);
        assert_eq!(v["choices"][0]["message"]["refusal"], Value::Null);
        assert!(v["choices"][0]
            .as_object()
            .unwrap()
            .contains_key("logprobs"));
        // Content is passed on byte for byte, trailing whitespace included.
        assert_eq!(v["choices"][0]["message"]["content"], "two words  \n");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens":5,"completion_tokens":4,"total_tokens":9})
        );
    }

    #[test]
    fn legacy_completion_and_partial_usage() {
        let body = json!({"object":"text_completion","choices":[{"index":0,"text":"a b c","finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":3}});
        let v = fixed(Endpoint::Completions, &body);
        assert_eq!(v["usage"]["total_tokens"], 5);
        let body = json!({"choices":[{"index":0,"text":"a b c","finish_reason":"length"}]});
        let v = fixed(Endpoint::Completions, &body);
        assert_eq!(
            (
                v["object"].as_str(),
                v["usage"]["completion_tokens"].as_u64()
            ),
            (Some("text_completion"), Some(3))
        );
    }

    #[test]
    fn compliant_body_is_passed_through_byte_for_byte() {
        let body = br#"{"object":"chat.completion","choices":[{"index":0,"message":{"content":"\u00e9 ","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        assert_eq!(fix_completion(Endpoint::Chat, body, 0).unwrap(), body);
    }

    #[test]
    fn non_completions_are_refused() {
        assert_eq!(fix_completion(Endpoint::Chat, b"<html>", 0), None);
        assert_eq!(
            fix_completion(Endpoint::Chat, br#"{"error":{"message":"x"}}"#, 0),
            None
        );
    }
}
