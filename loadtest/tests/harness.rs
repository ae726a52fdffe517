//! Integration tests of `standin-load`: the real binary, run with `--quiet --json FILE`, its report parsed
//! and checked. Against scripted fake servers (`support::fake`): every failure kind is counted under its
//! own key and kept out of the latencies, a well-formed stream is measured right, and chunked framing
//! split anywhere still parses. Against the real `standin` server: closed and open loop, streaming,
//! `--compare`, `--prompt-file`, `--sources`, `--svg`, and usage errors.
//!
//! One test binary (STYLE.md, Testing): helpers live in `tests/support/`, not in `tests/*.rs`.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use serde_json::{json, Value};

use support::fake::{self, FakeServer, Step, TOKENS};
use support::{assert_clean, count, errors, load, load_at, number, path_str, run_raw};
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
        if value.is_number() && key != "target" {
            assert!(ratios.contains_key(key), "no ratio for {key}");
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
    let cases: [(&[&str], &str); 7] = [
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
}
