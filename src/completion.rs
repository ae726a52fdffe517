//! Serves one chat completion: validated request → model → a JSON reply or an SSE stream. This is where
//! the three layers meet; each of them stays ignorant of the others.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::Responder;
use crate::ids;
use crate::models::{tokens, Generation, Model, Prompt, Sampling};
use crate::openai::chat::ChatRequest;
use crate::openai::response::{self, ChunkUsage, ContentChunks, Delta, Meta, Usage};

/// Stop sequences held on the stack (the spec allows four).
const STOP_SLOTS: usize = crate::openai::chat::MAX_STOP;

/// Answers `req` with `model`'s output.
pub fn serve(model: &dyn Model, req: &ChatRequest<'_>, res: &mut Responder<'_>) {
    let last_text = req.messages.last().and_then(|m| m.text.as_deref());
    let mut stop: [&str; STOP_SLOTS] = [""; STOP_SLOTS];
    let stops = req.stop.len().min(STOP_SLOTS);
    for (slot, s) in stop.iter_mut().zip(&req.stop) {
        *slot = s;
    }
    let sampling = Sampling {
        max_tokens: req.max_tokens,
        stop: &stop[..stops],
    };
    let generation = model.generate(&Prompt { last_text }, &sampling);
    let prompt_tokens: usize = req
        .messages
        .iter()
        .filter_map(|m| m.text.as_deref())
        .map(tokens::count)
        .sum();
    let usage = Usage::new(
        prompt_tokens as u64,
        (generation.tokens * req.n as usize) as u64,
    );
    let mut id_buf = [0u8; 32];
    let meta = Meta {
        id: ids::write_hex_id("chatcmpl-", ids::next(), &mut id_buf),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: &req.model,
    };
    if req.stream {
        stream(req, &meta, &generation, usage, res);
    } else {
        response::write_completion(
            res.body(),
            &meta,
            req.n,
            &generation.text,
            generation.finish.as_str(),
            usage,
        );
        res.send(200, "application/json", &[]);
    }
}

/// Streams the generation: per choice a role chunk, then one chunk per token, then a finish chunk; the
/// usage chunk when asked; then `[DONE]`. Stops at the first failed write (the client left).
fn stream(
    req: &ChatRequest<'_>,
    meta: &Meta<'_>,
    generation: &Generation,
    usage: Usage,
    res: &mut Responder<'_>,
) {
    let chunk_usage = if req.include_usage {
        ChunkUsage::Null
    } else {
        ChunkUsage::Absent
    };
    let mut sse = res.start_sse(200, &[]);
    let role = Delta {
        role: Some("assistant"),
        content: Some(""),
    };
    let result = (|| {
        for index in 0..req.n {
            sse.event(|out| response::write_chunk(out, meta, index, role, None, chunk_usage))?;
        }
        let content = ContentChunks::new(meta, chunk_usage);
        for token in tokens::split(&generation.text) {
            for index in 0..req.n {
                sse.event(|out| content.write(out, index, token))?;
            }
        }
        let finish = Some(generation.finish.as_str());
        for index in 0..req.n {
            sse.event(|out| {
                response::write_chunk(out, meta, index, Delta::default(), finish, chunk_usage)
            })?;
        }
        if req.include_usage {
            sse.event(|out| response::write_usage_chunk(out, meta, usage))?;
        }
        sse.event(|out| out.extend_from_slice(b"[DONE]"))
    })();
    if result.is_ok() {
        let _ = sse.finish();
    }
}
