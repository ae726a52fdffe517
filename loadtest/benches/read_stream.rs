//! What standin-load spends reading one streamed answer, without a socket: the head, the chunked body, the
//! events, and every chunk's facts. Each way of reading the chunks runs on the same bytes in the same run,
//! so their ratio means something on a noisy machine:
//! - `whole`: what the client does on one connection (events read in place, a chunk reader whose shapes
//!   carry over across streams, and an event that is the previous one with other content text read whole
//!   in one pass, without a search for its end);
//! - `shapes`: the same with every event split out first and then read (the client before it read events
//!   whole);
//! - `conns_shared`, `conns_own`: as `whole`, with answers taken in turn by 256 connections, each copying its answer into its
//!   own read buffer as the kernel does; their readers share one set of shapes (what the client does) or
//!   each keep their own (as before the shapes were shared): sharing is for memory, and should cost no
//!   time;
//! - `per_stream`: a new chunk reader for each stream, so shapes help only within one (as before they
//!   carried over);
//! - `scanner`: the one-pass scanner on every chunk, nothing remembered;
//! - `serde`: serde_json on every chunk, the definition.
//!
//! `cargo bench -p standin-load --bench read_stream`; `STANDIN_BENCH_QUICK=1` for a smoke run.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[allow(dead_code, unused_imports)]
#[path = "../src/sse.rs"]
mod sse;

#[allow(dead_code, unused_imports)]
#[path = "../src/chunk.rs"]
mod chunk;

use sse::{parse_head, BodyDecoder, Events, Progress, Sink};

/// Streams read per sample, each with its own id, as consecutive answers on one connection.
const STREAMS: usize = 64;
const SAMPLES: usize = 10;
/// Connections taking the answers in turn in the `conns_*` ways (the README's stream benchmarks use 256).
const CONNS: usize = 256;

/// One answer as standin writes it for an 8-word prompt: role, 20 content chunks, finish, usage, `[DONE]`,
/// in one HTTP chunk.
fn answer(n: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"id":"chatcmpl-{n:016x}","object":"chat.completion.chunk","created":{},"model":"mock-gpt-model","system_fingerprint":"fp_standin","choices":"#,
        1_795_664_055 + n / 20
    );
    let choice = |delta: &str, finish: &str| {
        format!(
            r#"{head}[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}],"usage":null}}"#
        )
    };
    let mut events = vec![choice(r#"{"role":"assistant","content":""}"#, "null")];
    let words = "As a mock AI Assistant, I can only echo your last message: one two three four five six seven eight";
    for (i, word) in words.split(' ').enumerate() {
        let text = if i == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        };
        events.push(choice(&format!(r#"{{"content":"{text}"}}"#), "null"));
    }
    events.push(choice("{}", r#""stop""#));
    events.push(format!(
        r#"{head}[],"usage":{{"prompt_tokens":{},"completion_tokens":20,"total_tokens":{}}}}}"#,
        8 + n % 3,
        28 + n % 3
    ));
    events.push("[DONE]".into());
    let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nServer: standin\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\
         x-request-id: req_{n:016x}\r\nCache-Control: no-cache\r\n\r\n{:08x}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

#[derive(Clone, Copy)]
enum Way {
    Whole,
    Shapes,
    /// 256 connections; whether their readers share shapes.
    Conns {
        shared: bool,
    },
    PerStream,
    Scanner,
    Serde,
}

/// Counts what the client counts: content events and the completion tokens of the usage chunk.
struct Tally<'a> {
    reader: &'a mut chunk::Reader,
    way: Way,
    content: u32,
    tokens: u64,
}

impl Tally<'_> {
    fn facts(&mut self, facts: chunk::Facts) {
        self.content += u32::from(facts.content);
        if let Some((_, completion)) = facts.usage {
            self.tokens = completion;
        }
    }
}

impl Sink for Tally<'_> {
    fn whole(&mut self, rest: &[u8]) -> Option<usize> {
        if !matches!(self.way, Way::Whole | Way::Conns { .. }) {
            return None;
        }
        let (len, facts) = self.reader.read_event(rest)?;
        self.facts(facts);
        Some(len)
    }

    fn data(&mut self, data: &[u8]) {
        if data == b"[DONE]" {
            return;
        }
        let facts = match self.way {
            Way::Scanner => chunk::read(data),
            Way::Serde => chunk::by_serde(data),
            _ => self.reader.read(data),
        }
        .expect("valid chunk");
        self.facts(facts);
    }
}

/// Reads one answer; returns (content events, completion tokens) so nothing is optimised away.
fn read(answer: &[u8], way: Way, reader: &mut chunk::Reader, events: &mut Events) -> (u32, u64) {
    let Ok(Some(head)) = parse_head(answer) else {
        panic!("bad head")
    };
    let mut decoder = BodyDecoder::new(head.framing);
    events.clear();
    let mut tally = Tally {
        reader,
        way,
        content: 0,
        tokens: 0,
    };
    let progress = decoder.feed_pieces(&answer[head.len..], |piece| {
        events.push_to(piece, &mut tally);
    });
    assert!(matches!(progress, Ok(Progress::Done(_))));
    (tally.content, tally.tokens)
}

fn main() {
    let quick = std::env::var_os("STANDIN_BENCH_QUICK").is_some();
    let answers: Vec<Vec<u8>> = (0..STREAMS).map(answer).collect();
    let rounds = if quick { 2 } else { 400 };
    let ways = [
        ("whole", Way::Whole),
        ("shapes", Way::Shapes),
        ("conns_shared", Way::Conns { shared: true }),
        ("conns_own", Way::Conns { shared: false }),
        ("per_stream", Way::PerStream),
        ("scanner", Way::Scanner),
        ("serde", Way::Serde),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    // The ways take turns sample by sample, so a slow spell of the host falls on all of them.
    for _ in 0..if quick { 1 } else { SAMPLES } {
        for (k, &(_, way)) in ways.iter().enumerate() {
            let mut reader = chunk::Reader::default();
            let shapes = std::sync::Arc::new(chunk::Shapes::default());
            let mut conns: Vec<(chunk::Reader, Events, Vec<u8>)> = match way {
                Way::Conns { shared } => (0..CONNS)
                    .map(|_| {
                        let reader = if shared {
                            chunk::Reader::new(shapes.clone())
                        } else {
                            chunk::Reader::default()
                        };
                        (reader, Events::default(), vec![0; 16 * 1024])
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let mut events = Events::default();
            let mut turn = 0;
            let started = Instant::now();
            for _ in 0..rounds {
                for answer in &answers {
                    let (content, tokens) = match way {
                        Way::Conns { .. } => {
                            let (reader, events, buf) = &mut conns[turn % CONNS];
                            turn += 1;
                            buf[..answer.len()].copy_from_slice(answer);
                            read(black_box(&buf[..answer.len()]), way, reader, events)
                        }
                        Way::PerStream => {
                            reader = chunk::Reader::default();
                            read(black_box(answer), way, &mut reader, &mut events)
                        }
                        _ => read(black_box(answer), way, &mut reader, &mut events),
                    };
                    assert_eq!((content, tokens), (20, 20));
                }
            }
            let per = started.elapsed().max(Duration::from_nanos(1)).as_nanos() as f64;
            samples[k].push(per / (rounds * STREAMS) as f64);
        }
    }
    println!(
        "read_stream: one 24-event answer ({} bytes), median of {} samples",
        answers[0].len(),
        samples[0].len()
    );
    println!(
        "{:10} {:>10} {:>16} {:>10}",
        "way", "ns/stream", "ns/stream range", "vs serde"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let serde = median(&mut samples[ways.len() - 1].clone());
    for (k, (name, _)) in ways.iter().enumerate() {
        let v = &mut samples[k];
        let m = median(v);
        let range = format!("{:.0}..{:.0}", v[0], v[v.len() - 1]);
        println!("{name:10} {m:>10.0} {range:>16} {:>9.2}x", m / serde);
        println!(
            "bench name=read_stream_{name} ns_per_stream={m:.1} ratio_to_serde={:.3}",
            m / serde
        );
    }
}
