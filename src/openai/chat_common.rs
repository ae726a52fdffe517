//! The common chat request read in one pass over its bytes: `model`, `messages` whose roles and contents
//! are plain strings, `stream`, `stream_options`, `max_tokens`, `max_completion_tokens`, `temperature` and
//! `top_p`. Anything else, and anything this reader is not sure of (escapes, nulls, duplicate keys, unknown
//! fields, content parts, values near a limit), is left to the full parser in `chat.rs`, which also words
//! every error. The tests hold the two to the same answer wherever this one gives one.

use std::borrow::Cow;

use super::chat::{ChatRequest, Message, ResponseFormat, Role};
use super::cursor::Cursor;
use super::tools::parse_tools;

/// The request, or `None`: the full parser decides.
pub fn parse(body: &[u8], max_depth: usize) -> Option<ChatRequest<'_>> {
    // The shape read here nests three deep (body, messages, a message).
    if max_depth < 3 {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut r = Reader { text, i: 0 };
    let mut fields = Fields::default();
    r.object(|r, key| fields.read(r, key))?;
    r.ws();
    if r.i != body.len() {
        return None;
    }
    let model = fields.model.filter(|m| !m.is_empty())?;
    let messages = fields.messages?;
    let stream = fields.stream.unwrap_or(false);
    if fields.include_usage.is_some() && !stream {
        return None;
    }
    let (tools, tool_choice) = parse_tools(None, None).ok()?;
    Some(ChatRequest {
        model: Cow::Borrowed(model),
        messages,
        max_tokens: fields.max_completion_tokens.or(fields.max_tokens),
        n: 1,
        stop: Vec::new(),
        stream,
        include_usage: fields.include_usage.unwrap_or(false),
        seed: None,
        tools,
        tool_choice,
        parallel_tool_calls: true,
        response_format: ResponseFormat::Text,
        logprobs: None,
    })
}

#[derive(Default)]
struct Fields<'a> {
    model: Option<&'a str>,
    messages: Option<Vec<Message<'a>>>,
    stream: Option<bool>,
    include_usage: Option<bool>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<()>,
    top_p: Option<()>,
}

impl<'a> Fields<'a> {
    fn read(&mut self, r: &mut Reader<'a>, key: &str) -> Option<()> {
        match key {
            "model" => once(&mut self.model, r.plain_str()?),
            "messages" => once(&mut self.messages, r.messages()?),
            "stream" => once(&mut self.stream, r.boolean()?),
            "stream_options" => once(&mut self.include_usage, r.stream_options()?),
            "max_tokens" => once(&mut self.max_tokens, r.count()?),
            "max_completion_tokens" => once(&mut self.max_completion_tokens, r.count()?),
            "temperature" => once(&mut self.temperature, r.number_within(0.0, 2.0)?),
            "top_p" => once(&mut self.top_p, r.number_within(0.0, 1.0)?),
            _ => None,
        }
    }
}

/// Sets a field once: the full parser rejects a field given twice.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

struct Reader<'a> {
    text: &'a str,
    i: usize,
}

impl Cursor for Reader<'_> {
    fn text(&self) -> &[u8] {
        self.text.as_bytes()
    }

    fn at(&self) -> usize {
        self.i
    }

    fn set_at(&mut self, at: usize) {
        self.i = at;
    }
}

impl<'a> Reader<'a> {
    /// `{`, members handed to `member` by key (positioned at the value), `}`.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.list(b'{', b'}', |r| {
            let key = r.plain_str()?;
            r.eat(b':')?;
            member(r, key)
        })
    }

    /// A string with no escapes and no control characters: exactly the text between its quotes.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = super::cursor::plain_run_end(self.text.as_bytes(), start);
        // The closing quote right where the run ends: not `eat`, which would step over a raw tab or newline
        // (invalid inside a string) before it.
        if self.text.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        Some(&self.text[start..end])
    }

    fn boolean(&mut self) -> Option<bool> {
        self.ws();
        if self.literal(b"true").is_some() {
            return Some(true);
        }
        self.literal(b"false").map(|()| false)
    }

    /// A token limit: plain digits, 1 to `u32::MAX`.
    fn count(&mut self) -> Option<u32> {
        self.ws();
        let (start, end) = self.number()?;
        let text = &self.text[start..end];
        if !text.starts_with(|c: char| matches!(c, '1'..='9'))
            || !text.bytes().all(|b| b.is_ascii_digit())
            || text.len() > 10
        {
            return None;
        }
        text.parse::<u64>().ok()?.try_into().ok()
    }

    /// A number in `min..=max`, written with at most 15 digits and no exponent: such a decimal converts to
    /// the same nearest double in every correct parser (serde_json's included, by its exact fast path), so
    /// the range check agrees with the full parser's even at the ends.
    fn number_within(&mut self, min: f64, max: f64) -> Option<()> {
        self.ws();
        let (start, end) = self.number()?;
        let text = &self.text[start..end];
        if text.contains(['e', 'E']) || text.bytes().filter(u8::is_ascii_digit).count() > 15 {
            return None;
        }
        let n: f64 = text.parse().ok()?;
        (min..=max).contains(&n).then_some(())
    }

    /// `{"include_usage": bool, "include_obfuscation": bool}`, either optional.
    fn stream_options(&mut self) -> Option<bool> {
        let (mut usage, mut obfuscation) = (None, None);
        self.object(|r, key| match key {
            "include_usage" => once(&mut usage, r.boolean()?),
            "include_obfuscation" => once(&mut obfuscation, r.boolean()?),
            _ => None,
        })?;
        Some(usage.unwrap_or(false))
    }

    /// At least one message, each `{"role": …, "content": …}` with plain strings (an assistant's content
    /// may be null or absent).
    fn messages(&mut self) -> Option<Vec<Message<'a>>> {
        let mut messages = Vec::new();
        self.list(b'[', b']', |r| {
            messages.push(r.message()?);
            Some(())
        })?;
        (!messages.is_empty()).then_some(messages)
    }

    fn message(&mut self) -> Option<Message<'a>> {
        let (mut role, mut content) = (None, None);
        self.object(|r, key| match key {
            "role" => once(&mut role, r.role()?),
            "content" => {
                r.ws();
                let text = match r.literal(b"null") {
                    Some(()) => None,
                    None => Some(r.plain_str()?),
                };
                once(&mut content, text)
            }
            _ => None,
        })?;
        let role = role?;
        let text = match content {
            Some(Some(text)) => Some(Cow::Borrowed(text)),
            // A null content counts as absent, which only the assistant may leave out.
            Some(None) | None if role == Role::Assistant => None,
            _ => return None,
        };
        Some(Message { role, text })
    }

    /// A role that needs no other field (a tool message needs `tool_call_id`).
    fn role(&mut self) -> Option<Role> {
        Some(match self.plain_str()? {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "function" => Role::Function,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::chat;

    /// What the full parser gives, as text to compare (`ChatRequest` has no `PartialEq`).
    fn full(body: &str) -> Option<String> {
        chat::parse_full(body.as_bytes(), 64)
            .ok()
            .map(|r| format!("{r:?}"))
    }

    fn quick(body: &str) -> Option<String> {
        parse(body.as_bytes(), 64).map(|r| format!("{r:?}"))
    }

    const COMMON: &[&str] = &[
        r#"{"model":"mock-gpt-model","messages":[{"role":"user","content":"Hello"}]}"#,
        r#"{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say this is a test"}],"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#,
        r#" { "model" : "m" , "messages" : [ { "content" : "你好 there" , "role" : "developer" } ] , "max_tokens" : 7 , "temperature" : 0.7 , "top_p" : 1 } "#,
        r#"{"model":"m","messages":[{"role":"user","content":""},{"role":"assistant"},{"role":"assistant","content":null},{"role":"function","content":"f"}],"max_completion_tokens":4294967295,"max_tokens":3,"stream":false}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{},"temperature":2,"top_p":0}"#,
    ];

    #[test]
    fn common_requests_read_as_the_full_parser_reads_them() {
        for body in COMMON {
            let got = quick(body);
            assert!(got.is_some(), "left to the full parser: {body}");
            assert_eq!(got, full(body), "{body}");
        }
        let req = parse(COMMON[1].as_bytes(), 64).unwrap();
        assert!(req.stream && req.include_usage);
        assert_eq!(req.messages.len(), 2);
        assert!(matches!(req.model, Cow::Borrowed("gpt-4o")));
        let req = parse(COMMON[3].as_bytes(), 64).unwrap();
        assert_eq!(req.max_tokens, Some(u32::MAX));
    }

    #[test]
    fn anything_unusual_is_left_to_the_full_parser() {
        for body in [
            // Escapes, nulls, unknown fields, duplicates, other shapes.
            r#"{"model":"m\u0031","messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a\"b"}]}"#,
            r#"{"model":null,"messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":null}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":1}"#,
            r#"{"model":"m","model":"m","messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x","role":"user"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"tool","content":"x","tool_call_id":"c"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x","name":"n"}]}"#,
            // What the full parser rejects: its error wording is the answer.
            r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","messages":[]}"#,
            r#"{"model":"m"}"#,
            r#"{"model":"m","messages":[{"role":"user"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":null}]}"#,
            r#"{"model":"m","messages":[{"role":"function","content":null}]}"#,
            r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":4294967296}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1.0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":01}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":2.0000000001}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":2.00000000000000001}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1e0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":-0.5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"x":1}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}]} x"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],}"#,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"tab\there\"}]}",
            // A raw control character right before the closing quote.
            "{\"model\":\"m\t\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\r\n\"}]}",
            "\u{feff}{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        ] {
            assert_eq!(quick(body), None, "{body}");
        }
        // Nesting limits below the shape's own depth are the full parser's to enforce.
        assert!(parse(COMMON[0].as_bytes(), 2).is_none());
    }

    /// splitmix64.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % n as u64) as usize
        }
    }

    /// Requests built from the fields this reader knows, with values of every kind, and then mutated byte
    /// by byte: wherever it answers, the full parser gives the same request.
    #[test]
    fn agrees_with_the_full_parser_on_generated_and_mutated_bodies() {
        const VALUES: &[&str] = &[
            r#""m""#,
            r#""""#,
            "null",
            "true",
            "false",
            "0",
            "1",
            "7",
            "-1",
            "0.5",
            "2",
            "2.5",
            "1e0",
            "4294967295",
            "4294967296",
            r#"{}"#,
            r#"{"include_usage":true}"#,
            r#"{"include_usage":false,"include_obfuscation":true}"#,
            "[]",
            r#""a\"b""#,
        ];
        const KEYS: &[&str] = &[
            "model",
            "messages",
            "stream",
            "stream_options",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "seed",
            "n",
        ];
        const ROLES: &[&str] = &[
            "system",
            "developer",
            "user",
            "assistant",
            "function",
            "tool",
            "x",
        ];
        const MUTATE: &[u8] = b"{}[]:,\" \\0123456789.eE+-truefalsn\t\n\r\x01";
        let mut rng = Rng(3);
        let (mut answered, mut total) = (0, 0);
        for _ in 0..40_000 {
            let mut members = vec![r#""model":"mock-gpt-model""#.to_string()];
            let mut messages = Vec::new();
            for _ in 0..rng.below(3) + usize::from(rng.below(8) > 0) {
                // Mostly what the reader takes, so that its answers get compared.
                let role = match rng.below(10) {
                    0 => ROLES[rng.below(ROLES.len())],
                    _ => ROLES[rng.below(4)],
                };
                let mut parts = vec![format!(r#""role":"{role}""#)];
                match rng.below(8) {
                    0 => {}
                    1 => parts.push(r#""content":null"#.into()),
                    _ => parts.push(format!(r#""content":"word {}""#, rng.below(100))),
                }
                if rng.below(6) == 0 {
                    parts.reverse();
                }
                messages.push(format!("{{{}}}", parts.join(",")));
            }
            members.push(format!(r#""messages":[{}]"#, messages.join(",")));
            for _ in 0..rng.below(4).saturating_sub(1) {
                let key = KEYS[rng.below(KEYS.len())];
                members.push(format!(r#""{key}":{}"#, VALUES[rng.below(VALUES.len())]));
            }
            if rng.below(2) == 0 {
                members.swap(0, 1);
            }
            let mut body = format!("{{{}}}", members.join(",")).into_bytes();
            if rng.below(3) == 0 {
                for _ in 0..rng.below(3) + 1 {
                    let at = rng.below(body.len());
                    let byte = MUTATE[rng.below(MUTATE.len())];
                    match rng.below(3) {
                        0 => body[at] = byte,
                        1 => drop(body.remove(at)),
                        _ => body.insert(at, byte),
                    }
                }
            }
            let Ok(body) = String::from_utf8(body) else {
                continue;
            };
            total += 1;
            if let Some(got) = quick(&body) {
                answered += 1;
                assert_eq!(Some(got), full(&body), "{body}");
            }
        }
        assert!(answered * 5 > total, "answered {answered} of {total}");
    }
}
