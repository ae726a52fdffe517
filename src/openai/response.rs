//! Chat completion responses and stream chunks, serialized straight into the caller's buffer with borrowed
//! strings (no intermediate `Value`, no per-choice allocation). Field names and order follow the spec's
//! `CreateChatCompletionResponse` and `CreateChatCompletionStreamResponse`.

use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

/// Reported as `system_fingerprint`; changes when output for the same seed could change.
pub const SYSTEM_FINGERPRINT: &str = "fp_standin";

/// Token counts for `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens over all choices.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl Usage {
    /// Appends the object as serde_json writes it (a unit test holds them together): each request writes
    /// one, and serde_json escapes each key it writes.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(b"{\"prompt_tokens\":");
        out.extend_from_slice(number.format(self.prompt_tokens).as_bytes());
        out.extend_from_slice(b",\"completion_tokens\":");
        out.extend_from_slice(number.format(self.completion_tokens).as_bytes());
        out.extend_from_slice(b",\"total_tokens\":");
        out.extend_from_slice(number.format(self.total_tokens).as_bytes());
        out.push(b'}');
    }

    /// Usage from the two counts.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// What every chunk of one completion shares.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    /// `chatcmpl-…`
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: &'a str,
}

#[derive(serde::Serialize)]
struct Completion<'a, C: Serialize> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: C,
    usage: Usage,
}

impl<'a, C: Serialize> Completion<'a, C> {
    fn new(meta: &Meta<'a>, choices: C, usage: Usage) -> Self {
        Completion {
            id: meta.id,
            object: "chat.completion",
            created: meta.created,
            model: meta.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        }
    }
}

/// `n` identical choices, serialized without building a Vec: the reference [`write_completion`] is held to.
#[cfg(test)]
struct Choices<'a> {
    n: u32,
    content: &'a str,
    finish_reason: &'a str,
}

#[cfg(test)]
#[derive(serde::Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[cfg(test)]
#[derive(serde::Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

#[cfg(test)]
impl Serialize for Choices<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.n as usize))?;
        for index in 0..self.n {
            let message = Message {
                role: "assistant",
                content: self.content,
                refusal: None,
            };
            seq.serialize_element(&Choice {
                index,
                message,
                logprobs: None,
                finish_reason: self.finish_reason,
            })?;
        }
        seq.end()
    }
}

/// Appends a `chat.completion` object with `n` identical choices. Written by hand, as the content chunks
/// are (only the strings go through serde_json's escaping): byte-identical to serializing [`Completion`],
/// which a unit test holds it to, at half the cost (`cargo bench --bench hot_path`, `write_completion`).
pub fn write_completion(
    out: &mut Vec<u8>,
    meta: &Meta<'_>,
    n: u32,
    content: &str,
    finish_reason: &str,
    usage: Usage,
) {
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"{\"id\":");
    write_str(&mut *out, meta.id);
    out.extend_from_slice(b",\"object\":\"chat.completion\",\"created\":");
    out.extend_from_slice(number.format(meta.created).as_bytes());
    out.extend_from_slice(b",\"model\":");
    write_str(&mut *out, meta.model);
    out.extend_from_slice(b",\"system_fingerprint\":");
    write_str(&mut *out, SYSTEM_FINGERPRINT);
    out.extend_from_slice(b",\"choices\":[");
    for index in 0..n {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(number.format(index).as_bytes());
        out.extend_from_slice(b",\"message\":{\"role\":\"assistant\",\"content\":");
        write_str(&mut *out, content);
        out.extend_from_slice(b",\"refusal\":null},\"logprobs\":null,\"finish_reason\":");
        write_str(&mut *out, finish_reason);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"usage\":");
    usage.write_json(out);
    out.push(b'}');
}

/// Appends `s` as a JSON string, as serde_json writes it. Most strings need no escape (ids, model names,
/// text without quotes, backslashes or control characters): they are checked eight bytes at a time and
/// copied whole, and only the others go through serde_json's byte-by-byte escaping.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        let _ = serde_json::to_writer(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether `s` holds a byte JSON strings escape: `"`, `\\` or a control character below 0x20.
pub fn needs_escape(s: &[u8]) -> bool {
    super::cursor::plain_run_end(s, 0) != s.len()
}

/// A function call in a reply (`ChatCompletionMessageToolCall`).
#[derive(Debug, Clone, Copy)]
pub struct ToolCall<'a> {
    /// `call_…`
    pub id: &'a str,
    /// The function's name.
    pub name: &'a str,
    /// Its arguments as a JSON text.
    pub arguments: &'a str,
}

impl Serialize for ToolCall<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut call = s.serialize_struct("ToolCall", 3)?;
        call.serialize_field("id", self.id)?;
        call.serialize_field("type", "function")?;
        call.serialize_field(
            "function",
            &Function {
                name: Some(self.name),
                arguments: self.arguments,
            },
        )?;
        call.end()
    }
}

/// `function` of a tool call or of its stream delta (where the name comes only once).
#[derive(serde::Serialize)]
struct Function<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// One token's log probability and the most likely tokens at its position (`ChatCompletionTokenLogprob`).
#[derive(Debug, Clone, Copy)]
pub struct TokenLogprob<'a> {
    /// The token.
    pub token: &'a str,
    /// Its log probability.
    pub logprob: f64,
    /// The most likely tokens there with theirs, most likely first (as many as `top_logprobs` asked).
    pub top_logprobs: &'a [(&'a str, f64)],
}

/// `{"token", "logprob", "bytes"}`: an entry of `top_logprobs`.
struct TopLogprob<'a>(&'a str, f64);

impl Serialize for TopLogprob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entry = s.serialize_struct("TopLogprob", 3)?;
        entry.serialize_field("token", self.0)?;
        entry.serialize_field("logprob", &self.1)?;
        entry.serialize_field("bytes", self.0.as_bytes())?;
        entry.end()
    }
}

impl Serialize for TokenLogprob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entry = s.serialize_struct("TokenLogprob", 4)?;
        entry.serialize_field("token", self.token)?;
        entry.serialize_field("logprob", &self.logprob)?;
        entry.serialize_field("bytes", self.token.as_bytes())?;
        entry.serialize_field("top_logprobs", &TopList(self.top_logprobs))?;
        entry.end()
    }
}

/// `top_logprobs`: the pairs as objects.
struct TopList<'a>(&'a [(&'a str, f64)]);

impl Serialize for TopList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.0
                .iter()
                .map(|(token, logprob)| TopLogprob(token, *logprob)),
        )
    }
}

/// `logprobs` of a choice: the content tokens' entries, no refusal.
#[derive(serde::Serialize)]
struct ChoiceLogprobs<'a> {
    content: &'a [TokenLogprob<'a>],
    refusal: Option<()>,
}

/// One choice of a reply, for what [`write_completion`] does not cover: tool calls, logprobs, choices
/// that differ.
#[derive(Debug, Clone, Copy)]
pub struct ReplyChoice<'a> {
    /// The text; `None` (JSON `null`) for a tool-call reply.
    pub content: Option<&'a str>,
    /// Function calls; left out of the message when empty.
    pub tool_calls: &'a [ToolCall<'a>],
    /// One entry per content token when the client asked for logprobs.
    pub logprobs: Option<&'a [TokenLogprob<'a>]>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'a str,
}

/// The message of a [`ReplyChoice`].
#[derive(serde::Serialize)]
struct ReplyMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "<[ToolCall<'_>]>::is_empty")]
    tool_calls: &'a [ToolCall<'a>],
    refusal: Option<()>,
}

/// Choices numbered by their position.
struct Numbered<'a>(&'a [ReplyChoice<'a>]);

impl Serialize for Numbered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (index, choice) in self.0.iter().enumerate() {
            seq.serialize_element(&ReplyChoiceWire {
                index: index as u32,
                message: ReplyMessage {
                    role: "assistant",
                    content: choice.content,
                    tool_calls: choice.tool_calls,
                    refusal: None,
                },
                logprobs: choice.logprobs.map(|content| ChoiceLogprobs {
                    content,
                    refusal: None,
                }),
                finish_reason: choice.finish_reason,
            })?;
        }
        seq.end()
    }
}

#[derive(serde::Serialize)]
struct ReplyChoiceWire<'a> {
    index: u32,
    message: ReplyMessage<'a>,
    logprobs: Option<ChoiceLogprobs<'a>>,
    finish_reason: &'a str,
}

/// Appends a `chat.completion` object with these choices, numbered in order.
pub fn write_reply(out: &mut Vec<u8>, meta: &Meta<'_>, choices: &[ReplyChoice<'_>], usage: Usage) {
    let _ = serde_json::to_writer(out, &Completion::new(meta, Numbered(choices), usage));
}

/// The `delta` of one chunk; absent fields are left out.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Delta<'a> {
    /// `assistant` on a choice's first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// A content piece.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

/// The `usage` member of a chunk: left out, `null` (with include_usage), or the counts on the last chunk.
#[derive(Debug, Clone, Copy)]
pub enum ChunkUsage {
    /// Client did not ask for usage.
    Absent,
    /// `"usage": null`.
    Null,
    /// The final counts.
    Counts(Usage),
}

impl ChunkUsage {
    fn is_absent(&self) -> bool {
        matches!(self, ChunkUsage::Absent)
    }
}

impl Serialize for ChunkUsage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ChunkUsage::Counts(u) => u.serialize(s),
            _ => s.serialize_none(),
        }
    }
}

#[derive(serde::Serialize)]
struct Chunk<'a, C: Serialize> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: C,
    #[serde(skip_serializing_if = "ChunkUsage::is_absent")]
    usage: ChunkUsage,
}

impl<'a, C: Serialize> Chunk<'a, C> {
    fn new(meta: &Meta<'a>, choices: C, usage: ChunkUsage) -> Self {
        Chunk {
            id: meta.id,
            object: "chat.completion.chunk",
            created: meta.created,
            model: meta.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        }
    }
}

#[derive(serde::Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

/// Appends one `chat.completion.chunk` for choice `index`.
pub fn write_chunk(
    out: &mut Vec<u8>,
    meta: &Meta<'_>,
    index: u32,
    delta: Delta<'_>,
    finish_reason: Option<&str>,
    usage: ChunkUsage,
) {
    let choice = ChunkChoice {
        index,
        delta,
        logprobs: None,
        finish_reason,
    };
    let _ = serde_json::to_writer(out, &Chunk::new(meta, [choice], usage));
}

/// A tool-call delta of a stream (`ChatCompletionMessageToolCallChunk`), as OpenAI sends them: a call starts
/// with its id, type and name and empty arguments, then its arguments come in pieces.
#[derive(Debug, Clone, Copy)]
pub enum ToolCallDelta<'a> {
    /// Call `index` starts. On the first call, the delta also opens the message: `role` and `content: null`.
    Start {
        /// Whether this is the choice's first chunk.
        first: bool,
        /// The call's position in the message's `tool_calls`.
        index: u32,
        /// `call_…`
        id: &'a str,
        /// The function's name.
        name: &'a str,
    },
    /// A piece of call `index`'s arguments.
    Arguments {
        /// The call's position in the message's `tool_calls`.
        index: u32,
        /// The piece.
        arguments: &'a str,
    },
}

/// `{"index", "id"?, "type"?, "function"}` of a tool-call delta.
#[derive(serde::Serialize)]
struct ToolCallChunk<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: Function<'a>,
}

/// The `delta` of a tool-call chunk.
#[derive(serde::Serialize)]
struct ToolDeltaWire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// `Some(None)` writes `"content": null` (the first chunk); `None` leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    tool_calls: [ToolCallChunk<'a>; 1],
}

#[derive(serde::Serialize)]
struct ToolChunkChoice<'a> {
    index: u32,
    delta: ToolDeltaWire<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

/// Appends one `chat.completion.chunk` carrying a tool-call delta for choice `index`.
pub fn write_tool_chunk(
    out: &mut Vec<u8>,
    meta: &Meta<'_>,
    index: u32,
    delta: ToolCallDelta<'_>,
    usage: ChunkUsage,
) {
    let (first, call) = match delta {
        ToolCallDelta::Start {
            first,
            index,
            id,
            name,
        } => (
            first,
            ToolCallChunk {
                index,
                id: Some(id),
                kind: Some("function"),
                function: Function {
                    name: Some(name),
                    arguments: "",
                },
            },
        ),
        ToolCallDelta::Arguments { index, arguments } => (
            false,
            ToolCallChunk {
                index,
                id: None,
                kind: None,
                function: Function {
                    name: None,
                    arguments,
                },
            },
        ),
    };
    let choice = ToolChunkChoice {
        index,
        delta: ToolDeltaWire {
            role: first.then_some("assistant"),
            content: first.then_some(None),
            tool_calls: [call],
        },
        logprobs: None,
        finish_reason: None,
    };
    let _ = serde_json::to_writer(out, &Chunk::new(meta, [choice], usage));
}

/// Content chunks are most of a stream's bytes: the parts every chunk of one completion shares are
/// serialized once per stream, and each token costs only its index and its escaped text. The output is
/// byte-identical to [`write_chunk`] with a content delta (a unit test holds them together).
pub struct ContentChunks {
    /// Everything up to the choice index.
    prefix: Vec<u8>,
    /// `,"usage":null` or nothing.
    usage_null: bool,
}

impl ContentChunks {
    /// The shared part for `meta`, with `"usage": null` when `usage` is [`ChunkUsage::Null`].
    pub fn new(meta: &Meta<'_>, usage: ChunkUsage) -> Self {
        let mut prefix = Vec::with_capacity(160 + meta.model.len());
        prefix.extend_from_slice(b"{\"id\":");
        write_str(&mut prefix, meta.id);
        prefix.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        prefix.extend_from_slice(itoa::Buffer::new().format(meta.created).as_bytes());
        prefix.extend_from_slice(b",\"model\":");
        write_str(&mut prefix, meta.model);
        prefix.extend_from_slice(b",\"system_fingerprint\":");
        write_str(&mut prefix, SYSTEM_FINGERPRINT);
        prefix.extend_from_slice(b",\"choices\":[{\"index\":");
        ContentChunks {
            prefix,
            usage_null: matches!(usage, ChunkUsage::Null),
        }
    }

    /// Appends the chunk carrying `content` for choice `index`.
    pub fn write(&self, out: &mut Vec<u8>, index: u32, content: &str) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        out.extend_from_slice(b",\"delta\":{\"content\":");
        write_str(&mut *out, content);
        out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}]");
        self.end(out);
    }

    /// [`ContentChunks::write`] for `content` that needs no escape, which the caller knows: a token of a
    /// reply that [`needs_escape`] passed as a whole (a piece of such text has no `"`, `\\` or control
    /// character either). One reservation and four copies, no check per token.
    pub fn write_plain(&self, out: &mut Vec<u8>, index: u32, content: &str) {
        debug_assert!(!needs_escape(content.as_bytes()));
        const LEAD: &[u8] = b",\"delta\":{\"content\":\"";
        let tail: &[u8] = if self.usage_null {
            b"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}"
        } else {
            b"\"},\"logprobs\":null,\"finish_reason\":null}]}"
        };
        let mut digits = itoa::Buffer::new();
        let index = digits.format(index).as_bytes();
        out.reserve(self.prefix.len() + index.len() + LEAD.len() + content.len() + tail.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(index);
        out.extend_from_slice(LEAD);
        out.extend_from_slice(content.as_bytes());
        out.extend_from_slice(tail);
    }

    /// Appends any text chunk for choice `index`, as [`write_chunk`] would: the role chunk and the finish
    /// chunk go through here too.
    pub fn write_delta(
        &self,
        out: &mut Vec<u8>,
        index: u32,
        delta: Delta<'_>,
        finish_reason: Option<&str>,
    ) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        out.extend_from_slice(b",\"delta\":{");
        if let Some(role) = delta.role {
            out.extend_from_slice(b"\"role\":");
            write_str(&mut *out, role);
        }
        if let Some(content) = delta.content {
            if delta.role.is_some() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"content\":");
            write_str(&mut *out, content);
        }
        out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":");
        match finish_reason {
            Some(reason) => write_str(&mut *out, reason),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]");
        self.end(out);
    }

    /// Appends the chunk carrying `content` for choice `index` with its log probability entry.
    pub fn write_logprob(
        &self,
        out: &mut Vec<u8>,
        index: u32,
        content: &str,
        logprob: &TokenLogprob<'_>,
    ) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        out.extend_from_slice(b",\"delta\":{\"content\":");
        write_str(&mut *out, content);
        out.extend_from_slice(b"},\"logprobs\":{\"content\":[");
        let _ = serde_json::to_writer(&mut *out, logprob);
        out.extend_from_slice(b"],\"refusal\":null},\"finish_reason\":null}]");
        self.end(out);
    }

    fn end(&self, out: &mut Vec<u8>) {
        if self.usage_null {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.push(b'}');
    }
}

/// Appends the final usage chunk (`"choices": []`).
/// Written by hand like [`write_completion`], byte-identical to serializing the chunk (a unit test holds
/// them together).
pub fn write_usage_chunk(out: &mut Vec<u8>, meta: &Meta<'_>, usage: Usage) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, meta.id);
    out.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
    out.extend_from_slice(itoa::Buffer::new().format(meta.created).as_bytes());
    out.extend_from_slice(b",\"model\":");
    write_str(out, meta.model);
    out.extend_from_slice(b",\"system_fingerprint\":");
    write_str(out, SYSTEM_FINGERPRINT);
    out.extend_from_slice(b",\"choices\":[],\"usage\":");
    usage.write_json(out);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position of strings around the eight-byte steps: the quick copy writes
    /// exactly what serde_json does.
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut cases: Vec<String> = vec![String::new(), "héllo wörld ✓".into(), "a\u{7f}b".into()];
        for len in [1, 7, 8, 9, 15, 16, 17] {
            for at in 0..len {
                for b in (0u8..0x80).chain([0xc3]) {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = b;
                    if b == 0xc3 {
                        bytes.insert(at + 1, 0xa9);
                    }
                    cases.push(String::from_utf8(bytes).unwrap());
                }
            }
        }
        let mut escaped = 0;
        for case in &cases {
            let mut out = b"[".to_vec();
            write_str(&mut out, case);
            assert_eq!(out[1..], serde_json::to_vec(case).unwrap()[..], "{case:?}");
            escaped += usize::from(needs_escape(case.as_bytes()));
        }
        // Quote, backslash and the 32 control characters at each of the 73 positions.
        assert_eq!(escaped, 34 * 73);
    }
    use serde_json::{json, Value};

    const META: Meta<'static> = Meta {
        id: "chatcmpl-1",
        created: 7,
        model: "m",
    };

    fn parse(out: &[u8]) -> Value {
        serde_json::from_slice(out).unwrap()
    }

    #[test]
    fn completion_shape() {
        let mut out = Vec::new();
        write_completion(&mut out, &META, 2, "hi \"you\"", "length", Usage::new(3, 4));
        let v = parse(&out);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["system_fingerprint"], SYSTEM_FINGERPRINT);
        assert_eq!(
            v["choices"][1],
            json!({"index":1,"message":{"role":"assistant","content":"hi \"you\"","refusal":null},"logprobs":null,"finish_reason":"length"})
        );
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens":3,"completion_tokens":4,"total_tokens":7})
        );
    }

    #[test]
    fn completion_matches_serde() {
        let metas = [
            META,
            Meta {
                id: "chatcmpl-\"x\"",
                created: u64::MAX,
                model: "we\"ird/\u{e9}\n",
            },
        ];
        for meta in metas {
            for (n, content, finish) in [
                (1, "As a mock AI Assistant", "stop"),
                (3, " a\n\"q\"\t\u{1} \u{1F600}", "length"),
                (0, "", "stop"),
            ] {
                let usage = Usage::new(3, 4);
                let mut fast = Vec::new();
                write_completion(&mut fast, &meta, n, content, finish, usage);
                let choices = Choices {
                    n,
                    content,
                    finish_reason: finish,
                };
                let reference =
                    serde_json::to_vec(&Completion::new(&meta, choices, usage)).unwrap();
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(reference).unwrap()
                );
            }
        }
    }

    #[test]
    fn content_chunks_match_serde_chunks() {
        let meta = Meta {
            id: "chatcmpl-x",
            created: 1_795_000_000,
            model: "we\"ird/\u{e9}",
        };
        for usage in [ChunkUsage::Absent, ChunkUsage::Null] {
            let fast = ContentChunks::new(&meta, usage);
            for (index, token) in [(0, "As"), (7, " a\n\"q\"\t\u{1}"), (127, " \u{1F600}")] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                fast.write(&mut a, index, token);
                let delta = Delta {
                    role: None,
                    content: Some(token),
                };
                write_chunk(&mut b, &meta, index, delta, None, usage);
                assert_eq!(
                    String::from_utf8(a).unwrap(),
                    String::from_utf8(b.clone()).unwrap()
                );
                if !needs_escape(token.as_bytes()) {
                    let mut plain = Vec::new();
                    fast.write_plain(&mut plain, index, token);
                    assert_eq!(
                        String::from_utf8(plain).unwrap(),
                        String::from_utf8(b).unwrap()
                    );
                }
            }
            for (index, token) in [(0, ""), (1, " plain"), (12, "caf\u{e9} \u{1F600}/<>")] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                fast.write_plain(&mut a, index, token);
                fast.write(&mut b, index, token);
                assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            }
            let role = Delta {
                role: Some("assistant"),
                content: Some(""),
            };
            let only_role = Delta {
                role: Some("assistant"),
                content: None,
            };
            let text = Delta {
                role: None,
                content: Some(" a\n\"q\""),
            };
            for (delta, finish) in [
                (role, None),
                (only_role, None),
                (text, None),
                (Delta::default(), Some("stop")),
                (Delta::default(), Some("we\"ird")),
                (Delta::default(), None),
            ] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                fast.write_delta(&mut a, 3, delta, finish);
                write_chunk(&mut b, &meta, 3, delta, finish, usage);
                assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            }
        }
    }

    #[test]
    fn chunk_shapes() {
        let mut out = Vec::new();
        write_chunk(
            &mut out,
            &META,
            0,
            Delta {
                role: Some("assistant"),
                content: Some(""),
            },
            None,
            ChunkUsage::Null,
        );
        let v = parse(&out);
        assert_eq!(
            v["choices"],
            json!([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}])
        );
        assert_eq!(v["usage"], Value::Null);
        assert!(v.as_object().unwrap().contains_key("usage"));

        out.clear();
        write_chunk(
            &mut out,
            &META,
            3,
            Delta::default(),
            Some("stop"),
            ChunkUsage::Absent,
        );
        let v = parse(&out);
        assert_eq!(v["choices"][0]["delta"], json!({}));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(!v.as_object().unwrap().contains_key("usage"));

        out.clear();
        write_usage_chunk(&mut out, &META, Usage::new(1, 2));
        let by_serde = Chunk::new(&META, [(); 0], ChunkUsage::Counts(Usage::new(1, 2)));
        assert_eq!(out, serde_json::to_vec(&by_serde).unwrap());
        let usage = Usage::new(u64::MAX / 2, 0);
        let mut written = Vec::new();
        usage.write_json(&mut written);
        assert_eq!(written, serde_json::to_vec(&usage).unwrap());
        let v = parse(&out);
        assert_eq!(v["choices"], json!([]));
        assert_eq!(v["usage"]["total_tokens"], 3);
    }

    const TOP: [(&str, f64); 2] = [(" hé", -0.1), (" the", -2.5)];
    const ENTRY: TokenLogprob<'static> = TokenLogprob {
        token: " hé",
        logprob: -0.1,
        top_logprobs: &TOP,
    };

    fn entry_json() -> Value {
        json!({"token":" hé","logprob":-0.1,"bytes":[32,104,195,169],"top_logprobs":[
            {"token":" hé","logprob":-0.1,"bytes":[32,104,195,169]},
            {"token":" the","logprob":-2.5,"bytes":[32,116,104,101]}]})
    }

    #[test]
    fn reply_with_tool_calls() {
        let calls = [
            ToolCall {
                id: "call_1",
                name: "get_weather",
                arguments: r#"{"city": "Paris"}"#,
            },
            ToolCall {
                id: "call_2",
                name: "ping",
                arguments: "{}",
            },
        ];
        let choice = ReplyChoice {
            content: None,
            tool_calls: &calls,
            logprobs: None,
            finish_reason: "tool_calls",
        };
        let mut out = Vec::new();
        write_reply(&mut out, &META, &[choice, choice], Usage::new(1, 2));
        let v = parse(&out);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["choices"][1],
            json!({"index":1,"message":{"role":"assistant","content":null,"tool_calls":[
                {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}},
                {"id":"call_2","type":"function","function":{"name":"ping","arguments":"{}"}}],
                "refusal":null},"logprobs":null,"finish_reason":"tool_calls"})
        );
        assert_eq!(v["usage"]["total_tokens"], 3);
    }

    #[test]
    fn reply_with_logprobs_and_no_calls() {
        let entries = [ENTRY];
        let choice = ReplyChoice {
            content: Some(" hé"),
            tool_calls: &[],
            logprobs: Some(&entries),
            finish_reason: "stop",
        };
        let mut out = Vec::new();
        write_reply(&mut out, &META, &[choice], Usage::new(1, 1));
        let v = parse(&out);
        // Without calls the message has exactly the keys of a plain reply.
        assert_eq!(
            v["choices"][0]["message"],
            json!({"role":"assistant","content":" hé","refusal":null})
        );
        assert_eq!(
            v["choices"][0]["logprobs"],
            json!({"content":[entry_json()],"refusal":null})
        );
    }

    #[test]
    fn tool_call_chunks() {
        let mut out = Vec::new();
        let start = ToolCallDelta::Start {
            first: true,
            index: 0,
            id: "call_1",
            name: "f",
        };
        write_tool_chunk(&mut out, &META, 2, start, ChunkUsage::Null);
        let v = parse(&out);
        assert_eq!(
            v["choices"],
            json!([{"index":2,"delta":{"role":"assistant","content":null,"tool_calls":[
                {"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},
                "logprobs":null,"finish_reason":null}])
        );
        assert_eq!(v["object"], "chat.completion.chunk");
        assert!(v.as_object().unwrap().contains_key("usage"));

        out.clear();
        let start = ToolCallDelta::Start {
            first: false,
            index: 1,
            id: "call_2",
            name: "g",
        };
        write_tool_chunk(&mut out, &META, 0, start, ChunkUsage::Absent);
        assert_eq!(
            parse(&out)["choices"][0]["delta"],
            json!({"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"g","arguments":""}}]})
        );

        out.clear();
        let piece = ToolCallDelta::Arguments {
            index: 1,
            arguments: " \"x\"}",
        };
        write_tool_chunk(&mut out, &META, 0, piece, ChunkUsage::Absent);
        assert_eq!(
            parse(&out)["choices"][0]["delta"],
            json!({"tool_calls":[{"index":1,"function":{"arguments":" \"x\"}"}}]})
        );
    }

    #[test]
    fn content_chunks_with_logprobs() {
        for usage in [ChunkUsage::Absent, ChunkUsage::Null] {
            let mut out = Vec::new();
            ContentChunks::new(&META, usage).write_logprob(&mut out, 3, " hé", &ENTRY);
            let v = parse(&out);
            assert_eq!(
                v["choices"],
                json!([{"index":3,"delta":{"content":" hé"},
                    "logprobs":{"content":[entry_json()],"refusal":null},"finish_reason":null}])
            );
            // Everything else as in a plain content chunk.
            let mut plain = Vec::new();
            ContentChunks::new(&META, usage).write(&mut plain, 3, " hé");
            let mut plain = parse(&plain);
            plain["choices"] = v["choices"].clone();
            assert_eq!(plain, v);
        }
    }
}
