//! Per-key rate limits (`--rate-limit-rpm`, `--rate-limit-tpm`): the 429 and its headers, the
//! `x-ratelimit-*` headers on every `/v1` answer, one bucket per key, and recovery once the bucket refills.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{chat, chat_body, get, post, stream_body, Client, Response, Server, MODEL};

/// The six `x-ratelimit-*` headers, requests first.
const RATELIMIT_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

fn bearer(key: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {key}"))
}

/// A header that must be there.
fn header<'a>(resp: &'a Response, name: &str) -> &'a str {
    resp.header(name)
        .unwrap_or_else(|| panic!("no {name}: {}", resp.raw_head))
}

/// A header that must be a whole number.
fn number(resp: &Response, name: &str) -> u64 {
    header(resp, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {}", resp.raw_head))
}

/// Parses a reset value like `1s`, `1.2s`, `250ms` or `6m0s`.
fn reset(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        return Duration::from_millis(ms.parse().expect("ms"));
    }
    let mut total = 0.0;
    let mut rest = text;
    for (unit, seconds) in [('h', 3600.0), ('m', 60.0), ('s', 1.0)] {
        if let Some((value, after)) = rest.split_once(unit) {
            total += value.parse::<f64>().expect("reset number") * seconds;
            rest = after;
        }
    }
    assert!(rest.is_empty(), "bad reset {text:?}");
    Duration::from_secs_f64(total)
}

/// Asserts OpenAI's 429 envelope with `type` `kind` and returns the message.
fn assert_rate_limited(resp: &Response, kind: &str) -> String {
    assert_eq!(
        resp.status,
        429,
        "{} {}",
        resp.raw_head,
        String::from_utf8_lossy(&resp.body)
    );
    resp.assert_common_headers();
    let body = resp.json();
    let error = &body["error"];
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(error["param"], Value::Null, "{body}");
    let retry_after = number(resp, "retry-after");
    let retry_after_ms = number(resp, "retry-after-ms");
    assert!(retry_after >= 1, "{}", resp.raw_head);
    assert!(
        retry_after_ms <= retry_after * 1000 && retry_after_ms + 1000 > retry_after * 1000,
        "retry-after {retry_after} s vs {retry_after_ms} ms"
    );
    error["message"].as_str().expect("message").to_string()
}

/// Sends `count` chat requests on one connection and returns the last response.
fn burn(client: &mut Client, count: usize, headers: &[(&str, &str)]) -> Response {
    let mut last = None;
    for _ in 0..count {
        client.send(&chat(&chat_body("hi"), headers));
        last = Some(client.read_response());
    }
    last.expect("count > 0")
}

#[test]
fn requests_past_the_rpm_get_429_with_openai_headers() {
    let server = Server::start(&["--rate-limit-rpm", "3", "--rate-limit-tpm", "100000"]);
    let mut client = server.connect();
    for remaining in [2, 1, 0] {
        client.send(&chat(&chat_body("hi"), &[]));
        let resp = client.read_response();
        assert_eq!(resp.status, 200, "{}", resp.raw_head);
        assert_eq!(number(&resp, "x-ratelimit-limit-requests"), 3);
        assert_eq!(number(&resp, "x-ratelimit-remaining-requests"), remaining);
        assert_eq!(number(&resp, "x-ratelimit-limit-tokens"), 100_000);
    }
    client.send(&chat(&chat_body("hi"), &[]));
    let resp = client.read_response();
    let message = assert_rate_limited(&resp, "requests");
    assert!(
        message.starts_with(&format!(
            "Rate limit reached for {MODEL} on requests per min (RPM): Limit 3, Used 3, Requested 1. \
             Please try again in "
        )),
        "{message}"
    );
    // 3 per minute refill one every 20 s.
    let wait = reset(header(&resp, "x-ratelimit-reset-requests"));
    assert!(
        wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert_eq!(number(&resp, "retry-after"), 20);
    assert_eq!(number(&resp, "x-ratelimit-remaining-requests"), 0);
    for name in RATELIMIT_HEADERS {
        let count = resp
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count();
        assert_eq!(count, 1, "{name}: {}", resp.raw_head);
    }
    // The keep-alive connection survives a 429.
    client.send(&get("/health", &[]));
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn every_v1_answer_carries_the_ratelimit_headers() {
    let server = Server::start(&["--rate-limit-rpm", "1000", "--rate-limit-tpm", "100000"]);
    let requests = [
        get("/v1/models", &[]),
        get(&format!("/v1/models/{MODEL}"), &[]),
        chat(&chat_body("json"), &[]),
        chat(&stream_body("stream"), &[]),
        chat(r#"{"model": 1}"#, &[]),
        post("/v1/completions", br#"{"model":"m","prompt":"hi"}"#, &[]),
        post(
            "/v1/completions",
            br#"{"model":"m","prompt":"hi","stream":true}"#,
            &[],
        ),
        post("/v1/embeddings", br#"{"model":"m","input":"hi"}"#, &[]),
        chat(&chat_body("fail"), &[("x-standin-fail", "500")]),
    ];
    let mut client = server.connect();
    for request in &requests {
        client.send(request);
        let resp = client.read_response();
        for name in RATELIMIT_HEADERS {
            assert!(
                resp.header(name).is_some(),
                "{name} missing on {} answer: {}",
                resp.status,
                resp.raw_head
            );
        }
        reset(header(&resp, "x-ratelimit-reset-tokens"));
    }
    // Listing models takes nothing; the 7 POSTs took one request each.
    client.send(&get("/v1/models", &[]));
    let resp = client.read_response();
    assert_eq!(number(&resp, "x-ratelimit-remaining-requests"), 1000 - 7);
    // Outside /v1 nothing is limited or reported.
    let health = server.send(&get("/health", &[]));
    assert!(health.header("x-ratelimit-limit-requests").is_none());
}

#[test]
fn only_the_limits_that_are_on_are_reported() {
    let server = Server::start(&["--rate-limit-tpm", "5000"]);
    let resp = server.send(&chat(&chat_body("hi"), &[]));
    assert_eq!(resp.status, 200);
    assert_eq!(number(&resp, "x-ratelimit-limit-tokens"), 5000);
    assert!(resp.header("x-ratelimit-limit-requests").is_none());
    let off = Server::start(&[]);
    let resp = off.send(&chat(&chat_body("hi"), &[]));
    for name in RATELIMIT_HEADERS {
        assert!(resp.header(name).is_none(), "{name}: {}", resp.raw_head);
    }
}

#[test]
fn each_key_has_its_own_bucket_and_keys_stay_secret() {
    const KEY_A: &str = "sk-limit-A-5a1e";
    const KEY_B: &str = "sk-limit-B-77c2";
    let server = Server::builder()
        .with_access_log()
        .args(&[
            "--api-key",
            KEY_A,
            "--api-key",
            KEY_B,
            "--rate-limit-rpm",
            "2",
        ])
        .start();
    let (name, a) = bearer(KEY_A);
    let (_, b) = bearer(KEY_B);
    let mut client = server.connect();
    let last = burn(&mut client, 2, &[(name, &a)]);
    assert_eq!(last.status, 200);
    let refused = burn(&mut client, 1, &[(name, &a)]);
    let message = assert_rate_limited(&refused, "requests");
    // Wrong keys are refused before the limits and take nothing from anyone.
    client.send(&chat(&chat_body("hi"), &[(name, "Bearer sk-wrong")]));
    assert_eq!(client.read_response().status, 401);
    let other = burn(&mut client, 1, &[(name, &b)]);
    assert_eq!(other.status, 200);
    assert_eq!(number(&other, "x-ratelimit-remaining-requests"), 1);
    let log = server.wait_for_stderr(Duration::from_secs(1), |log| log.contains("status=429"));
    for text in [
        &message,
        &String::from_utf8_lossy(&refused.body).into_owned(),
        &refused.raw_head,
        &log,
    ] {
        assert!(!text.contains("sk-limit"), "a key leaked: {text}");
    }
}

#[test]
fn open_api_shares_one_anonymous_bucket() {
    let server = Server::start(&["--rate-limit-rpm", "1"]);
    let first = server.send(&chat(&chat_body("hi"), &[("Authorization", "Bearer one")]));
    assert_eq!(first.status, 200);
    let second = server.send(&chat(&chat_body("hi"), &[("Authorization", "Bearer two")]));
    assert_rate_limited(&second, "requests");
}

#[test]
fn bucket_refills_after_the_reset_time() {
    // 60 per minute: a burst of 60, then one more every second.
    let server = Server::start(&["--rate-limit-rpm", "60"]);
    let mut client = server.connect();
    let last = burn(&mut client, 60, &[]);
    assert_eq!(last.status, 200);
    let refused = burn(&mut client, 1, &[]);
    assert_rate_limited(&refused, "requests");
    assert_eq!(number(&refused, "retry-after"), 1);
    let wait = number(&refused, "retry-after-ms");
    assert!((1..=1000).contains(&wait), "{wait}");
    let message = String::from(refused.json()["error"]["message"].as_str().unwrap());
    assert!(message.contains("Please try again in "), "{message}");
    let started = Instant::now();
    thread::sleep(Duration::from_millis(wait));
    let recovered = burn(&mut client, 1, &[]);
    assert_eq!(
        recovered.status,
        200,
        "after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&recovered.body)
    );
    assert_eq!(number(&recovered, "x-ratelimit-remaining-requests"), 0);
    // And only that one: the next is refused again.
    assert_rate_limited(&burn(&mut client, 1, &[]), "requests");
}

#[test]
fn tokens_past_the_tpm_get_429_of_type_tokens() {
    let server = Server::start(&["--rate-limit-tpm", "100"]);
    let body = |max_tokens: u64| {
        json!({"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
    };
    let first = server.send(&chat(&body(60), &[]));
    assert_eq!(first.status, 200);
    // The estimate is the body's words (one: compact JSON has no spaces) plus max_tokens.
    assert_eq!(number(&first, "x-ratelimit-remaining-tokens"), 39);
    let refused = server.send(&chat(&body(60), &[]));
    let message = assert_rate_limited(&refused, "tokens");
    assert!(
        message.starts_with(&format!(
            "Rate limit reached for {MODEL} on tokens per min (TPM): Limit 100, Used 61, Requested 61. \
             Please try again in 13."
        )),
        "{message}"
    );
    // 22 tokens short at 100 per minute: 13.2 s.
    assert_eq!(number(&refused, "retry-after"), 14);
    let too_large = server.send(&chat(&body(1000), &[]));
    let message = assert_rate_limited(&too_large, "tokens");
    assert!(message.starts_with("Request too large for"), "{message}");
}

#[test]
fn injected_429_reports_the_real_limits_once() {
    let server = Server::start(&["--rate-limit-rpm", "50"]);
    let resp = server.send(&chat(&chat_body("hi"), &[("x-standin-fail", "429")]));
    assert_rate_limited(&resp, "requests");
    assert_eq!(number(&resp, "x-ratelimit-limit-requests"), 50);
    assert_eq!(number(&resp, "x-ratelimit-remaining-requests"), 49);
    let limits: Vec<_> = resp
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-ratelimit-limit-requests"))
        .collect();
    assert_eq!(limits.len(), 1, "{}", resp.raw_head);
}

#[test]
fn rate_limits_come_from_env_and_config_file() {
    let server = Server::builder().env("STANDIN_RATE_LIMIT_RPM", "7").start();
    let resp = server.send(&chat(&chat_body("hi"), &[]));
    assert_eq!(number(&resp, "x-ratelimit-limit-requests"), 7);
    let file = crate::support::TempFile::new("limits.json", r#"{"rate_limit_tpm": 4321}"#);
    let server = Server::start(&["--config", file.path()]);
    let resp = server.send(&chat(&chat_body("hi"), &[]));
    assert_eq!(number(&resp, "x-ratelimit-limit-tokens"), 4321);
}
