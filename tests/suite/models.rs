//! Configured models: kinds, aliases, the output-length header, seeds, and the `max_concurrent` queue.

use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{chat, get, post, sse_events, Server};

const MODELS: &str =
    r#"[{"name":"syn","kind":"synthetic","output_tokens":"5-9","aliases":["gpt-4o"]},"plain"]"#;

fn ask(server: &Server, body: Value, headers: &[(&str, &str)]) -> Value {
    server
        .send(&chat(&body.to_string(), headers))
        .assert_ok_json()
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[test]
fn aliases_resolve_and_are_listed() {
    let server = Server::start(&["--models", MODELS, "--alias", "gpt-3.5-turbo=plain"]);
    let list = server.send(&get("/v1/models", &[])).assert_ok_json();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["syn", "plain", "gpt-4o", "gpt-3.5-turbo"]);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let reply = ask(&server, body, &[]);
    assert_eq!(reply["model"], "syn");
    let content = reply["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.starts_with("As a mock"), "{content}");
    assert!((5..=9).contains(&words(content)), "{content}");
    assert_eq!(reply["usage"]["completion_tokens"], words(content));
    let body = json!({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]});
    let reply = ask(&server, body, &[]);
    assert_eq!(reply["model"], "plain");
    assert!(reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("As a mock"));
}

#[test]
fn synthetic_output_is_reproducible_by_seed_and_streams_the_same_text() {
    let server = Server::start(&["--kind", "synthetic", "--output-tokens", "40"]);
    let body = |seed: i64, stream: bool| {
        json!({"model": "m", "seed": seed, "stream": stream,
               "messages": [{"role": "user", "content": "tell me"}]})
    };
    let text = |reply: &Value| {
        reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = text(&ask(&server, body(7, false), &[]));
    assert_eq!(words(&a), 40);
    assert_eq!(a, text(&ask(&server, body(7, false), &[])));
    assert_ne!(a, text(&ask(&server, body(8, false), &[])));
    let streamed = server.send(&chat(&body(7, true).to_string(), &[]));
    let joined: String = sse_events(streamed.text())
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            let chunk: Value = serde_json::from_str(e).unwrap();
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(joined, a);
}

#[test]
fn output_tokens_header_sets_the_length_for_chat_and_legacy() {
    let server = Server::start(&[]);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let reply = ask(&server, body.clone(), &[("x-standin-output-tokens", "57")]);
    assert_eq!(reply["usage"]["completion_tokens"], 57);
    assert_eq!(
        words(reply["choices"][0]["message"]["content"].as_str().unwrap()),
        57
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    // max_tokens still cuts it.
    let mut limited = body.clone();
    limited["max_tokens"] = json!(10);
    let reply = ask(&server, limited, &[("x-standin-output-tokens", "57")]);
    assert_eq!(reply["usage"]["completion_tokens"], 10);
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
    let legacy = json!({"model": "m", "prompt": "x", "max_tokens": 100}).to_string();
    let reply = server
        .send(&post(
            "/v1/completions",
            legacy.as_bytes(),
            &[("x-standin-output-tokens", "33")],
        ))
        .assert_ok_json();
    assert_eq!(reply["usage"]["completion_tokens"], 33);
    // 20,000 tokens are fine alone, too much over 128 choices.
    let mut many = body.clone();
    many["n"] = json!(128);
    let resp = server.send(&chat(
        &many.to_string(),
        &[("x-standin-output-tokens", "20000")],
    ));
    let error = resp.assert_error(400, Some("invalid_value"));
    assert!(
        error["message"].as_str().unwrap().contains("choices"),
        "{error}"
    );
    for bad in ["abc", "-1", "99999999999", "100001"] {
        let resp = server.send(&chat(
            &body.to_string(),
            &[("x-standin-output-tokens", bad)],
        ));
        let error = resp.assert_error(400, Some("invalid_value"));
        assert!(error["message"]
            .as_str()
            .unwrap()
            .contains("x-standin-output-tokens"));
    }
}

#[test]
fn max_tokens_rule_ends_on_the_limit() {
    let server = Server::start(&["--kind", "synthetic"]);
    let body =
        json!({"model": "m", "max_tokens": 12, "messages": [{"role": "user", "content": "hi"}]});
    let reply = ask(&server, body, &[]);
    assert_eq!(reply["usage"]["completion_tokens"], 12);
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
}

#[test]
fn a_full_queue_answers_503_and_a_waiting_request_is_served_later() {
    let server = Server::start(&["--max-concurrent", "1", "--max-waiting", "1"]);
    let slow = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let send_slow = |server_addr| {
        let slow = slow.clone();
        thread::spawn(move || {
            let mut client = crate::support::Client::connect(server_addr);
            client.send(&chat(&slow, &[("x-standin-ttft-ms", "1500")]));
            client.read_response().status
        })
    };
    let first = send_slow(server.addr);
    let metrics = |server: &Server| server.send(&get("/metrics", &[])).text().to_string();
    wait_for(|| {
        metrics(&server).contains("vllm:num_requests_running{model_name=\"mock-gpt-model\"} 1")
    });
    let second = send_slow(server.addr);
    wait_for(|| {
        metrics(&server).contains("vllm:num_requests_waiting{model_name=\"mock-gpt-model\"} 1")
    });
    // One generating, one waiting: the third is refused at once.
    let resp = server.send(&chat(&slow, &[]));
    let error = resp.assert_error(503, Some("overloaded"));
    assert_eq!(error["type"], "server_error");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!((first.join().unwrap(), second.join().unwrap()), (200, 200));
    assert!(metrics(&server).contains("vllm:num_requests_waiting{model_name=\"mock-gpt-model\"} 0"));
    server.assert_alive();
}

#[test]
fn per_model_limits_stay_with_their_model() {
    let models = r#"[{"name":"one","max_concurrent":1,"max_waiting":0},"free"]"#;
    let server = Server::start(&["--models", models]);
    let body = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    };
    let addr = server.addr;
    let held = {
        let body = body("one");
        thread::spawn(move || {
            let mut client = crate::support::Client::connect(addr);
            client.send(&chat(&body, &[("x-standin-ttft-ms", "1500")]));
            client.read_response().status
        })
    };
    wait_for(|| {
        server
            .send(&get("/metrics", &[]))
            .text()
            .contains("vllm:num_requests_running{model_name=\"one\"} 1")
    });
    server
        .send(&chat(&body("one"), &[]))
        .assert_error(503, Some("overloaded"));
    server.send(&chat(&body("free"), &[])).assert_ok_json();
    assert_eq!(held.join().unwrap(), 200);
}

#[test]
fn bad_model_declarations_stop_the_server_with_a_message() {
    for (args, says) in [
        (
            &["--models", r#"[{"name":"m","kind":"gpt"}]"#][..],
            "kind `gpt`",
        ),
        (&["--alias", "x=missing"], "missing"),
        (&["--output-tokens", "9-1"], "MIN is above MAX"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_standin"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// Polls `ready` every 10 ms for up to 10 s.
fn wait_for(mut ready: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if ready() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("condition not reached within 10 s");
}
