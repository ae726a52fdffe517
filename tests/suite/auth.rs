//! API-key authentication and the access log (which must never contain a key).

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{assert_echo, chat, chat_body, get, Server, TempFile};

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Asserts `GET /v1/models` with `authorization` (None: no header) gets `status`.
fn assert_models_status(server: &Server, authorization: Option<&str>, status: u16) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    let resp = server.send(&get("/v1/models", &headers));
    if status == 401 {
        resp.assert_error(401, Some("invalid_api_key"));
    } else {
        assert_eq!(
            resp.status,
            status,
            "{authorization:?}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
}

#[test]
fn every_configured_key_works_and_others_get_401() {
    let server = Server::start(&["--api-key", "k1", "--api-key", "k2"]);
    assert_models_status(&server, Some(&bearer("k1")), 200);
    assert_models_status(&server, Some(&bearer("k2")), 200);
    for wrong in [
        "Bearer k3",
        "Bearer k",
        "Bearer k1x",
        "Bearer ",
        "k1",
        "Basic azE6",
        "Bearer k1 k2",
    ] {
        assert_models_status(&server, Some(wrong), 401);
    }
    assert_models_status(&server, None, 401);

    let ok = server.send(&chat(
        &chat_body("authorized"),
        &[("Authorization", &bearer("k2"))],
    ));
    assert_echo(&ok, "authorized");
    let denied = server.send(&chat(
        &chat_body("nope"),
        &[("Authorization", "Bearer bad")],
    ));
    denied.assert_error(401, Some("invalid_api_key"));
    let model = server.send(&get("/v1/models/mock-gpt-model", &[]));
    model.assert_error(401, Some("invalid_api_key"));
}

#[test]
fn health_needs_no_key() {
    let server = Server::start(&["--api-key", "k1"]);
    let resp = server.send(&get("/health", &[]));
    assert_eq!(resp.assert_ok_json(), serde_json::json!({"status": "ok"}));
    let resp = server.send(&get("/health", &[("Authorization", "Bearer wrong")]));
    assert_eq!(resp.status, 200);
}

#[test]
fn unauthorized_request_keeps_the_connection() {
    let server = Server::start(&["--api-key", "k1"]);
    let mut conn = server.connect();
    conn.send(&chat(&chat_body("x"), &[]));
    conn.read_response()
        .assert_error(401, Some("invalid_api_key"));
    conn.send(&chat(
        &chat_body("again"),
        &[("Authorization", "Bearer k1")],
    ));
    assert_echo(&conn.read_response(), "again");
}

#[test]
fn api_key_file_skips_comments_and_blank_lines() {
    let file = TempFile::new(
        "keys",
        "# team keys\n\nfilekey1\n   \nfilekey2\n#disabled\n",
    );
    let server = Server::start(&["--api-key-file", file.path()]);
    assert_models_status(&server, Some(&bearer("filekey1")), 200);
    assert_models_status(&server, Some(&bearer("filekey2")), 200);
    assert_models_status(&server, Some(&bearer("#disabled")), 401);
    assert_models_status(&server, Some(&bearer("# team keys")), 401);
    assert_models_status(&server, None, 401);
}

#[test]
fn api_keys_from_env_are_comma_separated() {
    let server = Server::builder()
        .env("STANDIN_API_KEY", "envkey1,envkey2")
        .start();
    assert_models_status(&server, Some(&bearer("envkey1")), 200);
    assert_models_status(&server, Some(&bearer("envkey2")), 200);
    assert_models_status(&server, Some(&bearer("envkey1,envkey2")), 401);
    assert_models_status(&server, None, 401);
}

#[test]
fn without_keys_no_auth_is_needed() {
    let server = Server::start(&[]);
    assert_models_status(&server, None, 200);
    assert_models_status(&server, Some("Bearer anything"), 200);
}

/// Parses `access k=v k=v ...` lines (anything before `access ` is ignored).
fn access_lines(log: &str) -> Vec<HashMap<String, String>> {
    log.lines()
        .filter_map(|line| {
            let rest = line
                .strip_prefix("access ")
                .or_else(|| line.split_once(" access ").map(|(_, r)| r))?;
            Some(
                rest.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// A numeric logfmt field.
fn field<T: std::str::FromStr>(line: &HashMap<String, String>, key: &str) -> T {
    line.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric `{key}` in {line:?}"))
}

#[test]
fn access_log_has_a_line_per_request_and_no_keys() {
    const KEY: &str = "sk-secret-KEY-7f3a9c";
    let server = Server::builder()
        .with_access_log()
        .args(&["--api-key", KEY])
        .start();
    let auth = bearer(KEY);
    let requests = [
        (
            get(
                "/v1/models",
                &[("Authorization", &auth), ("x-request-id", "log-1")],
            ),
            200,
        ),
        (
            chat(
                &chat_body("logged"),
                &[("Authorization", &auth), ("x-request-id", "log-2")],
            ),
            200,
        ),
        (
            get(
                "/v1/models",
                &[
                    ("Authorization", "Bearer sk-secret-KEY-7f3a9"),
                    ("x-request-id", "log-3"),
                ],
            ),
            401,
        ),
        (get("/health", &[("x-request-id", "log-4")]), 200),
        (get("/missing", &[("x-request-id", "log-5")]), 404),
    ];
    let mut sizes = Vec::new();
    for (req, status) in &requests {
        let resp = server.send(req);
        assert_eq!(resp.status, *status);
        sizes.push(resp.body.len());
    }
    // The log is flushed at least every 200 ms; allow 1 s for a loaded machine.
    let log = server.wait_for_stderr(Duration::from_secs(1), |log| {
        access_lines(log)
            .iter()
            .filter(|l| l.get("id").is_some_and(|id| id.starts_with("log-")))
            .count()
            >= 5
    });
    assert!(
        !log.contains(KEY),
        "the API key leaked into the log:\n{log}"
    );
    assert!(
        !log.contains("sk-secret"),
        "a key-like Authorization value leaked:\n{log}"
    );

    let lines = access_lines(&log);
    let expected = [
        ("GET", "/v1/models", "200", "log-1"),
        ("POST", "/v1/chat/completions", "200", "log-2"),
        ("GET", "/v1/models", "401", "log-3"),
        ("GET", "/health", "200", "log-4"),
        ("GET", "/missing", "404", "log-5"),
    ];
    for (i, (method, path, status, id)) in expected.into_iter().enumerate() {
        let matching: Vec<_> = lines
            .iter()
            .filter(|l| l.get("id").map(String::as_str) == Some(id))
            .collect();
        assert_eq!(matching.len(), 1, "exactly one line for {id}:\n{log}");
        let line = matching[0];
        assert_eq!(
            line.get("method").map(String::as_str),
            Some(method),
            "{line:?}"
        );
        assert_eq!(line.get("path").map(String::as_str), Some(path), "{line:?}");
        assert_eq!(
            line.get("status").map(String::as_str),
            Some(status),
            "{line:?}"
        );
        let bytes: usize = field(line, "bytes");
        assert!(
            bytes >= sizes[i],
            "bytes={bytes} is less than the body ({}): {line:?}",
            sizes[i]
        );
        let _: u64 = field(line, "dur_us");
    }
}

#[test]
fn quiet_server_writes_no_access_log() {
    let server = Server::start(&[]);
    assert_eq!(
        server
            .send(&get("/health", &[("x-request-id", "quiet-1")]))
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(400));
    let log = server.stderr();
    assert!(
        !log.contains("quiet-1") && !log.contains("access "),
        "--quiet still logged:\n{log}"
    );
}
