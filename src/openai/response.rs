//! Chat completion responses and stream chunks, serialized straight into the caller's buffer with borrowed
//! strings (no intermediate `Value`, no per-choice allocation). Field names and order follow the spec's
//! `CreateChatCompletionResponse` and `CreateChatCompletionStreamResponse`.

use serde::ser::{Serialize, SerializeSeq, Serializer};

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
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Choices<'a>,
    usage: Usage,
}

/// `n` identical choices, serialized without building a Vec.
struct Choices<'a> {
    n: u32,
    content: &'a str,
    finish_reason: &'a str,
}

#[derive(serde::Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[derive(serde::Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

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

/// Appends a `chat.completion` object with `n` identical choices.
pub fn write_completion(
    out: &mut Vec<u8>,
    meta: &Meta<'_>,
    n: u32,
    content: &str,
    finish_reason: &str,
    usage: Usage,
) {
    let body = Completion {
        id: meta.id,
        object: "chat.completion",
        created: meta.created,
        model: meta.model,
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices: Choices {
            n,
            content,
            finish_reason,
        },
        usage,
    };
    // Writing into a Vec cannot fail and every value here is serializable.
    let _ = serde_json::to_writer(out, &body);
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
        let _ = serde_json::to_writer(&mut prefix, meta.id);
        prefix.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        prefix.extend_from_slice(itoa::Buffer::new().format(meta.created).as_bytes());
        prefix.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut prefix, meta.model);
        prefix.extend_from_slice(b",\"system_fingerprint\":");
        let _ = serde_json::to_writer(&mut prefix, SYSTEM_FINGERPRINT);
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
        let _ = serde_json::to_writer(&mut *out, content);
        out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}]");
        if self.usage_null {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.push(b'}');
    }
}

/// Appends the final usage chunk (`"choices": []`).
pub fn write_usage_chunk(out: &mut Vec<u8>, meta: &Meta<'_>, usage: Usage) {
    let chunk = Chunk::new(meta, [(); 0], ChunkUsage::Counts(usage));
    let _ = serde_json::to_writer(out, &chunk);
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let v = parse(&out);
        assert_eq!(v["choices"], json!([]));
        assert_eq!(v["usage"]["total_tokens"], 3);
    }
}
