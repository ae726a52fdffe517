//! Serves one chat completion: validated request → model → a JSON reply or an SSE stream. This is where
//! the three layers meet; each of them stays ignorant of the others.
//!
//! The answer is text (the model's, or JSON for `response_format`) or, when the request's tools and
//! `tool_choice` call for it, function calls (`models::structured` holds the rule). A plain text request
//! takes the same path as before tools existed: nothing here allocates for it.

use std::iter::Peekable;
use std::time::{Duration, Instant};

use crate::faults::{self, StreamFault};
use crate::http::sse::SseWriter;
use crate::http::Responder;
use crate::ids;
use crate::job::Job;
use crate::models::logprobs::{self, MAX_TOP};
use crate::models::structured::{self, Call};
use crate::models::{apply_sampling, tokens, Finish, Generation, Model, Prompt, Sampling};
use crate::openai::chat::{ChatRequest, ResponseFormat, Role, ToolChoice};
use crate::openai::response::{
    self, ChunkUsage, ContentChunks, Delta, Meta, ReplyChoice, TokenLogprob, ToolCall,
    ToolCallDelta, Usage,
};
use crate::pacer::{self, Mode, Turn};
use crate::pacing::Schedule;

/// Stop sequences held on the stack (the spec allows four).
const STOP_SLOTS: usize = crate::openai::chat::MAX_STOP;

/// The model's output for `req`, cut by its stop sequences and token limit, and the token usage
/// (prompt: every message's text by the shared token rule; completion: all `n` choices). With a JSON
/// `response_format` the output is JSON instead of the model's text, cut the same way. `output_tokens` (the
/// header) fixes the model's length before the cut.
pub fn generate(
    model: &dyn Model,
    req: &ChatRequest<'_>,
    output_tokens: Option<u32>,
) -> (Generation, Usage) {
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
    let generation = match req.response_format {
        ResponseFormat::Text => {
            let prompt = Prompt {
                last_text,
                seed: seed(req),
                output_tokens,
            };
            model.generate(&prompt, &sampling)
        }
        ResponseFormat::JsonObject | ResponseFormat::JsonSchema { schema: None } => {
            apply_sampling(structured::json_object(last_text), &sampling)
        }
        ResponseFormat::JsonSchema {
            schema: Some(schema),
        } => apply_sampling(
            structured::json_schema(schema, seed(req), last_text),
            &sampling,
        ),
    };
    let usage = Usage::new(
        prompt_tokens(req),
        (generation.tokens * req.n as usize) as u64,
    );
    (generation, usage)
}

/// Every message's text by the shared token rule.
pub fn prompt_tokens(req: &ChatRequest<'_>) -> u64 {
    req.messages
        .iter()
        .filter_map(|m| m.text.as_deref())
        .map(tokens::count)
        .sum::<usize>() as u64
}

/// The request's `seed`; absent counts as 0, so output is deterministic either way.
fn seed(req: &ChatRequest<'_>) -> u64 {
    req.seed.map_or(0, |s| s as u64)
}

/// Function calls answering a request instead of text.
#[derive(Debug)]
pub struct Calls {
    /// The calls in order, their arguments cut by the token limit.
    pub calls: Vec<Call>,
    /// Argument tokens of one choice, by the shared token rule.
    pub tokens: usize,
    /// `tool_calls`, or `length` when the token limit cut the arguments.
    pub finish: &'static str,
    /// Seeds the call ids (see [`structured::call_id`]).
    pub key: u64,
}

/// The calls `req` asks for, if its tools and `tool_choice` call for any: with `required` every allowed
/// function (the first only without `parallel_tool_calls`), with a named function that one, with `auto`
/// those the last message mentions if it is the user's. `None`: answer with text.
pub fn tool_calls(req: &ChatRequest<'_>) -> Option<Calls> {
    let choice = match req.tool_choice {
        _ if req.tools.is_empty() => return None,
        ToolChoice::None => return None,
        ToolChoice::Auto => structured::Choice::Auto,
        ToolChoice::Required => structured::Choice::Required,
        ToolChoice::Function(i) => structured::Choice::Function(i),
    };
    let functions: Vec<structured::Function<'_>> = req
        .tools
        .iter()
        .map(|tool| structured::Function {
            name: &tool.name,
            parameters: tool.parameters,
            allowed: tool.allowed,
        })
        .collect();
    let last = req.messages.last();
    let last_text = last.and_then(|m| m.text.as_deref());
    let last_user_text = last_text.filter(|_| last.is_some_and(|m| m.role == Role::User));
    let selected = structured::select(&functions, choice, req.parallel_tool_calls, last_user_text);
    if selected.is_empty() {
        return None;
    }
    let mut calls = structured::calls(&functions, &selected, seed(req), last_text);
    let (tokens, cut) = structured::cut(&mut calls, req.max_tokens);
    Some(Calls {
        calls,
        tokens,
        finish: if cut { "length" } else { "tool_calls" },
        key: structured::call_key(seed(req), req.messages.len(), last_text),
    })
}

/// What answers a request.
enum Answer {
    Text(Generation),
    Calls(Calls),
}

impl Answer {
    /// Tokens per choice and the finish reason.
    fn summary(&self) -> (usize, &'static str) {
        match self {
            Answer::Text(g) => (g.tokens, g.finish.as_str()),
            Answer::Calls(c) => (c.tokens, c.finish),
        }
    }
}

/// Answers `req` as `job` says: its model's output, each token ready when its plan says, counted from when
/// the request arrived (so time spent queued counts toward the TTFT, as on a real server). A stream fault
/// breaks a streaming answer on purpose; a JSON answer ignores it.
pub fn serve(job: &Job<'_>, req: &ChatRequest<'_>, res: &mut Responder<'_>) {
    let _running = job.metrics.start_request();
    let (answer, usage) = match tool_calls(req) {
        Some(calls) => {
            let completion = (calls.tokens * req.n as usize) as u64;
            (
                Answer::Calls(calls),
                Usage::new(prompt_tokens(req), completion),
            )
        }
        None => {
            let (generation, usage) = generate(job.model, req, job.output_tokens);
            (Answer::Text(generation), usage)
        }
    };
    let mut id_buf = [0u8; 32];
    let meta = Meta {
        id: ids::write_hex_id("chatcmpl-", ids::next(), &mut id_buf),
        created: crate::http::date::unix_second(),
        model: job.name,
    };
    let (tokens, finish) = answer.summary();
    let schedule = job.plan.schedule(usage.prompt_tokens);
    let start = schedule.start;
    let length = finish == Finish::Length.as_str();
    let (prompt, generated) = (usage.prompt_tokens, usage.completion_tokens);
    if req.stream {
        let ttft = stream(req, &meta, &answer, usage, schedule, job, res);
        if let Some(ttft) = ttft {
            job.metrics
                .finish_request(prompt, generated, ttft, start.elapsed(), length);
        }
    } else {
        // A non-streaming answer leaves when its last token is ready.
        schedule.wait_for(tokens.max(1) - 1);
        match (&answer, req.logprobs) {
            (Answer::Text(g), None) => {
                response::write_completion(res.body(), &meta, req.n, &g.text, finish, usage)
            }
            (Answer::Text(g), Some(top)) => {
                write_with_logprobs(res.body(), &meta, req, &g.text, top, finish, usage)
            }
            (Answer::Calls(calls), _) => write_calls(res.body(), &meta, req, calls, usage),
        }
        res.send(200, "application/json", &[]);
        let e2e = start.elapsed();
        job.metrics
            .finish_request(prompt, generated, e2e, e2e, length);
    }
}

/// A text reply with one logprobs entry per token (the same in every choice).
fn write_with_logprobs(
    out: &mut Vec<u8>,
    meta: &Meta<'_>,
    req: &ChatRequest<'_>,
    text: &str,
    top: u8,
    finish: &str,
    usage: Usage,
) {
    let top = usize::from(top).min(MAX_TOP);
    let pieces: Vec<&str> = tokens::split(text).collect();
    let mut ranked = vec![("", 0.0); pieces.len() * top];
    let chosen: Vec<f64> = pieces
        .iter()
        .enumerate()
        .map(|(i, token)| logprobs::rank(seed(req), i, token, &mut ranked[i * top..(i + 1) * top]))
        .collect();
    let entries: Vec<TokenLogprob<'_>> = pieces
        .iter()
        .enumerate()
        .map(|(i, token)| TokenLogprob {
            token,
            logprob: chosen[i],
            top_logprobs: &ranked[i * top..(i + 1) * top],
        })
        .collect();
    let choice = ReplyChoice {
        content: Some(text),
        tool_calls: &[],
        logprobs: Some(&entries),
        finish_reason: finish,
    };
    response::write_reply(out, meta, &vec![choice; req.n as usize], usage);
}

/// A tool-call reply: `content: null`, the calls (ids differ per choice), no logprobs (no content tokens).
fn write_calls(
    out: &mut Vec<u8>,
    meta: &Meta<'_>,
    req: &ChatRequest<'_>,
    calls: &Calls,
    usage: Usage,
) {
    let per_choice = calls.calls.len().max(1);
    let ids: Vec<String> = (0..req.n)
        .flat_map(|choice| (0..calls.calls.len()).map(move |i| (choice, i)))
        .map(|(choice, i)| structured::call_id(calls.key, choice, i, &mut [0; 32]).to_string())
        .collect();
    let wire: Vec<ToolCall<'_>> = ids
        .iter()
        .zip(calls.calls.iter().cycle())
        .map(|(id, call)| ToolCall {
            id,
            name: &req.tools[call.function].name,
            arguments: &call.arguments,
        })
        .collect();
    let choices: Vec<ReplyChoice<'_>> = wire
        .chunks(per_choice)
        .map(|tool_calls| ReplyChoice {
            content: None,
            tool_calls,
            logprobs: None,
            finish_reason: calls.finish,
        })
        .collect();
    response::write_reply(out, meta, &choices, usage);
}

/// Streams the answer: per choice a role chunk, then one chunk per token (or argument piece), then a finish
/// chunk; the usage chunk when asked; then `[DONE]`. The role chunk goes out in the same write as the first
/// content; with a pace, the head goes out at once and each token when it is ready. Stops at the first
/// failed write (the client left), so an abandoned stream costs nothing more.
fn stream(
    req: &ChatRequest<'_>,
    meta: &Meta<'_>,
    answer: &Answer,
    usage: Usage,
    schedule: Schedule,
    job: &Job<'_>,
    res: &mut Responder<'_>,
) -> Option<Duration> {
    let fault = job.fault;
    let mut first_token: Option<Instant> = None;
    let mut last_token = schedule.start;
    let chunk_usage = if req.include_usage {
        ChunkUsage::Null
    } else {
        ChunkUsage::Absent
    };
    let paced = !schedule.pace.is_instant();
    // An unpaced stream's gaps are all zero (one clock read serves its tokens): counted, then observed once.
    let mut zero_gaps = 0;
    let mut ticker = schedule.ticker();
    let mut sse = res.start_sse(200, &[]);
    let result = (|| -> std::io::Result<faults::Ending> {
        let mut steps = Steps::new(req, meta, answer, chunk_usage);
        let mut k = 0;
        // The first token's wait; each turn sets the next. What is ready (the head) goes out before it.
        let wait = pacer::first_wait(paced, &mut ticker, &mut sse)?;
        let ended = {
            // One turn: every token that is due, then what is ready goes out and the next wait is set. A
            // waiting stream's turns are run by the pacer (`Mode::Pacer`: writes must not wait), which writes
            // the due tokens of all streams back to back.
            let mut turn = |mode: Mode| -> std::io::Result<Turn<Option<faults::Ending>>> {
                sse.set_nonblocking(mode == Mode::Pacer);
                if mode == Mode::Flush {
                    return sse.flush().map(|()| Turn::Wait(Instant::now()));
                }
                loop {
                    if k == 0 {
                        steps.open(&mut sse)?;
                    }
                    if fault == Some(StreamFault::Cut(k as u32)) {
                        return Ok(Turn::End(Some(faults::Ending::Cut)));
                    }
                    if !steps.write_next(&mut sse, k)? {
                        return Ok(Turn::End(None));
                    }
                    // Unpaced tokens are all ready at once and go out in the same writes: one clock read
                    // serves them all (their gaps are well inside the first ITL bucket either way).
                    let now = match first_token {
                        Some(_) if !paced => last_token,
                        _ => Instant::now(),
                    };
                    match first_token {
                        Some(_) if paced => job.metrics.observe_itl(now - last_token),
                        Some(_) => zero_gaps += 1,
                        None => {}
                    }
                    first_token.get_or_insert(now);
                    last_token = now;
                    k += 1;
                    match fault {
                        Some(StreamFault::Error) => {
                            sse.event(|out| {
                                out.extend_from_slice(faults::STREAM_ERROR.as_bytes())
                            })?;
                            return Ok(Turn::End(Some(faults::Ending::Finish)));
                        }
                        Some(StreamFault::Stall) => {
                            return Ok(Turn::End(Some(faults::Ending::Stall)))
                        }
                        _ => {}
                    }
                    if steps.is_done() {
                        return Ok(Turn::End(None));
                    }
                    if let Some(end) = pacer::after_token(paced, &mut ticker, &mut sse) {
                        return end;
                    }
                }
            };
            pacer::drive(wait, &mut turn)?
        };
        if let Some(ending) = ended {
            return Ok(ending);
        }
        if let Some(StreamFault::Cut(_)) = fault {
            // K at or past the last token: the cut still comes, before the finish chunk.
            return Ok(faults::Ending::Cut);
        }
        let finish = Some(answer.summary().1);
        for index in 0..req.n {
            sse.event(|out| steps.write_finish(out, index, finish))?;
        }
        if req.include_usage {
            sse.event(|out| response::write_usage_chunk(out, meta, usage))?;
        }
        if fault != Some(StreamFault::NoDone) {
            sse.event(|out| out.extend_from_slice(b"[DONE]"))?;
        }
        Ok(faults::Ending::Finish)
    })();
    job.metrics.observe_itls(Duration::ZERO, zero_gaps);
    match result {
        Ok(faults::Ending::Finish) if fault.is_none() => {
            sse.finish().ok()?;
            Some(first_token.unwrap_or(last_token) - schedule.start)
        }
        Ok(faults::Ending::Finish) => sse.finish().ok().and(None),
        Ok(faults::Ending::Cut) => {
            sse.cut();
            None
        }
        Ok(faults::Ending::Stall) => {
            sse.stall(faults::MAX_STALL);
            None
        }
        // The client left: nothing more to do.
        Err(_) => None,
    }
}

/// What a stream sends step by step: each step is one token of text (or one piece of a call's arguments),
/// written for every choice.
struct Steps<'a> {
    req: &'a ChatRequest<'a>,
    meta: &'a Meta<'a>,
    usage: ChunkUsage,
    kind: StepKind<'a>,
}

enum StepKind<'a> {
    Text {
        tokens: Peekable<tokens::Tokens<'a>>,
        chunks: ContentChunks,
        /// The whole reply needs no escape, so none of its tokens does.
        plain: bool,
        /// Seed and alternatives per token, when the client asked for logprobs.
        logprobs: Option<(u64, usize)>,
    },
    Calls {
        calls: &'a Calls,
        /// (call index, whether it is the call's first piece, the piece)
        pieces: Peekable<std::vec::IntoIter<(usize, bool, &'a str)>>,
    },
}

impl<'a> Steps<'a> {
    fn new(
        req: &'a ChatRequest<'a>,
        meta: &'a Meta<'a>,
        answer: &'a Answer,
        usage: ChunkUsage,
    ) -> Self {
        let kind = match answer {
            Answer::Text(generation) => StepKind::Text {
                tokens: tokens::split(&generation.text).peekable(),
                chunks: ContentChunks::new(meta, usage),
                plain: !response::needs_escape(generation.text.as_bytes()),
                logprobs: req
                    .logprobs
                    .map(|top| (seed(req), usize::from(top).min(MAX_TOP))),
            },
            Answer::Calls(calls) => {
                let pieces: Vec<(usize, bool, &str)> = calls
                    .calls
                    .iter()
                    .enumerate()
                    .flat_map(|(i, call)| {
                        tokens::split(&call.arguments)
                            .enumerate()
                            .map(move |(j, piece)| (i, j == 0, piece))
                    })
                    .collect();
                StepKind::Calls {
                    calls,
                    pieces: pieces.into_iter().peekable(),
                }
            }
        };
        Steps {
            req,
            meta,
            usage,
            kind,
        }
    }

    /// The first chunk of every choice: the role, and for calls the first call's id and name.
    fn open(&self, sse: &mut SseWriter<'_>) -> std::io::Result<()> {
        let (req, meta, usage) = (self.req, self.meta, self.usage);
        for index in 0..req.n {
            match &self.kind {
                StepKind::Text { chunks, .. } => {
                    let role = Delta {
                        role: Some("assistant"),
                        content: Some(""),
                    };
                    sse.event(|out| chunks.write_delta(out, index, role, None))?;
                }
                StepKind::Calls { calls, .. } => {
                    let mut id = [0; 32];
                    let start = start(req, calls, index, 0, &mut id);
                    sse.event(|out| response::write_tool_chunk(out, meta, index, start, usage))?;
                }
            }
        }
        Ok(())
    }

    /// The finish chunk of choice `index`: an empty delta and the reason.
    fn write_finish(&self, out: &mut Vec<u8>, index: u32, finish: Option<&str>) {
        match &self.kind {
            StepKind::Text { chunks, .. } => {
                chunks.write_delta(out, index, Delta::default(), finish)
            }
            StepKind::Calls { .. } => {
                response::write_chunk(out, self.meta, index, Delta::default(), finish, self.usage)
            }
        }
    }

    /// Writes step `k` for every choice; false when there is none left.
    fn write_next(&mut self, sse: &mut SseWriter<'_>, k: usize) -> std::io::Result<bool> {
        let (req, meta, usage) = (self.req, self.meta, self.usage);
        match &mut self.kind {
            StepKind::Text {
                tokens,
                chunks,
                plain,
                logprobs,
            } => {
                let Some(token) = tokens.next() else {
                    return Ok(false);
                };
                match *logprobs {
                    None if *plain => {
                        for index in 0..req.n {
                            sse.event(|out| chunks.write_plain(out, index, token))?;
                        }
                    }
                    None => {
                        for index in 0..req.n {
                            sse.event(|out| chunks.write(out, index, token))?;
                        }
                    }
                    Some((seed, top)) => {
                        let mut ranked = [("", 0.0); MAX_TOP];
                        let entry = TokenLogprob {
                            token,
                            logprob: logprobs::rank(seed, k, token, &mut ranked[..top]),
                            top_logprobs: &ranked[..top],
                        };
                        for index in 0..req.n {
                            sse.event(|out| chunks.write_logprob(out, index, token, &entry))?;
                        }
                    }
                }
            }
            StepKind::Calls { calls, pieces } => {
                let Some((call, first, piece)) = pieces.next() else {
                    return Ok(false);
                };
                for index in 0..req.n {
                    // The first call's start went out with the role.
                    if first && call > 0 {
                        let mut id = [0; 32];
                        let start = start(req, calls, index, call, &mut id);
                        sse.event(|out| {
                            response::write_tool_chunk(out, meta, index, start, usage)
                        })?;
                    }
                    let arguments = ToolCallDelta::Arguments {
                        index: call as u32,
                        arguments: piece,
                    };
                    sse.event(|out| {
                        response::write_tool_chunk(out, meta, index, arguments, usage)
                    })?;
                }
            }
        }
        Ok(true)
    }

    fn is_done(&mut self) -> bool {
        match &mut self.kind {
            StepKind::Text { tokens, .. } => tokens.peek().is_none(),
            StepKind::Calls { pieces, .. } => pieces.peek().is_none(),
        }
    }
}

/// The delta that starts call `call` of choice `choice` (the first call's also opens the message).
fn start<'a>(
    req: &'a ChatRequest<'_>,
    calls: &Calls,
    choice: u32,
    call: usize,
    id: &'a mut [u8; 32],
) -> ToolCallDelta<'a> {
    ToolCallDelta::Start {
        first: call == 0,
        index: call as u32,
        id: structured::call_id(calls.key, choice, call, id),
        name: &req.tools[calls.calls[call].function].name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::echo::Echo;
    use crate::openai::chat;

    const TOOLS: &str = r#""tools":[
        {"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
        {"type":"function","function":{"name":"ping"}}]"#;

    fn body(messages: &str, extra: &str) -> String {
        format!(r#"{{"model":"m","messages":{messages},{TOOLS}{extra}}}"#)
    }

    fn calls(body: &str) -> Option<Calls> {
        tool_calls(&chat::parse(body.as_bytes(), 64).unwrap())
    }

    fn names(calls: &Calls) -> Vec<usize> {
        calls.calls.iter().map(|c| c.function).collect()
    }

    const ASK: &str = r#"[{"role":"user","content":"use get_weather for Oslo"}]"#;

    #[test]
    fn tool_choice_decides_between_calls_and_text() {
        let auto = calls(&body(ASK, "")).unwrap();
        assert_eq!((names(&auto), auto.finish), (vec![0], "tool_calls"));
        let city = &auto.calls[0].arguments;
        assert!(city.starts_with(r#"{"city": ""#), "{city}");
        let required = calls(&body(
            r#"[{"role":"user","content":"x"}]"#,
            r#","tool_choice":"required""#,
        ));
        assert_eq!(names(&required.unwrap()), vec![0, 1]);
        assert!(calls(&body(ASK, r#","tool_choice":"none""#)).is_none());
        // Auto answers with text unless the user's last message names a tool.
        let from_assistant = r#"[{"role":"assistant","content":"use get_weather"}]"#;
        assert!(calls(&body(from_assistant, "")).is_none());
        assert!(calls(&body(r#"[{"role":"user","content":"weather?"}]"#, "")).is_none());
    }

    #[test]
    fn calls_are_reproducible_and_cut_by_max_tokens() {
        let seeded = body(ASK, r#","tool_choice":"required","seed":5"#);
        let (a, b) = (calls(&seeded).unwrap(), calls(&seeded).unwrap());
        assert_eq!((&a.calls, a.key), (&b.calls, b.key));
        assert_eq!(
            a.tokens,
            a.calls
                .iter()
                .map(|c| tokens::count(&c.arguments))
                .sum::<usize>()
        );
        let cut = calls(&body(ASK, r#","tool_choice":"required","max_tokens":1"#)).unwrap();
        assert_eq!((cut.calls.len(), cut.tokens, cut.finish), (1, 1, "length"));
    }

    #[test]
    fn json_formats_replace_the_text() {
        let req = r#"{"model":"m","messages":[{"role":"user","content":"a b"}],"response_format":{"type":"json_object"},"n":2}"#;
        let (generation, usage) = generate(&Echo, &chat::parse(req.as_bytes(), 64).unwrap(), None);
        assert_eq!(generation.text, r#"{"echo": "a b"}"#);
        assert_eq!(usage.completion_tokens, 2 * 3);
        let req = r#"{"model":"m","messages":[{"role":"user","content":"a b"}],"max_tokens":2,
            "response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object","properties":{"x":{"type":"integer"},"y":{"type":"integer"}}}}}}"#;
        let (generation, _) = generate(&Echo, &chat::parse(req.as_bytes(), 64).unwrap(), None);
        assert!(
            generation.text.starts_with(r#"{"x": "#),
            "{}",
            generation.text
        );
        assert_eq!((generation.tokens, generation.finish), (2, Finish::Length));
    }
}
