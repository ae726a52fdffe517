//! CORS (`--cors-origin`): preflights answered without a key, allowed and refused origins, the headers on
//! JSON, error and streamed answers, and nothing at all when CORS is off.

use crate::support::{chat, chat_body, get, post, stream_body, Response, Server};

const APP: &str = "https://app.example.com";

/// An `OPTIONS` preflight for `path` with extra headers.
fn preflight(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("OPTIONS {path} HTTP/1.1\r\nHost: standin.test\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Every header with this name, in order (case-insensitive).
fn all(resp: &Response, name: &str) -> Vec<String> {
    resp.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Asserts the headers an allowed origin gets on an actual (non-preflight) response.
fn assert_allowed(resp: &Response, allow_origin: &str) {
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some(allow_origin),
        "{}",
        resp.raw_head
    );
    assert_eq!(all(resp, "vary"), ["Origin"], "{}", resp.raw_head);
    let expose = resp
        .header("access-control-expose-headers")
        .unwrap_or_else(|| panic!("no Expose-Headers: {}", resp.raw_head));
    let exposed: Vec<&str> = expose.split(',').map(str::trim).collect();
    for name in [
        "x-request-id",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "retry-after-ms",
    ] {
        assert!(exposed.contains(&name), "{name} not exposed: {expose}");
    }
}

/// Asserts a response carries no `Access-Control-*` header.
fn assert_no_cors(resp: &Response) {
    assert!(
        !resp
            .headers
            .iter()
            .any(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-")),
        "{}",
        resp.raw_head
    );
}

#[test]
fn preflight_needs_no_key_and_echoes_the_requested_headers() {
    let server = Server::start(&["--cors-origin", APP, "--api-key", "sk-cors"]);
    let resp = server.send(&preflight(
        "/v1/chat/completions",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type, x-stainless-os",
            ),
        ],
    ));
    assert_eq!(resp.status, 204, "{}", resp.raw_head);
    resp.assert_common_headers();
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        resp.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("authorization, content-type, x-stainless-os")
    );
    assert_eq!(resp.header("access-control-max-age"), Some("600"));
    assert_eq!(resp.header("vary"), Some("Origin"));
    // A preflight takes nothing from the rate limits and is not an API call: no x-ratelimit-* here.
    assert!(resp.header("x-ratelimit-limit-requests").is_none());
}

#[test]
fn preflight_without_requested_headers_gets_the_default_list() {
    let server = Server::start(&["--cors-origin", APP]);
    for (path, methods) in [
        ("/v1/models", "GET, OPTIONS"),
        ("/v1/models/gpt-4o", "GET, OPTIONS"),
        ("/v1/embeddings", "POST, OPTIONS"),
        ("/v1/completions", "POST, OPTIONS"),
        ("/health", "GET, OPTIONS"),
    ] {
        let resp = server.send(&preflight(path, &[("Origin", APP)]));
        assert_eq!(resp.status, 204, "{path}: {}", resp.raw_head);
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some(methods),
            "{path}"
        );
        let allowed = resp.header("access-control-allow-headers").unwrap();
        for name in [
            "authorization",
            "content-type",
            "x-standin-fail",
            "x-standin-ttft-ms",
            "x-standin-itl-ms",
        ] {
            assert!(allowed.contains(name), "{path}: {name} not in {allowed}");
        }
    }
}

#[test]
fn preflight_of_an_unknown_route_is_404() {
    let server = Server::start(&["--cors-origin", APP]);
    let resp = server.send(&preflight("/v1/nothing", &[("Origin", APP)]));
    resp.assert_error(404, Some("unknown_url"));
    // Still readable by the page: the error says what went wrong.
    assert_eq!(resp.header("access-control-allow-origin"), Some(APP));
}

#[test]
fn refused_origin_gets_no_allow_origin() {
    let server = Server::start(&["--cors-origin", APP]);
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
    ] {
        let resp = server.send(&preflight(
            "/v1/chat/completions",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
            ],
        ));
        assert_eq!(resp.status, 204, "{origin}");
        assert_no_cors(&resp);
        let resp = server.send(&chat(&chat_body("hi"), &[("Origin", origin)]));
        assert_eq!(resp.status, 200);
        assert_no_cors(&resp);
        // The answer depends on the Origin, so caches must keep them apart.
        assert_eq!(resp.header("vary"), Some("Origin"), "{origin}");
    }
    // No Origin at all (curl, the SDKs): answered as always.
    let resp = server.send(&chat(&chat_body("hi"), &[]));
    assert_eq!(resp.status, 200);
    assert_no_cors(&resp);
}

#[test]
fn allowed_origin_can_read_json_errors_and_streams() {
    let server = Server::start(&[
        "--cors-origin",
        "http://localhost:5173",
        "--cors-origin",
        APP,
        "--api-key",
        "sk-cors",
    ]);
    let auth = ("Authorization", "Bearer sk-cors");
    let origin = ("Origin", APP);
    let ok = server.send(&chat(&chat_body("hi"), &[auth, origin]));
    assert_eq!(ok.status, 200);
    assert_allowed(&ok, APP);

    let models = server.send(&get(
        "/v1/models",
        &[auth, ("Origin", "http://localhost:5173")],
    ));
    assert_eq!(models.status, 200);
    assert_allowed(&models, "http://localhost:5173");

    let unauthorized = server.send(&chat(&chat_body("hi"), &[origin]));
    unauthorized.assert_error(401, Some("invalid_api_key"));
    assert_allowed(&unauthorized, APP);

    let invalid = server.send(&chat(r#"{"model":"m"}"#, &[auth, origin]));
    invalid.assert_error(400, None);
    assert_allowed(&invalid, APP);

    let wrong_method = server.send(&get("/v1/chat/completions", &[origin]));
    wrong_method.assert_error(405, Some("method_not_allowed"));
    assert_eq!(wrong_method.header("allow"), Some("POST, OPTIONS"));
    assert_allowed(&wrong_method, APP);

    let health = server.send(&get("/health", &[origin]));
    assert_allowed(&health, APP);

    let stream = server.send(&chat(&stream_body("hi"), &[auth, origin]));
    assert_eq!(stream.status, 200);
    assert!(stream.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(stream.header("cache-control"), Some("no-cache"));
    assert_allowed(&stream, APP);

    let legacy = server.send(&post(
        "/v1/completions",
        br#"{"model":"m","prompt":"hi","stream":true}"#,
        &[auth, origin],
    ));
    assert_eq!(legacy.status, 200);
    assert_allowed(&legacy, APP);

    let embeddings = server.send(&post(
        "/v1/embeddings",
        br#"{"model":"m","input":"hi"}"#,
        &[auth, origin],
    ));
    assert_eq!(embeddings.status, 200);
    assert_allowed(&embeddings, APP);
}

#[test]
fn star_allows_any_origin() {
    let server = Server::start(&["--cors-origin", "*"]);
    let resp = server.send(&chat(
        &chat_body("hi"),
        &[("Origin", "https://anything.example")],
    ));
    assert_allowed(&resp, "*");
    let resp = server.send(&preflight(
        "/v1/embeddings",
        &[("Origin", "https://other.example")],
    ));
    assert_eq!(resp.status, 204);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn origins_from_env_are_comma_separated() {
    let server = Server::builder()
        .env(
            "STANDIN_CORS_ORIGIN",
            "https://a.example, https://b.example",
        )
        .start();
    for origin in ["https://a.example", "https://b.example"] {
        let resp = server.send(&get("/v1/models", &[("Origin", origin)]));
        assert_allowed(&resp, origin);
    }
    let resp = server.send(&get("/v1/models", &[("Origin", "https://c.example")]));
    assert_no_cors(&resp);
}

#[test]
fn headers_do_not_leak_to_the_next_request_on_a_connection() {
    let server = Server::start(&["--cors-origin", APP]);
    let mut conn = server.connect();
    conn.send(&get("/v1/models", &[("Origin", APP)]));
    assert_allowed(&conn.read_response(), APP);
    conn.send(&get("/v1/models", &[("Origin", "https://evil.example")]));
    let second = conn.read_response();
    assert_no_cors(&second);
    assert_eq!(all(&second, "vary"), ["Origin"]);
}

#[test]
fn without_cors_origin_there_are_no_headers_and_options_is_405() {
    let server = Server::start(&[]);
    let resp = server.send(&chat(&chat_body("hi"), &[("Origin", APP)]));
    assert_eq!(resp.status, 200);
    assert_no_cors(&resp);
    assert!(resp.header("vary").is_none());
    let resp = server.send(&preflight(
        "/v1/chat/completions",
        &[("Origin", APP), ("Access-Control-Request-Method", "POST")],
    ));
    resp.assert_error(405, Some("method_not_allowed"));
    assert_eq!(resp.header("allow"), Some("POST"));
    assert_no_cors(&resp);
}

#[test]
fn bad_origin_is_a_config_error() {
    let exit = crate::support::run(&["--cors-origin", "app.example.com"], &[]);
    assert_eq!(exit.code, Some(2), "{exit:?}");
    assert!(exit.stderr.contains("--cors-origin"), "{exit:?}");
}
