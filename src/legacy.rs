//! `POST /v1/completions` (legacy text completions): validated request → model → a JSON reply or an SSE
//! stream. The wire format lives in `openai::completions`; token timing follows `crate::completion`, so both
//! endpoints pace alike.

use std::time::{Duration, Instant};

use crate::faults::{self, Ending, StreamFault};
use crate::http::Responder;
use crate::ids;
use crate::job::Job;
use crate::models::{tokens, Finish, Generation, Model, Prompt, Sampling};
use crate::openai::chat::MAX_STOP;
use crate::openai::completions::{self, Answer, CompletionRequest};
use crate::openai::response::{Meta, Usage};
use crate::pacer::{self, Mode, Turn};
use crate::pacing::Schedule;

/// Answers one parsed legacy completion as `job` says. Each token is ready when the job's plan says, counted
/// from when the request arrived, as for chat completions; a stream fault breaks a stream the same way.
pub fn serve(job: &Job<'_>, req: &CompletionRequest<'_>, res: &mut Responder<'_>) {
    let _running = job.metrics.start_request();
    let (generations, usage) = generate(job.model, req, job.output_tokens);
    let length = generations.iter().any(|g| g.finish == Finish::Length);
    let (prompt, generated) = (usage.prompt_tokens, usage.completion_tokens);
    let mut id_buf = [0u8; 32];
    let meta = Meta {
        id: ids::write_hex_id("cmpl-", ids::next(), &mut id_buf),
        created: crate::http::date::unix_second(),
        model: job.name,
    };
    let schedule = job.plan.schedule(usage.prompt_tokens);
    if req.stream {
        let ttft = stream(req, &meta, &generations, usage, schedule, job.fault, res);
        if let Some(ttft) = ttft {
            let e2e = schedule.start.elapsed();
            job.metrics
                .finish_request(prompt, generated, ttft, e2e, length);
        }
        return;
    }
    // A non-streaming answer leaves when the last token of its longest choice is ready.
    let longest = generations.iter().map(|g| g.tokens).max().unwrap_or(0);
    schedule.wait_for(longest.max(1) - 1);
    let answers: Vec<Answer<'_>> = req
        .prompts
        .iter()
        .zip(&generations)
        .map(|(prompt, generation)| Answer {
            echo: if req.echo { &prompt.text } else { "" },
            text: &generation.text,
            finish_reason: generation.finish.as_str(),
        })
        .collect();
    completions::write_completion(res.body(), &meta, &answers, req.n, usage);
    res.send(200, "application/json", &[]);
    let e2e = schedule.start.elapsed();
    job.metrics
        .finish_request(prompt, generated, e2e, e2e, length);
}

/// The model's output for each prompt, cut by the request's stop sequences and token limit, and the usage:
/// prompt tokens over every prompt (a token array counts its ids), completion tokens over every choice. An
/// echoed prompt counts as prompt only, as on OpenAI.
pub fn generate(
    model: &dyn Model,
    req: &CompletionRequest<'_>,
    output_tokens: Option<u32>,
) -> (Vec<Generation>, Usage) {
    let mut stop: [&str; MAX_STOP] = [""; MAX_STOP];
    let stops = req.stop.len().min(MAX_STOP);
    for (slot, s) in stop.iter_mut().zip(&req.stop) {
        *slot = s;
    }
    let sampling = Sampling {
        max_tokens: Some(req.max_tokens),
        stop: &stop[..stops],
    };
    let generations: Vec<Generation> = req
        .prompts
        .iter()
        .map(|p| {
            let prompt = Prompt {
                last_text: Some(&p.text),
                seed: req.seed.map_or(0, |s| s as u64),
                output_tokens,
            };
            model.generate(&prompt, &sampling)
        })
        .collect();
    let completion_tokens: usize = generations.iter().map(|g| g.tokens).sum();
    let usage = Usage::new(
        prompt_tokens(req),
        (completion_tokens * req.n as usize) as u64,
    );
    (generations, usage)
}

/// Prompt tokens over every prompt: a text by the shared token rule, a token array by its length.
pub fn prompt_tokens(req: &CompletionRequest<'_>) -> u64 {
    (req.prompts.iter())
        .map(|p| p.tokens.unwrap_or_else(|| tokens::count(&p.text)))
        .sum::<usize>() as u64
}

/// Streams every choice: with `echo`, the prompt as one event together with the first token; then one event
/// per token (token `k` of every choice when token `k` is ready); then a last event per choice with empty
/// text and its finish reason; the usage event when asked; then `[DONE]`. With a pace, the head goes out at
/// once and each step is flushed before the wait for the next. Stops at the first failed write (the client
/// left).
fn stream(
    req: &CompletionRequest<'_>,
    meta: &Meta<'_>,
    generations: &[Generation],
    usage: Usage,
    schedule: Schedule,
    fault: Option<StreamFault>,
    res: &mut Responder<'_>,
) -> Option<Duration> {
    let paced = !schedule.pace.is_instant();
    let mut ticker = schedule.ticker();
    let n = req.n;
    let mut first_token = None;
    let mut sse = res.start_sse(200, &[]);
    let result = (|| -> std::io::Result<Ending> {
        let mut pieces: Vec<tokens::Tokens<'_>> =
            generations.iter().map(|g| tokens::split(&g.text)).collect();
        // Step 0 always happens, so an echo goes out even when no token is generated (`max_tokens: 0`).
        let steps = generations
            .iter()
            .map(|g| g.tokens)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut k = 0;
        // The first step's wait; each turn sets the next. What is ready (the head) goes out before it.
        let wait = pacer::first_wait(paced, &mut ticker, &mut sse)?;
        let ended = {
            // One turn: every step that is due, then what is ready goes out and the next wait is set;
            // a waiting stream's turns are run by the pacer (see `pacer`), `Mode::Pacer` then.
            let mut turn = |mode: Mode| -> std::io::Result<Turn<Option<Ending>>> {
                sse.set_nonblocking(mode == Mode::Pacer);
                if mode == Mode::Flush {
                    return sse.flush().map(|()| Turn::Wait(Instant::now()));
                }
                loop {
                    first_token.get_or_insert_with(Instant::now);
                    if fault == Some(StreamFault::Cut(k as u32)) {
                        return Ok(Turn::End(Some(Ending::Cut)));
                    }
                    for ((p, prompt), tokens) in req.prompts.iter().enumerate().zip(&mut pieces) {
                        let first = p as u32 * n;
                        if k == 0 && req.echo && !prompt.text.is_empty() {
                            for index in first..first + n {
                                sse.event(|out| {
                                    completions::write_event(out, meta, index, &prompt.text, None)
                                })?;
                            }
                        }
                        if let Some(token) = tokens.next() {
                            for index in first..first + n {
                                sse.event(|out| {
                                    completions::write_event(out, meta, index, token, None)
                                })?;
                            }
                        }
                    }
                    match fault {
                        Some(StreamFault::Error) => {
                            sse.event(|out| {
                                out.extend_from_slice(faults::STREAM_ERROR.as_bytes())
                            })?;
                            return Ok(Turn::End(Some(Ending::Finish)));
                        }
                        Some(StreamFault::Stall) => return Ok(Turn::End(Some(Ending::Stall))),
                        _ => {}
                    }
                    k += 1;
                    if k == steps {
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
            // K at or past the last token: the cut still comes, before the finish events.
            return Ok(Ending::Cut);
        }
        for (p, generation) in generations.iter().enumerate() {
            let first = p as u32 * n;
            let finish = Some(generation.finish.as_str());
            for index in first..first + n {
                sse.event(|out| completions::write_event(out, meta, index, "", finish))?;
            }
        }
        if req.include_usage {
            sse.event(|out| completions::write_usage_event(out, meta, usage))?;
        }
        if fault != Some(StreamFault::NoDone) {
            sse.event(|out| out.extend_from_slice(b"[DONE]"))?;
        }
        Ok(Ending::Finish)
    })();
    // A failed write means the client left: nothing more to do.
    match result {
        Ok(Ending::Finish) if fault.is_none() => {
            sse.finish().ok()?;
            first_token.map(|t| t - schedule.start)
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
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::echo::{Echo, ECHO_PREFIX};
    use crate::models::Finish;

    fn run(body: &str) -> (Vec<Generation>, Usage) {
        let req = completions::parse(body.as_bytes(), 64).unwrap();
        generate(&Echo, &req, None)
    }

    #[test]
    fn each_prompt_is_echoed_and_counted() {
        let (generations, usage) = run(r#"{"model":"m","prompt":["Hello","a b"],"n":2}"#);
        let texts: Vec<_> = generations.iter().map(|g| g.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                format!("{ECHO_PREFIX}Hello").as_str(),
                format!("{ECHO_PREFIX}a b").as_str()
            ]
        );
        // Prompts: 1 + 2 tokens; completions: (13 + 14) tokens, twice each.
        assert_eq!(usage, Usage::new(3, 54));
    }

    #[test]
    fn default_max_tokens_cuts_long_replies() {
        let (generations, usage) = run(r#"{"model":"m","prompt":"one two three four five"}"#);
        assert_eq!(
            (generations[0].tokens, generations[0].finish),
            (16, Finish::Length)
        );
        assert_eq!(usage, Usage::new(5, 16));
    }

    #[test]
    fn token_arrays_count_their_ids() {
        let (generations, usage) = run(r#"{"model":"m","prompt":[[1212,318],[7]]}"#);
        assert_eq!(generations[0].text, format!("{ECHO_PREFIX}1212 318"));
        assert_eq!(usage.prompt_tokens, 3);
    }

    #[test]
    fn stop_and_zero_max_tokens() {
        let (generations, _) = run(r#"{"model":"m","prompt":"x","stop":"mock"}"#);
        assert_eq!(
            (generations[0].text.as_str(), generations[0].finish),
            ("As a ", Finish::Stop)
        );
        let (generations, usage) = run(r#"{"model":"m","prompt":"x","max_tokens":0,"echo":true}"#);
        assert_eq!(
            (generations[0].text.as_str(), generations[0].finish),
            ("", Finish::Length)
        );
        assert_eq!(usage, Usage::new(1, 0));
    }
}
