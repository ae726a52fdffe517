//! The streaming side of [`super`]: each upstream event's payload in, the payloads to forward out (the
//! caller frames them as `data:` events). Chunks that already follow the spec go out byte for byte.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{
    count_choice, envelope_from_value, fix_choice, fix_usage, usage_value, Endpoint, TokenCounter,
};

/// Choices counted separately for synthesised usage; OpenAI caps `n` at 128. Higher indexes share the
/// last counter, which can only merge words across choices (count low), never fail.
const MAX_COUNTED_CHOICES: usize = 128;

/// What an event that is not JSON turns into: the SDKs raise on an `error` event mid-stream.
const MALFORMED_EVENT: &str = r#"{"error":{"message":"The upstream model server sent an invalid event.","type":"server_error","param":null,"code":"upstream_error"}}"#;

/// Fields of the stream copied into the usage chunk, so it looks like the stream's other chunks.
const TEMPLATE_FIELDS: [&str; 4] = ["id", "created", "model", "system_fingerprint"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// `[DONE]` sent: anything later is dropped.
    Done,
    /// An error event sent: the stream ends there, without `[DONE]`, as standin's own streams do.
    Failed,
}

/// Repairs an upstream's stream chunk by chunk:
/// - `finish_reason: ""` or missing becomes null, a missing `index` the choice's position, a missing chat
///   `delta` `{}`, a missing `object` `chat.completion.chunk` (or `text_completion`);
/// - usage, whenever it comes (first, on a content chunk, on every chunk), is held back and sent last, just
///   before `[DONE]`, as its own chunk with `choices: []` — only if the client asked for `include_usage`;
/// - if the client asked and the upstream sent none, usage is synthesised: completion tokens by the crate's
///   token rule ([`crate::models::tokens`]) over each choice's generated text (content, reasoning, tool
///   call arguments, legacy `text`), prompt tokens as the caller estimated them;
/// - an `{"error":…}` event goes out in envelope shape and ends the stream; so does a payload that is not
///   JSON.
#[derive(Debug)]
pub struct StreamFixer {
    endpoint: Endpoint,
    include_usage: bool,
    prompt_tokens: u64,
    /// The latest usage the upstream reported.
    usage: Option<Value>,
    template: Map<String, Value>,
    counters: Vec<TokenCounter>,
    /// Per choice: a finish reason went out.
    finished: Vec<bool>,
    state: State,
}

impl StreamFixer {
    /// A fixer for one stream. `include_usage` is the client's `stream_options.include_usage`;
    /// `prompt_tokens` is used only if usage has to be synthesised.
    pub fn new(endpoint: Endpoint, include_usage: bool, prompt_tokens: u64) -> Self {
        StreamFixer {
            endpoint,
            include_usage,
            prompt_tokens,
            usage: None,
            template: Map::new(),
            counters: Vec::new(),
            finished: Vec::new(),
            state: State::Open,
        }
    }

    /// Completion tokens counted so far by standin's token rule over every choice's generated text.
    pub fn counted_tokens(&self) -> u64 {
        self.counters.iter().map(TokenCounter::count).sum()
    }

    /// Whether the stream has ended (`[DONE]` or an error was sent): nothing more will be forwarded.
    pub fn is_finished(&self) -> bool {
        self.state != State::Open
    }

    /// Takes one upstream event's data and appends the payloads to forward, in order, to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        if self.state != State::Open {
            return;
        }
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.end(out);
            return;
        }
        if self.pass_through(data, out) {
            return;
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(data) else {
            out.push(MALFORMED_EVENT.as_bytes().to_vec());
            self.state = State::Failed;
            return;
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) && !chunk.contains_key("choices") {
            // Mid-stream there is no status; a server error is what the event reports.
            out.push(envelope_from_value(500, &Value::Object(chunk)));
            self.state = State::Failed;
            return;
        }
        for field in TEMPLATE_FIELDS {
            if let (false, Some(value)) = (self.template.contains_key(field), chunk.get(field)) {
                self.template.insert(field.into(), value.clone());
            }
        }
        let mut changed = false;
        if !matches!(chunk.get("object"), Some(Value::String(s)) if !s.is_empty()) {
            chunk.insert("object".into(), self.endpoint.object(true).into());
            changed = true;
        }
        let had_usage = match chunk.remove("usage") {
            Some(Value::Null) => {
                // Null usage on content chunks is what the spec sends with include_usage: keep it then.
                if self.include_usage {
                    chunk.insert("usage".into(), Value::Null);
                } else {
                    changed = true;
                }
                false
            }
            Some(mut usage) => {
                fix_usage(&mut usage);
                self.usage = Some(usage);
                changed = true;
                true
            }
            None => false,
        };
        let choices = chunk.entry("choices").or_insert(Value::Null);
        if !choices.is_array() {
            *choices = Value::Array(Vec::new());
            changed = true;
        }
        let Some(choices) = choices.as_array_mut() else {
            return;
        };
        if choices.is_empty() && had_usage {
            // A usage-only chunk: held until the end.
            return;
        }
        for (position, choice) in choices.iter_mut().enumerate() {
            let Value::Object(choice) = choice else {
                continue;
            };
            changed |= fix_choice(choice, position, Value::Null);
            if self.endpoint == Endpoint::Chat && !choice.contains_key("delta") {
                choice.insert("delta".into(), Value::Object(Map::new()));
                changed = true;
            }
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let slot = usize::try_from(index)
                .unwrap_or(usize::MAX)
                .min(MAX_COUNTED_CHOICES - 1);
            if self.counters.len() <= slot {
                self.counters.resize(slot + 1, TokenCounter::default());
            }
            count_choice(&mut self.counters[slot], choice);
            if choice.get("finish_reason").is_some_and(Value::is_string) {
                self.mark_finished(slot);
            }
        }
        if had_usage && self.include_usage {
            chunk.insert("usage".into(), Value::Null);
        }
        out.push(if changed {
            serde_json::to_vec(&chunk).unwrap_or_default()
        } else {
            data.to_vec()
        });
    }

    /// The fast path: a chunk that already follows the spec is only read through borrowed views (no
    /// `Value` tree), counted and forwarded byte for byte. `false`: the chunk needs the full repair path.
    fn pass_through(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> bool {
        // Valid UTF-8 first: the view skips fields it does not read, so it would not notice bad bytes in
        // them, and this path forwards the bytes as they are.
        let Ok(text) = std::str::from_utf8(data) else {
            return false;
        };
        let Ok(view) = serde_json::from_str::<ChunkView<'_>>(text) else {
            return false;
        };
        let object_ok = view.object.is_some_and(|o| !o.is_empty());
        let usage_ok = match view.usage {
            None => true,
            Some(raw) => raw.get() == "null" && self.include_usage,
        };
        let Some(choices) = &view.choices else {
            return false;
        };
        let choices_ok = choices.iter().all(|c| {
            c.index.is_some()
                && matches!(&c.finish_reason, Some(reason) if reason.as_deref() != Some(""))
                && (self.endpoint != Endpoint::Chat || c.delta.is_some())
        });
        if !(object_ok && usage_ok && choices_ok && view.error.is_none_or(|e| e.get() == "null")) {
            return false;
        }
        for (field, raw) in
            TEMPLATE_FIELDS
                .iter()
                .zip([view.id, view.created, view.model, view.system_fingerprint])
        {
            if let (false, Some(raw)) = (self.template.contains_key(*field), raw) {
                if let Ok(value) = serde_json::from_str::<Value>(raw.get()) {
                    self.template.insert((*field).into(), value);
                }
            }
        }
        for choice in choices {
            let slot = usize::try_from(choice.index.unwrap_or(0))
                .unwrap_or(usize::MAX)
                .min(MAX_COUNTED_CHOICES - 1);
            if self.counters.len() <= slot {
                self.counters.resize(slot + 1, TokenCounter::default());
            }
            if matches!(&choice.finish_reason, Some(Some(_))) {
                self.mark_finished(slot);
            }
            let counter = &mut self.counters[slot];
            if let Some(text) = &choice.text {
                counter.push(text);
            }
            if let Some(delta) = &choice.delta {
                for text in [&delta.content, &delta.reasoning_content]
                    .into_iter()
                    .flatten()
                {
                    counter.push(text);
                }
                for call in delta.tool_calls.iter().flatten() {
                    if let Some(arguments) =
                        call.function.as_ref().and_then(|f| f.arguments.as_ref())
                    {
                        counter.push(arguments);
                    }
                }
            }
        }
        out.push(data.to_vec());
        true
    }

    /// The upstream ended the body without `[DONE]`: appends what must still be sent (the usage chunk if
    /// asked for, then `[DONE]`). Nothing after `[DONE]` or an error. Call it only for a clean end of body;
    /// a broken connection deserves an error event instead.
    pub fn finish(&mut self, out: &mut Vec<Vec<u8>>) {
        if self.state == State::Open {
            self.end(out);
        }
    }

    fn mark_finished(&mut self, slot: usize) {
        if self.finished.len() <= slot {
            self.finished.resize(slot + 1, false);
        }
        self.finished[slot] = true;
    }

    fn end(&mut self, out: &mut Vec<Vec<u8>>) {
        // A choice whose end was never reported gets the finish chunk OpenAI always sends, so a client that
        // reads `finish_reason` from the stream sees one.
        for slot in 0..self.counters.len() {
            if self.finished.get(slot).copied().unwrap_or(false) {
                continue;
            }
            let mut chunk = Map::new();
            for field in TEMPLATE_FIELDS {
                if let Some(value) = self.template.get(field) {
                    chunk.insert(field.into(), value.clone());
                }
            }
            chunk.insert("object".into(), self.endpoint.object(true).into());
            let mut choice = Map::new();
            choice.insert("index".into(), slot.into());
            match self.endpoint {
                Endpoint::Chat => choice.insert("delta".into(), Value::Object(Map::new())),
                Endpoint::Completions => choice.insert("text".into(), "".into()),
            };
            choice.insert("logprobs".into(), Value::Null);
            choice.insert("finish_reason".into(), "stop".into());
            chunk.insert("choices".into(), Value::Array(vec![Value::Object(choice)]));
            if self.include_usage {
                chunk.insert("usage".into(), Value::Null);
            }
            out.push(serde_json::to_vec(&chunk).unwrap_or_default());
        }
        if self.include_usage {
            let usage = self.usage.take().unwrap_or_else(|| {
                let completion = self.counters.iter().map(TokenCounter::count).sum();
                usage_value(self.prompt_tokens, completion)
            });
            let mut chunk = Map::new();
            for field in TEMPLATE_FIELDS {
                if let Some(value) = self.template.get(field) {
                    chunk.insert(field.into(), value.clone());
                }
            }
            chunk.insert("object".into(), self.endpoint.object(true).into());
            chunk.insert("choices".into(), Value::Array(Vec::new()));
            chunk.insert("usage".into(), usage);
            out.push(serde_json::to_vec(&chunk).unwrap_or_default());
        }
        out.push(b"[DONE]".to_vec());
        self.state = State::Done;
    }
}

/// Borrowed view of a chunk: just what the checks and the token count read.
#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(borrow)]
    object: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "present")]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    created: Option<&'a RawValue>,
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    system_fingerprint: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    index: Option<u64>,
    /// `None`: missing; `Some(None)`: null.
    #[serde(borrow, default, deserialize_with = "present")]
    finish_reason: Option<Option<Cow<'a, str>>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    delta: Option<DeltaView<'a>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<CallView<'a>>>,
}

#[derive(Deserialize)]
struct CallView<'a> {
    #[serde(borrow)]
    function: Option<FunctionView<'a>>,
}

#[derive(Deserialize)]
struct FunctionView<'a> {
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
}

/// A field that is present (even as `null`) becomes `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Runs `events` through a fixer (then `finish`) and returns what goes out, parsed.
    fn relay(include_usage: bool, endpoint: Endpoint, events: &[&str]) -> Vec<Value> {
        let mut fixer = StreamFixer::new(endpoint, include_usage, 7);
        let mut out = Vec::new();
        for event in events {
            fixer.push(event.as_bytes(), &mut out);
        }
        fixer.finish(&mut out);
        out.iter()
            .map(|p| {
                if p == b"[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_slice(p).unwrap()
                }
            })
            .collect()
    }

    const USAGE: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":3,"model":"m","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#;
    const HELLO: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":3,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
    const END: &str = r#"{"id":"c1","created":3,"model":"m","choices":[{"index":0,"delta":{"content":" you"},"finish_reason":""}]}"#;

    #[test]
    fn conforming_chunks_pass_byte_for_byte_and_are_counted() {
        let chunks = [
            r#"{"id":"c","object":"chat.completion.chunk","created":3,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi there"},"finish_reason":null}],"usage":null}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":3,"model":"m","choices":[{"index":0,"delta":{"content":" \"you\""},"finish_reason":null}],"usage":null}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":3,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\": 1}"}}]},"finish_reason":"stop"}],"usage":null}"#,
        ];
        let mut fixer = StreamFixer::new(Endpoint::Chat, true, 0);
        let mut out = Vec::new();
        for chunk in chunks {
            fixer.push(chunk.as_bytes(), &mut out);
        }
        let sent: Vec<&[u8]> = out.iter().map(Vec::as_slice).collect();
        let expected: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
        assert_eq!(sent, expected);
        // One running text per choice: `Hi there "you"{"a": 1}` is 4 words by the token rule.
        assert_eq!(fixer.counted_tokens(), 4);
        // Without include_usage a null usage must go: that takes the repair path.
        let mut fixer = StreamFixer::new(Endpoint::Chat, false, 0);
        let mut out = Vec::new();
        fixer.push(chunks[0].as_bytes(), &mut out);
        assert!(!String::from_utf8_lossy(&out[0]).contains("usage"));
        fixer.finish(&mut out);
        assert_eq!(out.last().map(Vec::as_slice), Some(&b"[DONE]"[..]));
        assert_eq!(fixer.template.get("id"), Some(&Value::from("c")));
    }

    #[test]
    fn early_usage_is_sent_last_when_asked() {
        let out = relay(true, Endpoint::Chat, &[USAGE, HELLO, END, "[DONE]"]);
        assert_eq!(out.len(), 5);
        assert_eq!(out[0]["choices"][0]["delta"]["content"], "Hello");
        assert_eq!(out[1]["object"], "chat.completion.chunk");
        assert_eq!(out[1]["choices"][0]["finish_reason"], Value::Null);
        // `""` was no finish: the stream gets the finish chunk OpenAI would have sent.
        assert_eq!(
            out[2],
            json!({"id":"c1","object":"chat.completion.chunk","created":3,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})
        );
        assert_eq!(
            out[3],
            json!({"id":"c1","object":"chat.completion.chunk","created":3,"model":"m","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}})
        );
        assert_eq!(out[4], "[DONE]");
    }

    #[test]
    fn usage_is_stripped_when_not_asked() {
        let with_usage = r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
        let out = relay(false, Endpoint::Chat, &[USAGE, with_usage, "[DONE]"]);
        assert_eq!(out.len(), 2);
        assert!(out[0].get("usage").is_none());
        assert_eq!(out[0]["choices"][0]["delta"]["content"], "x");
        assert_eq!(out[1], "[DONE]");
    }

    #[test]
    fn usage_on_a_content_chunk_is_moved_to_its_own_chunk() {
        let with_usage = r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
        let out = relay(true, Endpoint::Chat, &[with_usage]);
        assert_eq!(out[0]["usage"], Value::Null);
        assert_eq!(out[1]["choices"], json!([]));
        assert_eq!(
            out[1]["usage"],
            json!({"prompt_tokens":1,"completion_tokens":1,"total_tokens":2})
        );
        assert_eq!(out[2], "[DONE]");
    }

    #[test]
    fn missing_usage_is_synthesised_from_content() {
        // No [DONE] from the upstream either: finish supplies both.
        let out = relay(true, Endpoint::Chat, &[HELLO, END]);
        assert_eq!(out.len(), 5);
        assert_eq!(out[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            out[3]["usage"],
            json!({"prompt_tokens":7,"completion_tokens":2,"total_tokens":9})
        );
        assert_eq!(
            (out[3]["id"].as_str(), out[3]["model"].as_str()),
            (Some("c1"), Some("m"))
        );
        assert_eq!(out[4], "[DONE]");
    }

    #[test]
    fn synthesised_usage_counts_each_choice_apart() {
        let a = r#"{"choices":[{"index":0,"delta":{"content":"ab"}},{"index":1,"delta":{"content":"cd"}}]}"#;
        let b = r#"{"choices":[{"index":1,"delta":{"content":"ef gh"}},{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":" x"}}]}}]}"#;
        let out = relay(true, Endpoint::Chat, &[a, b, "[DONE]"]);
        // Choice 0: "ab" + " x" = 2 tokens; choice 1: "cd" + "ef gh" = "cdef gh" = 2 tokens.
        // Each choice gets its finish chunk, then the usage.
        let finished: Vec<_> = (2..4)
            .map(|i| out[i]["choices"][0]["index"].as_u64())
            .collect();
        assert_eq!(finished, [Some(0), Some(1)]);
        assert_eq!(out[4]["usage"]["completion_tokens"], 4);
    }

    #[test]
    fn compliant_chunks_pass_byte_for_byte() {
        const STOP: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":3,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        let mut fixer = StreamFixer::new(Endpoint::Chat, false, 0);
        let mut out = Vec::new();
        fixer.push(HELLO.as_bytes(), &mut out);
        fixer.push(STOP.as_bytes(), &mut out);
        fixer.push(b"[DONE]", &mut out);
        let expected: Vec<Vec<u8>> = [HELLO, STOP, "[DONE]"]
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect();
        assert_eq!(out, expected);
        assert!(fixer.is_finished());
        fixer.push(HELLO.as_bytes(), &mut out);
        fixer.finish(&mut out);
        assert_eq!(out.len(), 3, "nothing after [DONE]");
    }

    #[test]
    fn error_event_is_enveloped_and_ends_the_stream() {
        let out = relay(
            true,
            Endpoint::Chat,
            &[
                HELLO,
                r#"{"error":"CUDA out of memory","error_type":"generation"}"#,
                HELLO,
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            json!({"error":{"message":"CUDA out of memory","type":"server_error","param":null,"code":"generation"}})
        );
        let out = relay(false, Endpoint::Chat, &["not json"]);
        assert_eq!(
            (out.len(), out[0]["error"]["code"].as_str()),
            (1, Some("upstream_error"))
        );
    }

    #[test]
    fn legacy_completion_chunks() {
        let chunk = r#"{"id":"cmpl-1","choices":[{"text":"a b","index":0,"logprobs":null,"finish_reason":""}]}"#;
        let out = relay(true, Endpoint::Completions, &[chunk, "[DONE]"]);
        assert_eq!(out[0]["object"], "text_completion");
        assert_eq!(out[0]["choices"][0]["finish_reason"], Value::Null);
        assert!(out[0]["choices"][0].get("delta").is_none());
        assert_eq!(out[1]["choices"][0]["text"], "");
        assert_eq!(out[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(out[2]["object"], "text_completion");
        assert_eq!(out[2]["usage"]["completion_tokens"], 2);
        assert_eq!(out[3], "[DONE]");
    }

    #[test]
    fn chat_chunk_gets_delta_and_index() {
        let out = relay(
            false,
            Endpoint::Chat,
            &[r#"{"object":"chat.completion.chunk","choices":[{"finish_reason":"stop"}]}"#],
        );
        assert_eq!(
            out[0]["choices"][0],
            json!({"index":0,"delta":{},"finish_reason":"stop"})
        );
    }
}
