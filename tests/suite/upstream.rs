//! The `upstream` model kind: a gateway standin relaying to other standins. Chat (whole and streamed),
//! legacy completions and embeddings relayed; fallback on connect errors, 5xx and 429 but never after bytes
//! went out; 502/504 when every target fails; 4xx passed through; mid-stream failures as an SSE error event;
//! the upstream key sent only to the upstream; configuration errors; `list_models`; the cool-down.

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{chat, echo, get, post, run, sse_events, Client, Response, Server};

/// Generous read timeout for anything that waits on a relay.
const SLOW: Duration = Duration::from_secs(30);

/// `http://ADDR` of a running server.
fn url(server: &Server) -> String {
    format!("http://{}", server.addr)
}

/// A port nothing listens on: bound, read and released.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A gateway whose only model is `declaration` (an upstream model named `gw`).
fn gateway(declaration: Value) -> Server {
    Server::start(&["--models", &json!([declaration]).to_string()])
}

/// `gw` relaying to one target as upstream model `inner`.
fn simple_gateway(upstream: &Server) -> Server {
    gateway(
        json!({"name": "gw", "kind": "upstream", "url": url(upstream), "upstream_model": "inner"}),
    )
}

fn chat_to(model: &str, text: &str, stream: bool) -> String {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
        .to_string()
}

/// Sends `request` with a long read timeout.
fn send_slow(server: &Server, request: &[u8]) -> Response {
    let mut client = Client::connect(server.addr);
    client.set_read_timeout(SLOW);
    client.send(request);
    client.read_response()
}

/// The non-`[DONE]` events of a stream, parsed.
fn chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}

/// Every `standin_http_responses_total` class summed: the responses `server` finished before this scrape
/// (the scrape's own response is counted only after it is rendered).
fn responses(server: &Server) -> u64 {
    classes(server).iter().map(|(_, n)| n).sum()
}

/// `standin_http_responses_total` by class, e.g. `("5xx", 1)`.
fn classes(server: &Server) -> Vec<(String, u64)> {
    let text = server.send(&get("/metrics", &[])).text().to_string();
    let found: Vec<(String, u64)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("standin_http_responses_total{class=\"")?;
            let (class, value) = rest.split_once("\"} ")?;
            Some((class.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    assert_eq!(found.len(), 6, "response counters missing:\n{text}");
    found
}

fn class(server: &Server, class: &str) -> u64 {
    classes(server)
        .into_iter()
        .find(|(c, _)| c == class)
        .map_or(0, |(_, n)| n)
}

/// Asserts an OpenAI error envelope with `status` and `code`, whatever its `type` (an upstream's own type
/// is kept, e.g. `requests` on a 429).
fn assert_envelope(resp: &Response, status: u16, code: &str) -> Value {
    assert_eq!(
        resp.status,
        status,
        "{} {}",
        resp.raw_head,
        String::from_utf8_lossy(&resp.body)
    );
    resp.assert_common_headers();
    let body = resp.json();
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    let error = &body["error"];
    let mut keys: Vec<&str> = error
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(error["code"], code, "{body}");
    error.clone()
}

/// Asserts a stream that broke mid-way: at least one content chunk, then the `upstream_error` event as
/// the last event, no `[DONE]`, and a properly ended chunked body (checked by `read_response`).
fn assert_broken_stream(resp: &Response) {
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let text = resp.text();
    let events = sse_events(text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let parsed = chunks(&events);
    let (last, before) = parsed
        .split_last()
        .unwrap_or_else(|| panic!("no events: {text}"));
    assert_eq!(last["error"]["code"], "upstream_error", "{text}");
    assert_eq!(last["error"]["type"], "server_error", "{text}");
    assert!(
        before
            .iter()
            .any(|c| c["choices"][0]["delta"]["content"].is_string()),
        "no content before the error: {text}"
    );
    assert!(before.iter().all(|c| c.get("error").is_none()), "{text}");
}

#[test]
fn chat_is_relayed_whole_and_streamed() {
    let upstream = Server::start(&[]);
    let gw = simple_gateway(&upstream);

    let reply = gw
        .send(&chat(&chat_to("gw", "hello there", false), &[]))
        .assert_ok_json();
    assert_eq!(reply["object"], "chat.completion", "{reply}");
    assert_eq!(reply["model"], "inner", "{reply}");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        echo("hello there"),
        "{reply}"
    );
    assert!(
        reply["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{reply}"
    );

    let resp = gw.send(&chat(&chat_to("gw", "stream me", true), &[]));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{}",
        resp.raw_head
    );
    let events = sse_events(resp.text());
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let parsed = chunks(&events);
    assert!(parsed.iter().all(|c| c["model"] == "inner"), "{events:?}");
    assert!(
        parsed
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{events:?}"
    );
    let joined: String = parsed
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, echo("stream me"));
    assert!(
        parsed
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"),
        "{events:?}"
    );
    assert!(
        parsed
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "{events:?}"
    );
}

#[test]
fn include_usage_sends_a_usage_chunk_last_then_done() {
    let upstream = Server::start(&[]);
    let gw = simple_gateway(&upstream);
    let body = json!({"model": "gw", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "count me"}]});
    let resp = gw.send(&chat(&body.to_string(), &[]));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let events = sse_events(resp.text());
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let parsed = chunks(&events);
    let (last, before) = parsed.split_last().unwrap();
    assert_eq!(
        last["choices"],
        json!([]),
        "usage chunk has no choices: {last}"
    );
    let usage = &last["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap_or(0);
    let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
    assert!(completion > 0 && prompt > 0, "{last}");
    assert_eq!(usage["total_tokens"], prompt + completion, "{last}");
    assert!(before.iter().all(|c| c["usage"].is_null()), "{events:?}");
    let joined: String = before
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, echo("count me"));
}

#[test]
fn legacy_completions_and_embeddings_are_relayed() {
    let upstream = Server::start(&[]);
    let gw = simple_gateway(&upstream);

    let legacy =
        |model: &str| json!({"model": model, "prompt": "say this", "max_tokens": 20}).to_string();
    let direct = upstream
        .send(&post("/v1/completions", legacy("inner").as_bytes(), &[]))
        .assert_ok_json();
    let relayed = gw
        .send(&post("/v1/completions", legacy("gw").as_bytes(), &[]))
        .assert_ok_json();
    assert_eq!(relayed["object"], "text_completion", "{relayed}");
    assert_eq!(relayed["model"], "inner", "{relayed}");
    assert!(
        relayed["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{relayed}"
    );
    assert_eq!(
        relayed["choices"][0]["text"], direct["choices"][0]["text"],
        "{relayed}"
    );
    assert_eq!(relayed["usage"], direct["usage"], "{relayed}");

    // Streamed legacy completions too.
    let streamed =
        json!({"model": "gw", "prompt": "say this", "max_tokens": 20, "stream": true}).to_string();
    let resp = gw.send(&post("/v1/completions", streamed.as_bytes(), &[]));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let events = sse_events(resp.text());
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let joined: String = chunks(&events)
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, direct["choices"][0]["text"].as_str().unwrap());

    let embed = |model: &str| json!({"model": model, "input": ["one", "two words"]}).to_string();
    let direct = upstream
        .send(&post("/v1/embeddings", embed("inner").as_bytes(), &[]))
        .assert_ok_json();
    let relayed = gw
        .send(&post("/v1/embeddings", embed("gw").as_bytes(), &[]))
        .assert_ok_json();
    assert_eq!(relayed["object"], "list", "{relayed}");
    assert_eq!(relayed["model"], "inner", "{relayed}");
    assert_eq!(
        relayed["data"].as_array().map(Vec::len),
        Some(2),
        "{relayed}"
    );
    assert_eq!(relayed["data"], direct["data"]);
}

#[test]
fn an_unreachable_first_target_falls_back_to_the_next() {
    let live = Server::start(&[]);
    let gw = gateway(json!({"name": "gw", "kind": "upstream", "upstreams": [
        {"url": dead_url(), "model": "one"},
        {"url": url(&live), "model": "two"},
    ]}));
    let reply = send_slow(&gw, &chat(&chat_to("gw", "hi", false), &[])).assert_ok_json();
    assert_eq!(reply["model"], "two", "{reply}");
    assert_eq!(reply["choices"][0]["message"]["content"], echo("hi"));
}

#[test]
fn a_5xx_target_falls_back_to_the_next() {
    let failing = Server::start(&["--fail-rate", "500=1"]);
    let healthy = Server::start(&[]);
    let gw = gateway(json!({"name": "gw", "kind": "upstream", "upstreams": [
        {"url": url(&failing), "model": "one"},
        {"url": url(&healthy), "model": "two"},
    ]}));
    for stream in [false, true] {
        let resp = send_slow(&gw, &chat(&chat_to("gw", "hi", stream), &[]));
        assert_eq!(
            resp.status,
            200,
            "{} {}",
            resp.raw_head,
            String::from_utf8_lossy(&resp.body)
        );
        if stream {
            let events = sse_events(resp.text());
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            assert!(
                chunks(&events).iter().all(|c| c["model"] == "two"),
                "{events:?}"
            );
        } else {
            assert_eq!(resp.json()["model"], "two");
        }
    }
    // The failing target really was asked (once: it cools down after the first failure).
    assert_eq!(class(&failing, "5xx"), 1);
}

#[test]
fn rate_limits_on_every_target_are_a_429_envelope() {
    let a = Server::start(&["--fail-rate", "429=1"]);
    let b = Server::start(&["--fail-rate", "429=1"]);
    let gw = gateway(json!({"name": "gw", "kind": "upstream", "upstreams": [
        {"url": url(&a)}, {"url": url(&b)},
    ]}));
    let resp = send_slow(&gw, &chat(&chat_to("gw", "hi", false), &[]));
    let error = assert_envelope(&resp, 429, "rate_limit_exceeded");
    assert!(
        error["message"].as_str().unwrap().contains("Rate limit"),
        "{error}"
    );
    // The last upstream's retry headers reach the client.
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.header("x-ratelimit-remaining-requests"), Some("0"));
    // Both targets were tried: a 429 moves on to the next.
    assert_eq!((class(&a, "4xx"), class(&b, "4xx")), (1, 1));
}

#[test]
fn every_target_failing_with_5xx_is_the_last_status_re_shaped() {
    let a = Server::start(&["--fail-rate", "500=1"]);
    let b = Server::start(&["--fail-rate", "503=1"]);
    let gw = gateway(json!({"name": "gw", "kind": "upstream", "upstreams": [
        {"url": url(&a)}, {"url": url(&b)},
    ]}));
    let resp = send_slow(&gw, &chat(&chat_to("gw", "hi", false), &[]));
    let error = resp.assert_error(503, Some("service_unavailable"));
    assert!(
        error["message"].as_str().unwrap().contains("overloaded"),
        "{error}"
    );
    // One request asks each target once, in order.
    assert_eq!((class(&a, "5xx"), class(&b, "5xx")), (1, 1));
}

#[test]
fn every_target_unreachable_is_a_502() {
    let gw = gateway(json!({"name": "gw", "kind": "upstream", "upstreams": [
        {"url": dead_url()}, {"url": dead_url()},
    ]}));
    for stream in [false, true] {
        let resp = send_slow(&gw, &chat(&chat_to("gw", "hi", stream), &[]));
        let error = resp.assert_error(502, Some("upstream_error"));
        assert_eq!(error["type"], "server_error");
    }
    gw.assert_alive();
}

#[test]
fn a_stalling_upstream_is_a_504_after_the_first_byte_timeout() {
    let stalling = Server::start(&["--fail-rate", "stall=1"]);
    let gw = gateway(
        json!({"name": "gw", "kind": "upstream", "url": url(&stalling),
                            "first_byte_timeout_ms": 300}),
    );
    for stream in [false, true] {
        let started = Instant::now();
        let resp = send_slow(&gw, &chat(&chat_to("gw", "hi", stream), &[]));
        assert_eq!(
            resp.status,
            504,
            "{} {}",
            resp.raw_head,
            String::from_utf8_lossy(&resp.body)
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_stream_cut_upstream_becomes_an_error_event_without_done() {
    let cutting = Server::start(&["--fail-rate", "stream-cut:2=1"]);
    let gw = simple_gateway(&cutting);
    let resp = send_slow(&gw, &chat(&chat_to("gw", "a b c d e f g h", true), &[]));
    assert_broken_stream(&resp);
    gw.assert_alive();
}

#[test]
fn a_stream_stall_upstream_becomes_an_error_event_after_the_idle_timeout() {
    let stalling = Server::start(&["--fail-rate", "stream-stall=1"]);
    let gw = gateway(
        json!({"name": "gw", "kind": "upstream", "url": url(&stalling),
                            "upstream_model": "inner", "idle_timeout_ms": 300}),
    );
    let started = Instant::now();
    let resp = send_slow(&gw, &chat(&chat_to("gw", "a b c d e f g h", true), &[]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_broken_stream(&resp);
}

#[test]
fn no_fallback_once_bytes_reached_the_client() {
    let cutting = Server::start(&["--fail-rate", "stream-cut:2=1"]);
    let healthy = Server::start(&[]);
    let gw = gateway(json!({"name": "gw", "kind": "upstream", "upstreams": [
        {"url": url(&cutting)}, {"url": url(&healthy)},
    ]}));
    let resp = send_slow(&gw, &chat(&chat_to("gw", "a b c d e f g h", true), &[]));
    assert_broken_stream(&resp);
    assert_eq!(
        responses(&healthy),
        0,
        "the second target was asked after bytes went out"
    );
}

#[test]
fn a_4xx_is_passed_through_without_fallback() {
    let strict = Server::start(&["--strict-models"]);
    let healthy = Server::start(&[]);
    let gw = gateway(
        json!({"name": "gw", "kind": "upstream", "upstream_model": "nope", "upstreams": [
            {"url": url(&strict)}, {"url": url(&healthy)},
        ]}),
    );
    for stream in [false, true] {
        let resp = send_slow(&gw, &chat(&chat_to("gw", "hi", stream), &[]));
        let error = resp.assert_error(404, Some("model_not_found"));
        assert!(
            error["message"].as_str().unwrap().contains("nope"),
            "{error}"
        );
        assert_eq!(error["param"], "model", "{error}");
    }
    assert_eq!(class(&strict, "4xx"), 2);
    assert_eq!(responses(&healthy), 0, "a 4xx must not fall back");
}

#[test]
fn the_upstream_key_comes_from_the_environment() {
    let upstream = Server::start(&["--api-key", "sekret"]);
    let declaration =
        json!([{"name": "gw", "kind": "upstream", "url": url(&upstream), "api_key_env": "UP_KEY"}])
            .to_string();
    let gw = Server::builder()
        .args(&["--models", &declaration])
        .env("UP_KEY", "sekret")
        .with_access_log()
        .start();
    let resp = gw.send(&chat(&chat_to("gw", "hi", false), &[]));
    assert!(!resp.text().contains("sekret"));
    assert_eq!(
        resp.assert_ok_json()["choices"][0]["message"]["content"],
        echo("hi")
    );
    let resp = gw.send(&chat(&chat_to("gw", "hi", true), &[]));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert!(!resp.text().contains("sekret"));
    let embed = json!({"model": "gw", "input": "x"}).to_string();
    let resp = gw.send(&post("/v1/embeddings", embed.as_bytes(), &[]));
    resp.assert_ok_json();
    assert!(!resp.text().contains("sekret"));
    let log = gw.wait_for_stderr(Duration::from_secs(10), |text| {
        text.matches("path=/v1/").count() >= 3
    });
    assert!(
        !log.contains("sekret"),
        "key in the gateway's stderr:\n{log}"
    );

    // A wrong key: the upstream's 401 reaches the client re-shaped, and the key is not in it.
    let gw = Server::builder()
        .args(&["--models", &declaration])
        .env("UP_KEY", "wrong-key")
        .with_access_log()
        .start();
    let resp = gw.send(&chat(&chat_to("gw", "hi", false), &[]));
    resp.assert_error(401, Some("invalid_api_key"));
    assert!(!resp.text().contains("wrong-key"), "{}", resp.text());
    let log = gw.wait_for_stderr(Duration::from_secs(10), |text| text.contains("status=401"));
    assert!(
        !log.contains("wrong-key"),
        "key in the gateway's stderr:\n{log}"
    );
}

#[test]
fn the_clients_key_is_checked_by_the_gateway_and_never_forwarded() {
    let upstream = Server::start(&["--api-key", "sekret"]);
    let declaration =
        json!([{"name": "gw", "kind": "upstream", "url": url(&upstream), "api_key_env": "UP_KEY"}])
            .to_string();
    let gw = Server::builder()
        .args(&["--models", &declaration, "--api-key", "client-key"])
        .env("UP_KEY", "sekret")
        .start();
    let auth = [("authorization", "Bearer client-key")];
    let resp = gw.send(&chat(&chat_to("gw", "hi", false), &auth));
    assert_eq!(
        resp.assert_ok_json()["choices"][0]["message"]["content"],
        echo("hi")
    );
    // The gateway's own key check still applies: the upstream key is not a client key.
    let resp = gw.send(&chat(
        &chat_to("gw", "hi", false),
        &[("authorization", "Bearer sekret")],
    ));
    resp.assert_error(401, Some("invalid_api_key"));
    gw.send(&chat(&chat_to("gw", "hi", false), &[]))
        .assert_error(401, Some("invalid_api_key"));
    assert_eq!(
        class(&upstream, "2xx"),
        1,
        "only the authorised request reached the upstream"
    );

    // Without `api_key_env` nothing is sent, even when the client's key would open the upstream.
    let shared = Server::start(&["--api-key", "client-key"]);
    let declaration = json!([{"name": "gw", "kind": "upstream", "url": url(&shared)}]).to_string();
    let gw = Server::start(&["--models", &declaration, "--api-key", "client-key"]);
    let resp = gw.send(&chat(&chat_to("gw", "hi", false), &auth));
    resp.assert_error(401, Some("invalid_api_key"));
}

#[test]
fn bad_upstream_declarations_stop_the_server() {
    for (declaration, says) in [
        (
            json!({"name": "gw", "kind": "upstream"}),
            "`url` or `upstreams`",
        ),
        (
            json!({"name": "gw", "kind": "upstream", "upstreams": [{"model": "x"}]}),
            "`url`",
        ),
        (
            json!({"name": "gw", "kind": "upstream", "url": "http://127.0.0.1:9",
                   "api_key_env": "STANDIN_TEST_SURELY_UNSET_KEY"}),
            "STANDIN_TEST_SURELY_UNSET_KEY",
        ),
        (
            json!({"name": "gw", "kind": "upstream", "url": "https://127.0.0.1:9/v1"}),
            "https",
        ),
        (json!({"name": "gw", "url": "http://127.0.0.1:9"}), "kind"),
    ] {
        let models = json!([declaration]).to_string();
        let out = run(&["--listen", "127.0.0.1:0", "--models", &models], &[]);
        assert_eq!(out.code, Some(2), "{models}: {out:?}");
        assert!(out.stderr.contains(says), "{models}: {}", out.stderr);
    }
    // An empty variable is as good as none.
    let models = json!([{"name": "gw", "kind": "upstream", "url": "http://127.0.0.1:9",
                         "api_key_env": "UP_KEY"}])
    .to_string();
    let out = run(
        &["--listen", "127.0.0.1:0", "--models", &models],
        &[("UP_KEY", "")],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("UP_KEY"), "{}", out.stderr);
}

#[test]
fn list_models_merges_the_upstreams_ids_and_routes_them() {
    let upstream = Server::start(&["--models", "a,b", "--strict-models"]);
    let gw = gateway(
        json!({"name": "gw", "kind": "upstream", "url": url(&upstream),
                            "upstream_model": "a", "list_models": true}),
    );
    let list = send_slow(&gw, &get("/v1/models", &[])).assert_ok_json();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gw", "a", "b"], "{list}");
    for model in ["b", "a"] {
        let reply = send_slow(&gw, &chat(&chat_to(model, "hi", false), &[])).assert_ok_json();
        assert_eq!(reply["model"], model, "{reply}");
        assert_eq!(reply["choices"][0]["message"]["content"], echo("hi"));
    }
    // The gateway's own name still maps to `upstream_model`.
    let reply = send_slow(&gw, &chat(&chat_to("gw", "hi", false), &[])).assert_ok_json();
    assert_eq!(reply["model"], "a", "{reply}");
    send_slow(&gw, &get("/v1/models/b", &[])).assert_ok_json();
}

#[test]
fn a_failed_target_is_skipped_during_its_cool_down() {
    let failing = Server::start(&["--fail-rate", "500=1"]);
    let healthy = Server::start(&[]);
    let gw = gateway(
        json!({"name": "gw", "kind": "upstream", "cooldown_ms": 60_000, "upstreams": [
            {"url": url(&failing), "model": "one"},
            {"url": url(&healthy), "model": "two"},
        ]}),
    );
    for _ in 0..3 {
        let reply = send_slow(&gw, &chat(&chat_to("gw", "hi", false), &[])).assert_ok_json();
        assert_eq!(reply["model"], "two", "{reply}");
    }
    assert_eq!(
        class(&failing, "5xx"),
        1,
        "a cooling target was asked again"
    );
    assert_eq!(class(&healthy, "2xx"), 3);
}

#[test]
fn a_target_is_tried_again_after_its_cool_down() {
    let failing = Server::start(&["--fail-rate", "500=1"]);
    let healthy = Server::start(&[]);
    let gw = gateway(
        json!({"name": "gw", "kind": "upstream", "cooldown_ms": 200, "upstreams": [
            {"url": url(&failing)}, {"url": url(&healthy)},
        ]}),
    );
    send_slow(&gw, &chat(&chat_to("gw", "hi", false), &[])).assert_ok_json();
    thread::sleep(Duration::from_millis(800));
    send_slow(&gw, &chat(&chat_to("gw", "hi", false), &[])).assert_ok_json();
    assert_eq!(
        class(&failing, "5xx"),
        2,
        "the target stayed skipped after its cool-down"
    );
}

#[test]
fn a_client_leaving_mid_stream_ends_the_upstream_request() {
    // 13 tokens 300 ms apart: about 4 s of stream if nobody hangs up.
    let upstream = Server::start(&["--itl-ms", "300"]);
    let gw = simple_gateway(&upstream);
    let running = |server: &Server| {
        let text = server.send(&get("/metrics", &[])).text().to_string();
        text.lines()
            .find(|l| l.starts_with("vllm:num_requests_running{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    let mut client = std::net::TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(&mut client, &chat(&chat_to("gw", "hi", true), &[])).unwrap();
    client.set_read_timeout(Some(SLOW)).unwrap();
    let mut first = [0u8; 4096];
    let n = std::io::Read::read(&mut client, &mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(running(&upstream), 1);
    let left = Instant::now();
    drop(client);
    // The gateway drops its upstream connection; the upstream's next write fails and its generation ends,
    // long before the 4 s the stream would have lasted.
    while running(&upstream) != 0 {
        assert!(
            left.elapsed() < Duration::from_secs(3),
            "upstream still generating"
        );
        thread::sleep(Duration::from_millis(20));
    }
    gw.assert_alive();
}
