//! Hot-path benchmarks without a socket: time and heap allocations per operation for each step a
//! non-streaming chat completion goes through, and for the whole of it.
//!
//! `cargo bench --bench hot_path` prints a table and one `bench name=… ns_per_op=… allocs_per_op=…` line per
//! case for scripts. `STANDIN_BENCH_QUICK=1` runs each case about 1,000 times instead of about 0.5 s, so CI can
//! smoke-test the bench without spending time on it (its numbers are then only indicative).
//!
//! Allocations are counted by a global allocator wrapping `System`; a `realloc` counts as one allocation of
//! its new size, since that is what it costs. What is left out on purpose: the socket, routing, auth, the
//! access log and the response head (crate-private), which the load test measures end to end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use standin::completion;
use standin::http::request::{self, Framing, Status};
use standin::http::Limits;
use standin::ids;
use standin::models::echo::Echo;
use standin::models::tokens;
use standin::openai::chat;
use standin::openai::response::{self, ChunkUsage, ContentChunks, Delta, Meta, Usage};

/// A request head as the official Python SDK (`openai` 3.57 over httpx) sends it, captured on the wire:
/// header names and order as sent, 522 bytes.
const SDK_HEAD: &str = "POST /v1/chat/completions HTTP/1.1\r\n\
Host: 127.0.0.1:8000\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
authorization: Bearer fake-key\r\n\
accept: application/json\r\n\
content-type: application/json\r\n\
user-agent: OpenAI/Python 3.57.0\r\n\
x-stainless-lang: python\r\n\
x-stainless-package-version: 3.57.0\r\n\
x-stainless-os: Linux\r\n\
x-stainless-arch: x64\r\n\
x-stainless-runtime: CPython\r\n\
x-stainless-runtime-version: 3.11.7\r\n\
x-stainless-async: false\r\n\
x-stainless-retry-count: 0\r\n\
x-stainless-read-timeout: 600\r\n\
Content-Length: 145\r\n\
\r\n";

/// The body the SDK sent with [`SDK_HEAD`]: a system prompt and a user turn.
const SDK_BODY: &str = r#"{"model":"mock-gpt-model","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say this is a test"}]}"#;

/// `--max-json-depth`'s default.
const MAX_JSON_DEPTH: usize = 64;

/// Target wall time per case: long enough to average out timer and scheduler noise on a 2-core machine.
const TARGET: Duration = Duration::from_millis(500);

/// Timed runs per case; the median is reported.
const SAMPLES: u64 = 10;

/// Iterations per case under `STANDIN_BENCH_QUICK=1`.
const QUICK_ITERS: u64 = 1_000;

/// Counts every allocation the process makes, then hands it to `System`.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counters are atomics
// and allocate nothing, so the allocator's contract is exactly `System`'s.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours, forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through us with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` through us with this layout; the rest is the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One case's result.
struct Measure {
    name: &'static str,
    iters: u64,
    /// Median over the samples.
    ns_per_op: f64,
    /// Fastest and slowest sample, to show how noisy the machine was.
    ns_min: f64,
    ns_max: f64,
    allocs_per_op: f64,
    bytes_per_op: f64,
}

/// Runs `op` `iters` times; returns the elapsed time and the allocations and bytes it made.
fn run<T>(iters: u64, op: &mut impl FnMut() -> T) -> (Duration, u64, u64) {
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let bytes = BYTES.load(Ordering::Relaxed);
    let start = Instant::now();
    for _ in 0..iters {
        black_box(op());
    }
    let elapsed = start.elapsed();
    (
        elapsed,
        ALLOCS.load(Ordering::Relaxed) - allocs,
        BYTES.load(Ordering::Relaxed) - bytes,
    )
}

/// Calibrates an iteration count for [`TARGET`] (doubling until a run takes 50 ms, which also warms caches and
/// reused buffers), then measures it as [`SAMPLES`] runs and keeps the median time per operation: on a shared
/// 2-core machine one slow sample (a neighbour's compile, a migration) must not move the figure.
fn bench<T>(name: &'static str, quick: bool, mut op: impl FnMut() -> T) -> Measure {
    let iters = if quick {
        run(10, &mut op);
        QUICK_ITERS
    } else {
        let mut n = 1u64;
        loop {
            let (elapsed, _, _) = run(n, &mut op);
            if elapsed >= Duration::from_millis(50) {
                let per_op = elapsed.as_secs_f64() / n as f64;
                break ((TARGET.as_secs_f64() / per_op) as u64).max(SAMPLES);
            }
            n *= 2;
        }
    };
    let per_sample = iters / SAMPLES;
    let (mut allocs, mut bytes) = (0, 0);
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let (elapsed, a, b) = run(per_sample, &mut op);
            allocs += a;
            bytes += b;
            elapsed.as_nanos() as f64 / per_sample as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let total = per_sample * SAMPLES;
    Measure {
        name,
        iters: total,
        ns_per_op: samples[samples.len() / 2],
        ns_min: samples[0],
        ns_max: samples[samples.len() - 1],
        allocs_per_op: allocs as f64 / total as f64,
        bytes_per_op: bytes as f64 / total as f64,
    }
}

/// The meta every completion shares, built as `completion::serve` builds it.
fn meta<'a>(id_buf: &'a mut [u8; 32], model: &'a str) -> Meta<'a> {
    Meta {
        id: ids::write_hex_id("chatcmpl-", ids::next(), id_buf),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model,
    }
}

/// Head, body, model and encoding of one non-streaming request from a buffer holding head and body, the way
/// the connection loop and `completion::serve` do it; returns the body length written into `out`.
fn whole_request(
    buf: &[u8],
    limits: &Limits,
    spans: &mut Vec<request::HeaderSpan>,
    out: &mut Vec<u8>,
) -> usize {
    let head = match request::parse_head(buf, limits, spans) {
        Ok(Status::Complete(head)) => head,
        other => panic!("the SDK head must parse: {other:?}"),
    };
    let body = match head.framing {
        Framing::Length(n) => &buf[head.len..head.len + n],
        other => panic!("the SDK head announces a length, got {other:?}"),
    };
    let req = match chat::parse(body, MAX_JSON_DEPTH) {
        Ok(req) => req,
        Err(e) => panic!("the SDK body must validate: {e:?}"),
    };
    let (generation, usage) = completion::generate(&Echo, &req, None);
    let mut id_buf = [0u8; 32];
    let meta = meta(&mut id_buf, &req.model);
    out.clear();
    response::write_completion(
        out,
        &meta,
        req.n,
        &generation.text,
        generation.finish.as_str(),
        usage,
    );
    out.len()
}

fn main() {
    let quick = std::env::var("STANDIN_BENCH_QUICK").is_ok_and(|v| v == "1");
    // `cargo bench` passes `--bench`; a name filter like the default harness's is the only argument we read.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let limits = Limits::default();
    let mut spans = Vec::with_capacity(limits.max_headers);
    let mut request_buf = SDK_HEAD.as_bytes().to_vec();
    request_buf.extend_from_slice(SDK_BODY.as_bytes());
    let mut out = Vec::with_capacity(4096);
    let reply = format!("{}Say this is a test", standin::models::echo::ECHO_PREFIX);
    let fixed_meta = Meta {
        id: "chatcmpl-2b38069b3c0c3a88",
        created: 1_795_624_807,
        model: "mock-gpt-model",
    };

    // Check once, outside the timing, that each case does the work it claims to.
    assert!(matches!(
        request::parse_head(SDK_HEAD.as_bytes(), &limits, &mut spans),
        Ok(Status::Complete(h)) if h.len == SDK_HEAD.len() && h.framing == Framing::Length(SDK_BODY.len())
    ));
    let checked = chat::parse(SDK_BODY.as_bytes(), MAX_JSON_DEPTH).map(|r| r.messages.len());
    assert_eq!(checked.ok(), Some(2));
    let len = whole_request(&request_buf, &limits, &mut spans, &mut out);
    let value: serde_json::Value = serde_json::from_slice(&out[..len]).expect("a JSON reply");
    assert_eq!(value["choices"][0]["message"]["content"], reply.as_str());
    assert_eq!(value["usage"]["prompt_tokens"], 10);
    assert_eq!(value["usage"]["completion_tokens"], 17);

    // A longer conversation: a system prompt and 19 alternating turns, to show what grows with history.
    let turns: Vec<String> = (0..19)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            format!(r#"{{"role":"{role}","content":"Turn {i} of a conversation that goes on for a while."}}"#)
        })
        .collect();
    let long_body = format!(
        r#"{{"model":"mock-gpt-model","messages":[{{"role":"system","content":"You are a helpful assistant."}},{}]}}"#,
        turns.join(",")
    );
    let checked = chat::parse(long_body.as_bytes(), MAX_JSON_DEPTH).map(|r| r.messages.len());
    assert_eq!(checked.ok(), Some(20));

    type Case<'a> = (&'static str, Box<dyn FnMut() -> usize + 'a>);
    let mut chunk_out = Vec::with_capacity(1024);
    let mut content_out = Vec::with_capacity(1024);
    let mut plain_out = Vec::with_capacity(1024);
    let content_chunks = ContentChunks::new(&fixed_meta, ChunkUsage::Absent);
    let mut stream_out = Vec::with_capacity(8192);
    // The connection's reused buffers, as `conn.rs` keeps them across requests.
    let mut whole_spans = Vec::with_capacity(limits.max_headers);
    let mut whole_out = Vec::with_capacity(4096);
    let mut cases: Vec<Case<'_>> = vec![
        (
            "http_parse_head",
            Box::new(|| {
                match request::parse_head(black_box(SDK_HEAD.as_bytes()), &limits, &mut spans) {
                    Ok(Status::Complete(head)) => head.len,
                    _ => 0,
                }
            }),
        ),
        (
            "chat_parse_validate",
            Box::new(|| {
                chat::parse(black_box(SDK_BODY.as_bytes()), MAX_JSON_DEPTH)
                    .map_or(0, |req| req.messages.len())
            }),
        ),
        (
            "chat_parse_validate_full",
            Box::new(|| {
                chat::parse_full(black_box(SDK_BODY.as_bytes()), MAX_JSON_DEPTH)
                    .map_or(0, |req| req.messages.len())
            }),
        ),
        (
            "chat_parse_validate_20_turns",
            Box::new(|| {
                chat::parse(black_box(long_body.as_bytes()), MAX_JSON_DEPTH)
                    .map_or(0, |req| req.messages.len())
            }),
        ),
        (
            "write_completion",
            Box::new(|| {
                out.clear();
                response::write_completion(
                    &mut out,
                    black_box(&fixed_meta),
                    1,
                    black_box(&reply),
                    "stop",
                    Usage::new(10, 17),
                );
                out.len()
            }),
        ),
        (
            "write_chunk",
            Box::new(|| {
                chunk_out.clear();
                let delta = Delta {
                    role: None,
                    content: Some(black_box(" test")),
                };
                response::write_chunk(
                    &mut chunk_out,
                    black_box(&fixed_meta),
                    0,
                    delta,
                    None,
                    ChunkUsage::Absent,
                );
                chunk_out.len()
            }),
        ),
        (
            "write_content_chunk",
            Box::new(|| {
                content_out.clear();
                content_chunks.write(&mut content_out, 0, black_box(" test"));
                content_out.len()
            }),
        ),
        (
            "write_content_chunk_plain",
            Box::new(|| {
                plain_out.clear();
                content_chunks.write_plain(&mut plain_out, 0, black_box(" test"));
                plain_out.len()
            }),
        ),
        (
            "stream_chunks_per_request",
            Box::new(|| {
                // Every chunk of one streamed reply to SDK_BODY (role, 17 tokens, finish), back to back.
                stream_out.clear();
                let role = Delta {
                    role: Some("assistant"),
                    content: Some(""),
                };
                let none = ChunkUsage::Absent;
                response::write_chunk(&mut stream_out, &fixed_meta, 0, role, None, none);
                // Content chunks as the server writes them: the shared part serialized once, and the reply
                // checked for escapes once rather than token by token.
                let content = ContentChunks::new(&fixed_meta, none);
                let reply = black_box(&reply);
                let plain = !response::needs_escape(reply.as_bytes());
                for token in tokens::split(reply) {
                    if plain {
                        content.write_plain(&mut stream_out, 0, token);
                    } else {
                        content.write(&mut stream_out, 0, token);
                    }
                }
                let finish = Some("stop");
                response::write_chunk(
                    &mut stream_out,
                    &fixed_meta,
                    0,
                    Delta::default(),
                    finish,
                    none,
                );
                stream_out.len()
            }),
        ),
        (
            "whole_request_nonstream",
            Box::new(|| {
                whole_request(
                    black_box(&request_buf),
                    &limits,
                    &mut whole_spans,
                    &mut whole_out,
                )
            }),
        ),
    ];

    let mut results = Vec::new();
    for (name, op) in cases.iter_mut() {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        results.push(bench(name, quick, op));
    }

    println!(
        "hot_path: {} mode, head {} B, body {} B",
        if quick {
            "quick (~1000 iterations, indicative only)"
        } else {
            "full (~0.5 s per case, median of 10 samples)"
        },
        SDK_HEAD.len(),
        SDK_BODY.len()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>12} {:>19}",
        "name", "ns/op", "allocs/op", "bytes/op", "iterations", "ns/op min..max"
    );
    for m in &results {
        println!(
            "{:<28} {:>10.1} {:>10.2} {:>10.1} {:>12} {:>19}",
            m.name,
            m.ns_per_op,
            m.allocs_per_op,
            m.bytes_per_op,
            m.iters,
            format!("{:.0}..{:.0}", m.ns_min, m.ns_max)
        );
    }
    for m in &results {
        println!(
            "bench name={} ns_per_op={:.1} ns_min={:.1} ns_max={:.1} allocs_per_op={:.2} bytes_per_op={:.1} iters={}",
            m.name, m.ns_per_op, m.ns_min, m.ns_max, m.allocs_per_op, m.bytes_per_op, m.iters
        );
    }
}
