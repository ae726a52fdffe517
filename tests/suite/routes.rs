//! Routing: 404/405, request ids, the headers every response carries, and the models endpoints.

use serde_json::json;

use crate::support::{
    assert_echo, chat, chat_body, echo, get, get_with_numbered_headers, post, Server, MODEL,
};

#[test]
fn unknown_route_is_404() {
    let server = Server::start(&[]);
    for path in [
        "/",
        "/nope",
        "/v1",
        "/v1/chat",
        "/v1/chat/completions/extra",
        "/health/x",
    ] {
        let err = server
            .send(&get(path, &[]))
            .assert_error(404, Some("unknown_url"));
        assert!(err["message"].is_string(), "{path}");
    }
    server
        .send(&post("/v1/nothing", b"{}", &[]))
        .assert_error(404, Some("unknown_url"));
}

#[test]
fn wrong_method_is_405_with_allow() {
    let server = Server::start(&[]);
    let cases = [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/chat/completions", "POST"),
        ("POST", "/v1/models", "GET"),
        ("DELETE", "/v1/models", "GET"),
        ("POST", "/v1/models/mock-gpt-model", "GET"),
        ("POST", "/health", "GET"),
    ];
    for (method, path, allowed) in cases {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let resp = server.send(req.as_bytes());
        resp.assert_error(405, Some("method_not_allowed"));
        let allow = resp
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow {allow:?} lacks {allowed}"
        );
    }
}

#[test]
fn request_id_is_echoed_or_generated() {
    let server = Server::start(&[]);
    let resp = server.send(&get("/health", &[("x-request-id", "client-id-42")]));
    assert_eq!(resp.header("x-request-id"), Some("client-id-42"));
    let resp = server.send(&get("/nope", &[("X-Request-Id", "on-an-error")]));
    assert_eq!(resp.header("x-request-id"), Some("on-an-error"));

    let longest = "a".repeat(128);
    let resp = server.send(&get("/health", &[("x-request-id", &longest)]));
    assert_eq!(resp.header("x-request-id"), Some(longest.as_str()));

    for bad in [
        "a".repeat(129),
        "has space".to_string(),
        "tab\there".to_string(),
    ] {
        let resp = server.send(&get("/health", &[("x-request-id", &bad)]));
        assert_generated_id(resp.header("x-request-id"));
    }
    let first = server.send(&get("/health", &[]));
    let second = server.send(&get("/health", &[]));
    assert_generated_id(first.header("x-request-id"));
    assert_generated_id(second.header("x-request-id"));
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
}

fn assert_generated_id(id: Option<&str>) {
    let id = id.expect("x-request-id present");
    let hex = id
        .strip_prefix("req_")
        .unwrap_or_else(|| panic!("generated id {id:?} lacks req_"));
    assert!(
        !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );
}

#[test]
fn every_response_has_request_id_date_server_and_length() {
    let server = Server::start(&[
        "--max-body-bytes",
        "2000",
        "--max-headers",
        "10",
        "--api-key",
        "k",
    ]);
    let auth = ("Authorization", "Bearer k");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (get("/health", &[]), 200),
        (get("/v1/models", &[auth]), 200),
        (get("/v1/models/mock-gpt-model", &[auth]), 200),
        (chat(&chat_body("hi"), &[auth]), 200),
        (chat("{", &[auth]), 400),
        (get("/v1/models", &[]), 401),
        (get("/nope", &[]), 404),
        (get("/v1/chat/completions", &[auth]), 405),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k\r\nContent-Length: 5000\r\n\r\n".to_vec(),
            413,
        ),
        (get_with_numbered_headers("/health", 15), 431),
        (b"BROKEN\r\n\r\n".to_vec(), 400),
    ];
    for (req, status) in cases {
        let resp = server.send(&req);
        assert_eq!(resp.status, status, "{}", String::from_utf8_lossy(&req));
        resp.assert_common_headers();
        let length: usize = resp
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("Content-Length on {status}: {}", resp.raw_head));
        assert_eq!(length, resp.body.len());
        assert!(
            resp.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "JSON content type on {status}: {}",
            resp.raw_head
        );
    }
}

#[test]
fn models_lists_the_configured_models() {
    let server = Server::start(&["--models", "alpha,beta-2"]);
    let body = server.send(&get("/v1/models", &[])).assert_ok_json();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().expect("data array");
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alpha", "beta-2"]);
    for model in data {
        assert_eq!(model["object"], "model");
        assert_eq!(model["owned_by"], "standin");
        assert!(model["created"].is_u64(), "{model}");
    }

    let one = server.send(&get("/v1/models/beta-2", &[])).assert_ok_json();
    assert_eq!(one["id"], "beta-2");
    assert_eq!(one["object"], "model");
    assert_eq!(one["owned_by"], "standin");
    // Unlisted ids are served too unless --strict-models.
    let other = server.send(&get("/v1/models/gpt-4o", &[])).assert_ok_json();
    assert_eq!(other["id"], "gpt-4o");
}

#[test]
fn default_model_list() {
    let server = Server::start(&[]);
    let body = server.send(&get("/v1/models", &[])).assert_ok_json();
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["data"][0]["id"], MODEL);
}

#[test]
fn strict_models_rejects_unlisted_models() {
    let server = Server::start(&["--models", "alpha", "--strict-models"]);
    let err = server
        .send(&get("/v1/models/gpt-4o", &[]))
        .assert_error(404, Some("model_not_found"));
    assert_eq!(err["param"], "model");
    assert_eq!(server.send(&get("/v1/models/alpha", &[])).status, 200);

    let body =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).to_string();
    let err = server
        .send(&chat(&body, &[]))
        .assert_error(404, Some("model_not_found"));
    assert_eq!(err["param"], "model");
    let body =
        json!({"model": "alpha", "messages": [{"role": "user", "content": "ok"}]}).to_string();
    let resp = server.send(&chat(&body, &[])).assert_ok_json();
    assert_eq!(resp["model"], "alpha");
    assert_eq!(resp["choices"][0]["message"]["content"], echo("ok"));
}

#[test]
fn chat_completion_echoes_and_counts_tokens() {
    let server = Server::start(&[]);
    let resp = server.send(&chat(&chat_body("Hello"), &[]));
    assert_echo(&resp, "Hello");
    let body = resp.json();
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")),
        "{body}"
    );
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["system_fingerprint"], "fp_standin");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 1, "completion_tokens": 13, "total_tokens": 14})
    );
}
