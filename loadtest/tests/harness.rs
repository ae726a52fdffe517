//! Integration tests of `standin-load`: the real binary, run with `--quiet --json FILE`, its report parsed
//! and checked. Against scripted fake servers (`support::fake`): every failure kind is counted under its
//! own key and kept out of the latencies, a well-formed stream is measured right, and chunked framing
//! split anywhere still parses. Against the real `standin` server: closed and open loop, streaming,
//! `--compare`, `--prompt-file`, `--sources`, `--svg`, and usage errors. Raw files and `merge`: two
//! instances merged into one report whose percentiles are those of the union of their raw samples, one
//! file merged into its own run's report, incompatible or cut files refused. `--disconnect`: hang-ups
//! counted as abandoned (not errors, not in latencies), and in agreement with the server's `/metrics`.
//! The core probe: a harness stopped mid-run reports the stall, in its report and through `merge`.
//!
//! One test binary (STYLE.md, Testing): helpers live in `tests/support/`, not in `tests/*.rs`.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::fake::{self, FakeServer, Step, TOKENS};
use support::{assert_clean, check_report, count, errors, load, load_at, load_env, number};
use support::{numpy_percentile, path_str, raw_e2el_ms, read_raw, run_paused, run_raw, Load};
use support::{Scratch, Standin};

/// Output tokens standin's echo model gives the default prompt "Hello":
/// "As a mock AI Assistant, I can only echo your last message: Hello".
const HELLO_TOKENS: u64 = 13;

/// Statistics whose order is kept by a per-request `a <= b`: if every E2EL is at least its TTFT, so is
/// each of these (std is not among them).
const ORDERED_STATS: [&str; 9] = [
    "mean", "median", "min", "max", "p50", "p90", "p95", "p99", "p99_9",
];

/// How long the scripted failures wait before answering: longer than any good answer takes, so a
/// failure leaking into the latencies would show in `max_e2el_ms`.
const FAILURE_DELAY: Duration = Duration::from_millis(250);

/// Requests in a mixed run: even ones answered well, odd ones with the failure under test.
const MIXED_REQUESTS: u64 = 6;

/// Asserts `{stat}_{low}_ms <= {stat}_{high}_ms` for every order-keeping statistic.
fn assert_ordered(r: &Value, low: &str, high: &str) {
    for stat in ORDERED_STATS {
        let (a, b) = (
            number(r, &format!("{stat}_{low}_ms")),
            number(r, &format!("{stat}_{high}_ms")),
        );
        assert!(a <= b + 1e-9, "{stat}: {low} {a} > {high} {b}: {r:#}");
    }
}

/// Asserts that `kind` is counted under its own key, that the good half of the run completed with
/// exact token counts, and that no failed request reached any latency statistic.
fn counted_and_excluded(kind: &str, bad: fn() -> Vec<Step>, extra: &str) {
    let server = FakeServer::start(move |i| {
        if i % 2 == 0 {
            fake::good_stream(Duration::ZERO)
        } else {
            let mut steps = vec![Step::Sleep(FAILURE_DELAY)];
            steps.extend(bad());
            steps
        }
    });
    let flags = format!("--stream --requests {MIXED_REQUESTS} --concurrency 1 --warmup 0 {extra}");
    let run = load_at(&server.url(), &flags);
    let r = &run.report;
    let (good, bad) = (MIXED_REQUESTS / 2, MIXED_REQUESTS / 2);
    assert_eq!(run.exit.code, Some(0), "{:?}", run.exit);
    let want = BTreeMap::from([(kind.to_string(), bad)]);
    assert_eq!(errors(r), want, "{r:#}");
    assert_eq!((count(r, "completed"), count(r, "failed")), (good, bad));
    assert_eq!(count(r, "total_output_tokens"), good * TOKENS, "{r:#}");
    assert_eq!(count(r, "total_input_tokens"), good, "{r:#}");
    for metric in ["ttft", "ttft_content", "tpot", "e2el"] {
        assert_eq!(count(r, &format!("{metric}_samples")), good, "{metric}");
    }
    assert_eq!(count(r, "itl_samples"), good * (TOKENS - 1));
    let max_e2el = number(r, "max_e2el_ms");
    assert!(
        max_e2el < FAILURE_DELAY.as_secs_f64() * 1e3,
        "a failure leaked into E2EL (max {max_e2el} ms): {r:#}"
    );
    let line = format!("errors        {kind} {bad} (excluded from latencies)");
    assert!(run.exit.stdout.contains(&line), "{}", run.exit.stdout);
}

/// One test per failure kind: `name: "key in errors", bad answer[, "extra flags"];`.
macro_rules! failure_kind {
    ($($name:ident: $kind:literal, $bad:expr $(, $extra:literal)?;)*) => {$(
        #[test]
        fn $name() {
            counted_and_excluded($kind, $bad, concat!("" $(, $extra)?));
        }
    )*};
}

failure_kind! {
    http_500_is_counted_and_excluded: "http_500",
        || fake::json_response(500, r#"{"error":{"message":"boom","type":"server_error"}}"#);
    malformed_sse_is_counted_and_excluded: "malformed_sse",
        || fake::sse(&[fake::role(), fake::content("a"), "not-json".into(), fake::DONE.into()]);
    stream_error_is_counted_and_excluded: "stream_error",
        || fake::sse(&[
            fake::role(),
            fake::content("a"),
            json!({"error": {"message": "overloaded", "type": "server_error"}}).to_string(),
        ]);
    no_done_is_counted_and_excluded: "no_done",
        || {
            let mut events = fake::good_events();
            events.pop();
            fake::sse(&events)
        };
    no_content_is_counted_and_excluded: "no_content",
        || fake::sse(&[fake::role(), fake::finish(), fake::DONE.into()]);
    usage_mismatch_is_counted_and_excluded: "usage_mismatch",
        || {
            let mut events = fake::good_events();
            let usage = events.len() - 2;
            events[usage] = fake::usage(TOKENS - 2);
            fake::sse(&events)
        };
    timeout_is_counted_and_excluded: "timeout", || vec![Step::Hang], "--timeout 0.3";
    malformed_http_is_counted_and_excluded: "malformed_http",
        || vec![Step::Write(b"garbage\r\n\r\n".to_vec())];
    io_is_counted_and_excluded: "io",
        || {
            // Head and one event of a chunked stream, then the connection drops mid-body.
            let mut steps = fake::sse(&[fake::role(), fake::content("a")]);
            *steps.last_mut().expect("end chunk") = Step::Close;
            steps
        };
}

/// A port nobody listens on: bound by us, then released.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn refused_connections_are_counted_as_connect() {
    let run = load_at(&dead_url(), "--requests 3 --concurrency 1 --warmup 0");
    assert_eq!(run.exit.code, Some(1), "nothing succeeded: {:?}", run.exit);
    assert!(
        run.exit.stderr.contains("no request succeeded"),
        "{:?}",
        run.exit
    );
    let r = &run.report;
    let want = BTreeMap::from([("connect".to_string(), 3)]);
    assert_eq!(errors(r), want, "{r:#}");
    assert_eq!((count(r, "completed"), count(r, "ttft_samples")), (0, 0));
}

#[test]
fn refused_connections_from_chosen_sources_are_counted_as_connect() {
    // With --sources the connect is non-blocking and its refusal surfaces on the first write.
    let run = load_at(
        &dead_url(),
        "--sources 2 --requests 3 --concurrency 1 --warmup 0",
    );
    assert_eq!(run.exit.code, Some(1), "{:?}", run.exit);
    let r = &run.report;
    let want = BTreeMap::from([("connect".to_string(), 3)]);
    assert_eq!(errors(r), want, "{r:#}");
}

#[test]
fn well_formed_stream_measures_tokens_and_gaps() {
    let gap = Duration::from_millis(10);
    let server = FakeServer::start(move |_| fake::good_stream(gap));
    let run = load_at(
        &server.url(),
        "--stream --requests 12 --concurrency 3 --warmup 0",
    );
    let r = &run.report;
    assert_clean(&run, 12);
    assert_eq!(server.requests(), 12);
    assert_eq!(count(r, "total_output_tokens"), TOKENS * 12);
    assert_eq!(count(r, "usage_reported"), 12, "counts came from usage");
    assert_eq!(count(r, "itl_samples"), (TOKENS - 1) * 12);
    for metric in ["ttft", "ttft_content", "tpot"] {
        assert_eq!(count(r, &format!("{metric}_samples")), 12, "{metric}");
    }
    // The server sleeps 10 ms between content chunks; the machine is shared, so the band is wide.
    for key in ["mean_itl_ms", "median_itl_ms", "mean_tpot_ms"] {
        let ms = number(r, key);
        assert!((5.0..50.0).contains(&ms), "{key} = {ms}: {r:#}");
    }
    assert_ordered(r, "ttft", "e2el");
    assert_ordered(r, "ttft", "ttft_content");
    assert!(r["stream"] == true && r["open_loop"] == false, "{r:#}");
}

#[test]
fn chunked_stream_split_mid_line_and_mid_size_still_parses() {
    // Sizes with one and two hex digits; none divides an event, so boundaries fall inside `data:` lines.
    let sizes = [37, 3, 64, 17, 29];
    let server = FakeServer::start(move |_| fake::split_stream(&sizes, Duration::from_millis(1)));
    let run = load_at(
        &server.url(),
        "--stream --requests 4 --concurrency 2 --warmup 0",
    );
    let r = &run.report;
    assert_clean(&run, 4);
    assert_eq!(count(r, "total_output_tokens"), 4 * TOKENS);
    assert_eq!(count(r, "itl_samples"), 4 * (TOKENS - 1));
    // Had every response arrived in one read, all 8 events after the first would be coalesced and the
    // splitting above would have tested nothing.
    let coalesced = number(r, "coalesced_events_mean");
    assert!(
        coalesced < 8.0,
        "the writes were not read apart: {coalesced}"
    );
}

#[test]
fn crlf_and_lf_event_endings_mixed_in_one_read_parse() {
    // SSE allows CRLF or LF line endings; proxies may rewrite some events and not others.
    let server = FakeServer::start(|_| {
        let mut body = b": keep-alive comment\r\n\r\n".to_vec();
        for (i, data) in fake::good_events().iter().enumerate() {
            let eol = if i % 2 == 0 { "\r\n" } else { "\n" };
            body.extend_from_slice(format!("data: {data}{eol}{eol}").as_bytes());
        }
        let head = fake::SSE_HEAD.as_bytes().to_vec();
        vec![
            Step::Write(head),
            Step::Write(fake::chunk(&body)),
            fake::end(),
        ]
    });
    let run = load_at(
        &server.url(),
        "--stream --requests 3 --concurrency 1 --warmup 0",
    );
    assert_clean(&run, 3);
    assert_eq!(count(&run.report, "total_output_tokens"), 3 * TOKENS);
    assert_eq!(count(&run.report, "itl_samples"), 3 * (TOKENS - 1));
}

#[test]
fn sources_spread_connections_over_loopback_addresses() {
    let server = FakeServer::start(|_| fake::good_json(7));
    let run = load_at(
        &server.url(),
        "--sources 4 --requests 40 --concurrency 8 --warmup 0",
    );
    assert_clean(&run, 40);
    assert_eq!(count(&run.report, "total_output_tokens"), 40 * 7);
    let want = (1..=4)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect();
    assert_eq!(server.peer_ips(), want);
}

#[test]
fn open_loop_warmup_is_sent_but_not_counted() {
    // 64/s for 0.25 s: exactly 16 warm-up slots (binary fractions, no rounding), then 20 measured.
    let server = FakeServer::start(|_| fake::good_json(3));
    let flags = "--rate 64 --arrival constant --warmup 0.25 --requests 20";
    let run = load_at(&server.url(), flags);
    let r = &run.report;
    assert_clean(&run, 20);
    assert_eq!(server.requests(), 36);
    assert_eq!(count(r, "warmup"), 16, "{r:#}");
    assert_eq!(count(r, "total_output_tokens"), 20 * 3);
    assert_eq!(count(r, "e2el_co_samples"), 20);
}

#[test]
fn closed_loop_against_standin() {
    let server = Standin::start();
    let run = load_at(&server.url(), "--requests 200 --concurrency 8 --warmup 0");
    let r = &run.report;
    assert_clean(&run, 200);
    assert_eq!(count(r, "total_output_tokens"), 200 * HELLO_TOKENS);
    assert_eq!(
        count(r, "total_input_tokens"),
        200,
        "\"Hello\" is one token"
    );
    assert_eq!(count(r, "usage_reported"), 200);
    for metric in ["itl", "ttft", "tpot"] {
        assert_eq!(
            count(r, &format!("{metric}_samples")),
            0,
            "no stream, no {metric}"
        );
    }
    assert_eq!(r["mode"], "closed c=8");
    assert_eq!(r["label"].as_str(), Some(server.url().as_str()));
    assert!((1..=8).contains(&count(r, "peak_in_flight")), "{r:#}");
    assert!(r.get("mean_e2el_co_ms").is_none(), "closed loop: no _co");
}

#[test]
fn streaming_against_standin() {
    let server = Standin::start();
    let run = load_at(
        &server.url(),
        "--stream --requests 60 --concurrency 4 --warmup 0",
    );
    let r = &run.report;
    assert_clean(&run, 60);
    for metric in ["ttft", "ttft_content", "tpot"] {
        assert_eq!(count(r, &format!("{metric}_samples")), 60, "{metric}");
    }
    // standin sends each token as its own event: 12 gaps per request. The echo model answers at once,
    // so the events often share a read and the gaps may well be 0.
    assert_eq!(count(r, "itl_samples"), 60 * (HELLO_TOKENS - 1));
    assert_eq!(count(r, "total_output_tokens"), 60 * HELLO_TOKENS);
    assert_eq!(count(r, "usage_reported"), 60, "counts came from usage");
    assert!(number(r, "mean_ttft_ms") > 0.0, "{r:#}");
    assert_ordered(r, "ttft", "e2el");
}

#[test]
fn the_stream_floor_paces_a_valid_stream_one_token_per_write() {
    let floor = Standin::stream_floor(&["--itl-ms", "5"]);
    let run = load_at(
        &floor.url(),
        "--stream --requests 24 --concurrency 4 --warmup 0",
    );
    let r = &run.report;
    // The harness checks every stream: usage against content events, finish, [DONE], framing.
    assert_clean(&run, 24);
    assert_eq!(count(r, "total_output_tokens"), 24 * HELLO_TOKENS);
    assert_eq!(count(r, "usage_reported"), 24);
    assert_eq!(count(r, "itl_samples"), 24 * (HELLO_TOKENS - 1));
    // Paced, not instant: every deadline counts from the request, so no stream ends before its 12 gaps
    // (less the floor's 50 µs early margin; lateness only adds). A late token shortens the gap after it,
    // so single gaps can be short, but not the typical one.
    assert!(number(r, "min_e2el_ms") >= 12.0 * 5.0 - 0.1, "{r:#}");
    assert!(number(r, "median_itl_ms") >= 4.5, "{r:#}");
    // One write per token: only the first write (role and token) and the last (token, finish, usage,
    // [DONE]) carry several events; a server that wrote the stream at once would give 16 per read.
    assert!(number(r, "coalesced_events_mean") < 8.0, "{r:#}");
}

#[test]
fn open_loop_against_standin() {
    let server = Standin::start();
    let flags = "--stream --rate 200 --requests 100 --arrival constant --warmup 0";
    let run = load_at(&server.url(), flags);
    let r = &run.report;
    assert_clean(&run, 100);
    assert_eq!(r["open_loop"], true);
    assert_eq!(r["mode"], "open rate=200 constant");
    for metric in ["ttft_co", "e2el_co"] {
        assert_eq!(count(r, &format!("{metric}_samples")), 100, "{metric}");
        for stat in ORDERED_STATS.iter().chain(&["std"]) {
            number(r, &format!("{stat}_{metric}_ms"));
        }
    }
    // Corrected latencies add each request's send lag, which is never negative.
    assert_ordered(r, "e2el", "e2el_co");
    assert_ordered(r, "ttft", "ttft_co");
}

#[test]
fn open_loop_window_covers_the_whole_schedule() {
    // 100 constant arrivals 5 ms apart: the schedule alone spans 495 ms, so the measured window can't be
    // shorter and the request throughput can't beat 100 requests in 495 ms.
    let server = FakeServer::start(|_| fake::good_json(3));
    let flags = "--stream --rate 200 --requests 100 --arrival constant --warmup 0";
    let run = load_at(&server.url(), flags);
    let r = &run.report;
    assert_clean(&run, 100);
    assert!(number(r, "duration") >= 0.495, "{r:#}");
    assert!(number(r, "request_throughput") <= 100.0 / 0.495, "{r:#}");
}

#[test]
fn compare_reports_both_servers_and_ratios() {
    let (a, b) = (Standin::start(), Standin::start());
    let (url_a, url_b) = (a.url(), b.url());
    let flags = format!("--compare {url_b} --requests 40 --concurrency 4 --warmup 0");
    let run = load_at(&url_a, &flags);
    let doc = &run.report;
    assert_eq!(run.exit.code, Some(0), "{:?}", run.exit);
    for (side, url, target) in [("a", &url_a, 0), ("b", &url_b, 1)] {
        let r = &doc[side];
        assert_eq!(r["label"].as_str(), Some(url.as_str()), "{side}");
        assert_eq!(count(r, "target"), target);
        assert_eq!(
            (count(r, "completed"), count(r, "failed")),
            (40, 0),
            "{side}: {r:#}"
        );
        assert_eq!(count(r, "total_output_tokens"), 40 * HELLO_TOKENS);
    }
    let ratios = doc["ratio_b_over_a"].as_object().expect("ratio_b_over_a");
    assert_eq!(ratios["completed"], 1.0);
    assert_eq!(ratios["total_output_tokens"], 1.0);
    let a_fields = doc["a"].as_object().expect("a");
    for (key, value) in a_fields {
        // The target's index and the core probe's figures describe the run, not a server.
        let of_the_run = key == "target" || key.contains("client_stall");
        if value.is_number() && !of_the_run {
            assert!(ratios.contains_key(key), "no ratio for {key}");
        }
        if key.contains("client_stall") {
            assert!(!ratios.contains_key(key), "a ratio for {key}");
            assert_eq!(value, &doc["b"][key], "one run, one probe: {key}");
        }
    }
}

#[test]
fn prompt_file_bodies_are_used_in_turn() {
    let server = Standin::start();
    let scratch = Scratch::new();
    let file = scratch.path("bodies.jsonl");
    let body = |text: &str| {
        json!({"model": "mock-gpt-model", "messages": [{"role": "user", "content": text}]})
            .to_string()
    };
    // Blank lines are skipped; "one two three" is 3 prompt tokens and 2 more output tokens than "Hello".
    let text = format!("{}\n\n{}\n", body("Hello"), body("one two three"));
    std::fs::write(&file, text).expect("write bodies");
    let url = server.url();
    let run = load(&[
        "--url",
        &url,
        "--prompt-file",
        path_str(&file),
        "--requests",
        "10",
        "--concurrency",
        "2",
        "--warmup",
        "0",
    ]);
    let r = &run.report;
    assert_clean(&run, 10);
    assert_eq!(count(r, "total_input_tokens"), 5 + 5 * 3);
    let want = 5 * HELLO_TOKENS + 5 * (HELLO_TOKENS + 2);
    assert_eq!(count(r, "total_output_tokens"), want);
}

#[test]
fn sources_against_standin() {
    let server = Standin::start();
    let flags = "--sources 4 --requests 100 --concurrency 8 --warmup 0";
    assert_clean(&load_at(&server.url(), flags), 100);
}

#[test]
fn svg_report_is_written() {
    let server = Standin::start();
    let scratch = Scratch::new();
    let svg = scratch.path("report.svg");
    let url = server.url();
    let run = load(&[
        "--url",
        &url,
        "--stream",
        "--svg",
        path_str(&svg),
        "--requests",
        "20",
        "--warmup",
        "0",
    ]);
    assert_clean(&run, 20);
    let text = std::fs::read_to_string(&svg).expect("--svg wrote no file");
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(200)]);
    assert!(text.trim_end().ends_with("</svg>"));
}

#[test]
fn usage_errors_exit_2() {
    let scratch = Scratch::new();
    let bad_jsonl = scratch.path("bad.jsonl");
    std::fs::write(&bad_jsonl, "{\"model\":\"m\"}\nnot json\n").expect("write");
    let missing = scratch.path("missing.jsonl");
    let cases: [(&[&str], &str); 12] = [
        (&["--bogus"], "unknown flag --bogus"),
        (&["--requests"], "--requests needs a value"),
        (&["--rate", "5", "--concurrency", "3"], "exclude each other"),
        (&["--arrival", "weird"], "--arrival"),
        (&["--prompt-file", path_str(&bad_jsonl)], "line 2"),
        (&["--prompt-file", path_str(&missing)], "--prompt-file"),
        // Only http:// is supported; the runner rejects the rest before sending anything.
        (
            &["--url", "https://127.0.0.1:1", "--requests", "1"],
            "http://",
        ),
        (&["--disconnect", "2"], "probability"),
        (&["--stall-ms", "-1"], "--stall-ms"),
        (&["--instances", "3"], "--instance-index"),
        (&["merge"], "at least one"),
        (&["merge", path_str(&missing)], "missing.jsonl"),
    ];
    for (args, needle) in cases {
        let exit = run_raw(args);
        assert_eq!(exit.code, Some(2), "{args:?}: {exit:?}");
        assert!(
            exit.stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {exit:?}"
        );
    }
    let help = run_raw(&["--help"]);
    assert_eq!(help.code, Some(0), "{help:?}");
    assert!(help.stdout.contains("--prompt-file") && help.stdout.contains("--sources"));
    assert!(help.stdout.contains("--raw") && help.stdout.contains("standin-load merge FILE"));
    let merge_help = run_raw(&["merge", "--help"]);
    assert_eq!(merge_help.code, Some(0), "{merge_help:?}");
    assert!(merge_help.stdout.contains("union"), "{merge_help:?}");
}

/// Runs one harness instance of a merged test: `--raw` and `--json` into `scratch`, instance `index` of
/// `instances` given by the flag (`by_env` false) or by `JOB_COMPLETION_INDEX` as a Kubernetes Indexed
/// Job sets it (`by_env` true).
fn instance(
    url: &str,
    scratch: &Scratch,
    index: usize,
    by_env: bool,
    flags: &str,
) -> (Load, PathBuf) {
    let raw = scratch.path(&format!("raw-{index}.jsonl"));
    let index_text = index.to_string();
    let mut args = vec!["--url", url, "--raw", path_str(&raw), "--instances", "2"];
    if !by_env {
        args.extend(["--instance-index", &index_text]);
    }
    args.extend(flags.split_whitespace());
    let env: &[(&str, &str)] = if by_env {
        &[("JOB_COMPLETION_INDEX", &index_text)]
    } else {
        &[]
    };
    (load_env(&args, env), raw)
}

/// The number after `"key": ` in a JSON text, parsed by `str::parse` (correctly rounded, so a float the
/// harness printed comes back bit for bit).
fn exact_number(json_text: &str, key: &str) -> f64 {
    let start = json_text
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {json_text}"))
        + key.len()
        + 4;
    let end = json_text[start..]
        .find([',', '\n', '}'])
        .map_or(json_text.len(), |e| start + e);
    json_text[start..end].trim().parse().expect("a number")
}

/// `standin-load merge ARGS` with `--json FILE` added; its exit and parsed report.
fn merge(files: &[&Path], scratch: &Scratch) -> Load {
    let json = scratch.path("merged.json");
    let mut args = vec!["merge", "--json", path_str(&json)];
    args.extend(files.iter().map(|p| path_str(p)));
    let exit = run_raw(&args);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("merge wrote no JSON ({e}): {exit:?}"));
    let report: Value = serde_json::from_str(&text).expect("merged JSON");
    check_report(&report);
    Load { exit, report }
}

#[test]
fn two_instances_merge_into_one_exact_report() {
    let server = Standin::start();
    let scratch = Scratch::new();
    let url = server.url();
    // Random prompt lengths give the echo answers of different lengths, so the E2ELs spread.
    let flags = "--stream --requests 150 --concurrency 4 --warmup 0 --prompt-words 1:12 --seed 40";
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| instance(&url, &scratch, 0, false, flags));
        let b = s.spawn(|| instance(&url, &scratch, 1, true, flags));
        (a.join().expect("instance 0"), b.join().expect("instance 1"))
    });
    let ((run_a, raw_a), (run_b, raw_b)) = (a, b);
    assert_clean(&run_a, 150);
    assert_clean(&run_b, 150);
    let (lines_a, lines_b) = (read_raw(&raw_a), read_raw(&raw_b));
    for (lines, index) in [(&lines_a, 0), (&lines_b, 1)] {
        let h = &lines.header;
        assert_eq!((count(h, "instance"), count(h, "seed")), (index, 40), "{h}");
        assert_eq!(count(h, "effective_seed"), 40 + index, "seed + index: {h}");
        assert_eq!(h["url"].as_str(), Some(url.as_str()));
        assert_eq!(count(&lines.trailer, "sent"), 150);
    }

    let merged = merge(&[&raw_a, &raw_b], &scratch);
    let m = &merged.report;
    let merged_text = std::fs::read_to_string(scratch.path("merged.json")).expect("merged JSON");
    assert_eq!(merged.exit.code, Some(0), "{:?}", merged.exit);
    assert!(
        !merged.exit.stderr.contains("warning"),
        "{}",
        merged.exit.stderr
    );
    assert_eq!(
        count(m, "completed"),
        count(&run_a.report, "completed") + 150
    );
    assert_eq!(count(m, "completed"), 300);
    for key in ["total_output_tokens", "total_input_tokens", "itl_samples"] {
        let sum = count(&run_a.report, key) + count(&run_b.report, key);
        assert_eq!(count(m, key), sum, "{key}");
    }
    assert_eq!(m["seeds"], json!([40, 41]));
    assert_eq!((count(m, "instances"), count(m, "requests_sent")), (2, 300));
    assert_eq!(m["mode"], "closed c=4, 2 instances");
    // The window covers both runs; they overlapped, so the merged peak exceeds either one's.
    let longest = number(&run_a.report, "duration").max(number(&run_b.report, "duration"));
    assert!(number(m, "duration") >= longest, "{m:#}");
    let peaks = [&run_a.report, &run_b.report].map(|r| count(r, "peak_in_flight"));
    assert!(peaks.iter().all(|&p| p <= 4), "{peaks:?}");
    assert!(
        (peaks[0].max(peaks[1])..=8).contains(&count(m, "peak_in_flight")),
        "{peaks:?} {m:#}"
    );

    // Exactness: the merged percentiles are numpy's over the union of both files' raw samples.
    let mut union = raw_e2el_ms(&lines_a.records);
    union.extend(raw_e2el_ms(&lines_b.records));
    union.sort_by(f64::total_cmp);
    assert_eq!(union.len(), 300);
    assert_eq!(count(m, "e2el_samples"), 300);
    for (key, p) in [
        ("p50_e2el_ms", 50.0),
        ("p99_e2el_ms", 99.0),
        ("p90_e2el_ms", 90.0),
    ] {
        // Read with std's correctly rounded parser: serde_json's default one may be an ulp off.
        assert_eq!(
            exact_number(&merged_text, key),
            numpy_percentile(&union, p),
            "{key}"
        );
    }
    let mean = union.iter().sum::<f64>() / union.len() as f64;
    assert!(
        (number(m, "mean_e2el_ms") - mean).abs() <= 1e-9 * mean,
        "{m:#}"
    );
    // A directory stands for its *.jsonl files (for images without a shell): the same report.
    let by_dir = merge(&[scratch.path("").as_path()], &scratch);
    assert_eq!(by_dir.report["p99_e2el_ms"], m["p99_e2el_ms"]);
    assert_eq!(
        by_dir.report["merged_files"].as_array().map(Vec::len),
        Some(2)
    );
    // Not an average of the two runs' percentiles (which would be a different number here).
    let averaged =
        (number(&run_a.report, "p99_e2el_ms") + number(&run_b.report, "p99_e2el_ms")) / 2.0;
    assert_ne!(number(m, "p99_e2el_ms"), averaged, "{m:#}");
}

#[test]
fn processes_split_the_load_and_report_it_as_one_run() {
    let server = Standin::start();
    // 301 requests over 3 processes: shares of 101, 100 and 100, each child its own seed.
    let run = load_at(
        &server.url(),
        "--stream --requests 301 --concurrency 6 --processes 3 --warmup 0 --prompt-words 1:12 --seed 7",
    );
    assert_clean(&run, 301);
    let r = &run.report;
    assert_eq!(r["mode"], "closed c=6, 3 processes");
    assert_eq!((count(r, "processes"), count(r, "instances")), (3, 3));
    assert_eq!(r["seeds"], json!([7, 8, 9]), "child i sends seed + i");
    assert_eq!(count(r, "requests_sent"), 301);
    assert!((1..=6).contains(&count(r, "peak_in_flight")), "{r:#}");
    assert_eq!(
        count(r, "itl_samples") + 301,
        count(r, "total_output_tokens")
    );
    let metrics = server.metrics();
    assert_eq!(
        metrics["standin_http_responses_total{class=\"2xx\"}"] as u64, 301,
        "the server saw each request once: {metrics:?}"
    );
}

#[test]
fn processes_sum_their_progress_and_pass_on_what_else_they_say() {
    let server = Standin::start();
    let url = server.url();
    let args = [
        "--url",
        &url,
        "--processes",
        "2",
        "--concurrency",
        "2",
        "--duration",
        "1.5",
        "--warmup",
        "0",
        "--workers",
        "1",
    ];
    let exit = run_raw(&args);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        exit.stdout.contains("[closed c=2, 2 processes]"),
        "{}",
        exit.stdout
    );
    let progress: Vec<&str> = exit
        .stderr
        .lines()
        .filter(|l| l.contains("processes="))
        .collect();
    assert!(
        !progress.is_empty(),
        "no summed progress line: {}",
        exit.stderr
    );
    assert!(
        progress.iter().all(|l| l.contains(" done=")),
        "{progress:?}"
    );
    assert!(
        !exit.stderr.contains("[process "),
        "nothing else to say: {}",
        exit.stderr
    );

    // Every child fails to connect: each says so, marked; the merged report counts every failure.
    let dead = dead_url();
    let exit = run_raw(&[
        "--url",
        &dead,
        "--processes",
        "2",
        "--requests",
        "4",
        "--concurrency",
        "2",
        "--warmup",
        "0",
        "--quiet",
    ]);
    assert_eq!(exit.code, Some(1), "nothing succeeded: {exit:?}");
    assert!(
        exit.stderr
            .contains("[process 0] standin-load: no request succeeded"),
        "{}",
        exit.stderr
    );
    assert!(exit.stderr.contains("[process 1] "), "{}", exit.stderr);
    assert!(
        exit.stdout.contains("0 completed, 4 failed"),
        "{}",
        exit.stdout
    );
}

#[test]
fn merging_one_raw_file_reproduces_the_run_report() {
    let server = Standin::start();
    let scratch = Scratch::new();
    let raw = scratch.path("raw.jsonl");
    let url = server.url();
    let run = load(&[
        "--url",
        &url,
        "--stream",
        "--rate",
        "256",
        "--arrival",
        "constant",
        "--requests",
        "120",
        "--warmup",
        "0.125",
        "--raw",
        path_str(&raw),
    ]);
    // Open loop with a warm-up (binary fractions: exactly 32 warm-up slots), so the window, the _co
    // figures and the warm-up count all go through the raw file too.
    assert_clean(&run, 120);
    assert_eq!(count(&run.report, "warmup"), 32);
    let merged = merge(&[&raw], &scratch);
    assert_eq!(merged.exit.code, Some(0), "{:?}", merged.exit);
    let single = run.report.as_object().expect("object");
    for (key, value) in single {
        assert_eq!(&merged.report[key], value, "{key}");
    }
    assert_eq!(count(&merged.report, "e2el_co_samples"), 120);
}

#[test]
fn merge_refuses_incompatible_and_cut_files() {
    let server = FakeServer::start(|_| fake::good_json(3));
    let scratch = Scratch::new();
    let url = server.url();
    let raw = |name: &str, stream: bool| {
        let path = scratch.path(name);
        let mut args = vec!["--url", &url, "--requests", "5", "--warmup", "0"];
        args.extend(["--raw", path_str(&path)]);
        if stream {
            args.push("--stream");
        }
        run_raw(&args);
        path
    };
    let (plain, streamed) = (raw("plain.jsonl", false), raw("stream.jsonl", true));
    let exit = run_raw(&["merge", path_str(&plain), path_str(&streamed)]);
    assert_eq!(exit.code, Some(2), "{exit:?}");
    assert!(
        exit.stderr.contains("not compatible") && exit.stderr.contains("stream"),
        "{exit:?}"
    );

    let text = std::fs::read_to_string(&plain).expect("raw");
    let cut = scratch.path("cut.jsonl");
    let kept: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&cut, kept.join("\n")).expect("write");
    let exit = run_raw(&["merge", path_str(&cut)]);
    assert_eq!(exit.code, Some(2), "{exit:?}");
    assert!(exit.stderr.contains("no trailer"), "{exit:?}");

    // The same file twice: merged (the counts double) but warned about, since the same work was sent twice.
    let twice = merge(&[&plain, &plain], &scratch);
    assert_eq!(count(&twice.report, "completed"), 10);
    assert!(twice.exit.stderr.contains("same seed"), "{:?}", twice.exit);
}

#[test]
fn disconnects_are_counted_as_abandoned_not_as_errors() {
    // 20 ms between content events: a hang-up drawn mid-stream has time to happen.
    let server = FakeServer::start(|_| fake::good_stream(Duration::from_millis(20)));
    let scratch = Scratch::new();
    let raw = scratch.path("raw.jsonl");
    let url = server.url();
    let run = load(&[
        "--url",
        &url,
        "--stream",
        "--disconnect",
        "0.6",
        "--seed",
        "5",
        "--requests",
        "40",
        "--concurrency",
        "4",
        "--warmup",
        "0",
        "--raw",
        path_str(&raw),
    ]);
    let r = &run.report;
    assert_eq!(run.exit.code, Some(0), "{:?}", run.exit);
    assert!(errors(r).is_empty(), "abandoned is not an error: {r:#}");
    let (completed, abandoned) = (count(r, "completed"), count(r, "abandoned"));
    assert_eq!(completed + abandoned, 40, "{r:#}");
    assert!(abandoned >= 5 && completed >= 5, "{r:#}");
    // Only whole answers reach the figures.
    assert_eq!(count(r, "total_output_tokens"), completed * TOKENS);
    assert_eq!(count(r, "itl_samples"), completed * (TOKENS - 1));
    let line = format!("{completed} completed, 0 failed, {abandoned} abandoned by the client");
    assert!(run.exit.stdout.contains(&line), "{}", run.exit.stdout);
    let lines = read_raw(&raw);
    let marked = lines.records.iter().filter(|l| l["a"] == true).count() as u64;
    assert_eq!(marked, abandoned);
    assert!(lines.records.iter().all(|l| l.get("f").is_none()));
    assert_eq!(count(&lines.trailer, "sent"), 40);
}

#[test]
fn disconnects_against_standin_match_its_metrics() {
    // Paced streams, so hang-ups land mid-stream; the server sees each at its next write.
    let server = Standin::start_with(&["--itl-ms", "25"]);
    let run = load_at(
        &server.url(),
        "--stream --disconnect 0.4 --seed 9 --requests 60 --concurrency 6 --warmup 0",
    );
    let r = &run.report;
    assert_eq!(run.exit.code, Some(0), "{:?}", run.exit);
    let (completed, abandoned) = (count(r, "completed"), count(r, "abandoned"));
    assert_eq!(
        (completed + abandoned, count(r, "failed")),
        (60, 0),
        "{r:#}"
    );
    assert!(abandoned > 0, "{r:#}");
    // The server notices the last hang-ups at its next write: wait until no generation runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = server.metrics();
        let running = metrics["vllm:num_requests_running{model_name=\"mock-gpt-model\"}"];
        if running == 0.0 || Instant::now() > deadline {
            break metrics;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let get = |series: &str| metrics.get(series).copied().unwrap_or(f64::NAN) as u64;
    // Every request reached the server once (this scrape's own response is not in its own numbers)…
    assert_eq!(
        get("standin_http_responses_total{class=\"2xx\"}"),
        60,
        "{metrics:?}"
    );
    // …and it finished the completed ones. A client that stalled past the server's last write after
    // deciding to hang up would make the server count one more: allowed, never fewer.
    let success =
        get("vllm:request_success_total{model_name=\"mock-gpt-model\",finished_reason=\"stop\"}");
    assert!(
        (completed..=completed + abandoned).contains(&success),
        "server finished {success}, client completed {completed}: {metrics:?}"
    );
    assert_eq!(
        get("standin_connections_open"),
        1,
        "only this scrape's: {metrics:?}"
    );
}

/// The stall fields of a report, for comparing two reports of one run.
fn stall_fields(report: &Value) -> Vec<Value> {
    [
        "client_stall_threshold_ms",
        "client_stalls",
        "client_stall_total_ms",
        "max_client_stall_ms",
        "max_client_stall_at_s",
    ]
    .map(|k| report[k].clone())
    .to_vec()
}

/// Stopping the whole harness for 300 ms, 0.8 s into a 2 s run, is what a core taken away for that
/// long looks like to it: the report says so, with when, and `merge` of its raw file says the same.
#[test]
fn a_stopped_harness_reports_the_stall() {
    let server = Standin::start();
    let scratch = Scratch::new();
    let (json, raw) = (scratch.path("report.json"), scratch.path("raw.jsonl"));
    let url = server.url();
    let args = [
        "--url",
        &url,
        "--quiet",
        "--workers",
        "2",
        "--concurrency",
        "4",
        "--duration",
        "2",
        "--warmup",
        "0",
        "--stall-ms",
        "50",
        "--json",
        path_str(&json),
        "--raw",
        path_str(&raw),
    ];
    let exit = run_paused(
        &args,
        Duration::from_millis(800),
        Duration::from_millis(300),
    );
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let text = std::fs::read_to_string(&json).expect("report");
    let r: Value = serde_json::from_str(&text).expect("JSON");
    check_report(&r);
    assert_eq!(number(&r, "client_stall_threshold_ms"), 50.0);
    let (n, longest) = (
        count(&r, "client_stalls"),
        number(&r, "max_client_stall_ms"),
    );
    assert!(n >= 1, "{r:#}");
    assert!((250.0..2_000.0).contains(&longest), "{r:#}");
    assert!(number(&r, "client_stall_total_ms") >= longest, "{r:#}");
    let at = number(&r, "max_client_stall_at_s");
    assert!((0.5..1.5).contains(&at), "due about 0.8 s in: {r:#}");
    assert!(
        exit.stdout.contains("client stalls  ") && exit.stdout.contains("longest"),
        "{exit:?}"
    );
    let merged = merge(&[&raw], &scratch);
    assert_eq!(merged.exit.code, Some(0), "{:?}", merged.exit);
    assert_eq!(stall_fields(&merged.report), stall_fields(&r));
}

/// `--stall-ms 0` starts no probe and says so; an undisturbed run sees no stall of a second.
#[test]
fn the_stall_probe_can_be_off_and_is_quiet_when_nothing_stalls() {
    let server = Standin::start();
    let off = load_at(&server.url(), "--requests 50 --concurrency 2 --stall-ms 0");
    assert_clean(&off, 50);
    assert_eq!(number(&off.report, "client_stall_threshold_ms"), 0.0);
    assert_eq!(count(&off.report, "client_stalls"), 0);
    assert!(off.exit.stdout.contains("not probed"), "{:?}", off.exit);
    let on = load_at(
        &server.url(),
        "--duration 0.5 --concurrency 2 --stall-ms 1000",
    );
    assert_eq!(on.exit.code, Some(0), "{:?}", on.exit);
    assert_eq!(number(&on.report, "client_stall_threshold_ms"), 1000.0);
    assert_eq!(count(&on.report, "client_stalls"), 0, "{:#}", on.report);
    assert!(on.exit.stdout.contains("none of 1000 ms"), "{:?}", on.exit);
}
