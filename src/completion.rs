//! Serves one chat completion: validated request → model → a JSON reply or an SSE stream. This is where
//! the three layers meet; each of them stays ignorant of the others.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::faults::{self, StreamFault};
use crate::http::Responder;
use crate::ids;
use crate::metrics::METRICS;
use crate::models::{tokens, Finish, Generation, Model, Pace, Prompt, Sampling};
use crate::openai::chat::ChatRequest;
use crate::openai::response::{self, ChunkUsage, ContentChunks, Delta, Meta, Usage};

/// Stop sequences held on the stack (the spec allows four).
const STOP_SLOTS: usize = crate::openai::chat::MAX_STOP;

/// The model's output for `req`, cut by its stop sequences and token limit, and the token usage
/// (prompt: every message's text by the shared token rule; completion: all `n` choices).
pub fn generate(model: &dyn Model, req: &ChatRequest<'_>) -> (Generation, Usage) {
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
    (generation, usage)
}

/// Answers `req` with `model`'s output, each token ready when `pace` says, counted from `start` (when the
/// request arrived, so time spent queued in the server counts toward the TTFT as it would on a real one).
/// A stream `fault` breaks a streaming answer on purpose; a JSON answer ignores it.
pub fn serve(
    model: &dyn Model,
    pace: Pace,
    start: Instant,
    fault: Option<StreamFault>,
    req: &ChatRequest<'_>,
    res: &mut Responder<'_>,
) {
    let _running = METRICS.start_request();
    let (generation, usage) = generate(model, req);
    let mut id_buf = [0u8; 32];
    let meta = Meta {
        id: ids::write_hex_id("chatcmpl-", ids::next(), &mut id_buf),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: &req.model,
    };
    let length = generation.finish == Finish::Length;
    let (prompt, generated) = (usage.prompt_tokens, usage.completion_tokens);
    if req.stream {
        let ttft = stream(
            req,
            &meta,
            &generation,
            usage,
            Schedule { pace, start },
            fault,
            res,
        );
        if let Some(ttft) = ttft {
            METRICS.finish_request(prompt, generated, ttft, start.elapsed(), length);
        }
    } else {
        // A non-streaming answer leaves when its last token is ready.
        let tokens = generation.tokens.max(1);
        sleep_until(start + pace.ready_at(tokens - 1));
        response::write_completion(
            res.body(),
            &meta,
            req.n,
            &generation.text,
            generation.finish.as_str(),
            usage,
        );
        res.send(200, "application/json", &[]);
        let e2e = start.elapsed();
        METRICS.finish_request(prompt, generated, e2e, e2e, length);
    }
}

/// When generation started and how tokens are paced.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    pace: Pace,
    start: Instant,
}

/// Parks the coroutine (never the worker thread) until `at`.
fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        may::coroutine::sleep(at - now);
    }
}

/// Streams the generation: per choice a role chunk, then one chunk per token, then a finish chunk; the
/// usage chunk when asked; then `[DONE]`. The role chunk goes out in the same write as the first content;
/// with a pace, the head goes out at once and each token when it is ready. Stops at the first failed write
/// (the client left), so an abandoned stream costs nothing more.
fn stream(
    req: &ChatRequest<'_>,
    meta: &Meta<'_>,
    generation: &Generation,
    usage: Usage,
    schedule: Schedule,
    fault: Option<StreamFault>,
    res: &mut Responder<'_>,
) -> Option<Duration> {
    let mut first_token: Option<Instant> = None;
    let mut last_token = schedule.start;
    let chunk_usage = if req.include_usage {
        ChunkUsage::Null
    } else {
        ChunkUsage::Absent
    };
    let paced = !schedule.pace.is_instant();
    let mut sse = res.start_sse(200, &[]);
    let role = Delta {
        role: Some("assistant"),
        content: Some(""),
    };
    let result = (|| -> std::io::Result<Ending> {
        if paced {
            sse.flush()?;
        }
        let content = ContentChunks::new(meta, chunk_usage);
        let mut tokens = tokens::split(&generation.text).peekable();
        let mut k = 0;
        loop {
            if paced {
                if k > 0 {
                    sse.flush()?;
                }
                sleep_until(schedule.start + schedule.pace.ready_at(k));
            }
            if k == 0 {
                for index in 0..req.n {
                    sse.event(|out| {
                        response::write_chunk(out, meta, index, role, None, chunk_usage)
                    })?;
                }
            }
            if fault == Some(StreamFault::Cut(k as u32)) {
                return Ok(Ending::Cut);
            }
            let Some(token) = tokens.next() else { break };
            for index in 0..req.n {
                sse.event(|out| content.write(out, index, token))?;
            }
            let now = Instant::now();
            if first_token.is_some() {
                METRICS.observe_itl(now - last_token);
            }
            first_token.get_or_insert(now);
            last_token = now;
            k += 1;
            match fault {
                Some(StreamFault::Error) => {
                    sse.event(|out| out.extend_from_slice(STREAM_ERROR.as_bytes()))?;
                    return Ok(Ending::Finish);
                }
                Some(StreamFault::Stall) => return Ok(Ending::Stall),
                _ => {}
            }
            if tokens.peek().is_none() {
                break;
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
        if fault != Some(StreamFault::NoDone) {
            sse.event(|out| out.extend_from_slice(b"[DONE]"))?;
        }
        Ok(Ending::Finish)
    })();
    match result {
        Ok(Ending::Finish) if fault.is_none() => {
            sse.finish().ok()?;
            Some(first_token.unwrap_or(last_token) - schedule.start)
        }
        Ok(Ending::Finish) => sse.finish().ok().and(None),
        Ok(Ending::Cut) => {
            sse.cut();
            None
        }
        Ok(Ending::Stall) => {
            sse.stall(faults::MAX_STALL);
            None
        }
        // The client left: nothing more to do.
        Err(_) => None,
    }
}

/// How a stream ends.
enum Ending {
    /// Properly: the terminating chunk.
    Finish,
    /// Dropped mid-body (`stream-cut:K`).
    Cut,
    /// Silent until the client gives up (`stream-stall`).
    Stall,
}

/// The event `stream-error` sends: what the OpenAI SDK turns into an `APIError` mid-iteration.
const STREAM_ERROR: &str = r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":"stream_error"}}"#;
