//! Server-sent events on the wire: headers, chunked framing, event order and the final `[DONE]`.

use serde_json::{json, Value};

use crate::support::{chat, echo, get, sse_events, stream_body, Response, Server, MODEL};

/// The echo reply to "Hello world" split by the contract's token rule.
const HELLO_WORLD_TOKENS: [&str; 14] = [
    "As",
    " a",
    " mock",
    " AI",
    " Assistant,",
    " I",
    " can",
    " only",
    " echo",
    " your",
    " last",
    " message:",
    " Hello",
    " world",
];

/// Asserts the SSE response headers and returns the decoded events (JSON chunks, then `[DONE]`).
fn stream_chunks(resp: &Response) -> Vec<Value> {
    assert_eq!(
        resp.status,
        200,
        "{} {}",
        resp.raw_head,
        String::from_utf8_lossy(&resp.body)
    );
    resp.assert_common_headers();
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{}",
        resp.raw_head
    );
    assert_eq!(
        resp.header("cache-control"),
        Some("no-cache"),
        "{}",
        resp.raw_head
    );
    let events = sse_events(resp.text());
    let (done, chunks) = events.split_last().expect("at least one event");
    assert_eq!(done, "[DONE]", "last event");
    chunks
        .iter()
        .map(|c| serde_json::from_str(c).unwrap_or_else(|e| panic!("event is not JSON ({e}): {c}")))
        .collect()
}

/// Asserts the fields every chunk shares and that the id is the same throughout.
fn assert_chunk_envelopes(chunks: &[Value]) {
    let id = chunks[0]["id"].as_str().expect("chunk id");
    assert!(id.starts_with("chatcmpl-"), "{id}");
    for chunk in chunks {
        assert_eq!(chunk["id"], id, "{chunk}");
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert!(chunk["created"].is_u64(), "{chunk}");
        assert_eq!(chunk["model"], MODEL, "{chunk}");
        assert_eq!(chunk["system_fingerprint"], "fp_standin", "{chunk}");
    }
}

#[test]
fn stream_wire_format() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    conn.send(&chat(&stream_body("Hello world"), &[]));
    let resp = conn.read_response();
    assert_eq!(
        resp.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        resp.raw_head
    );
    assert!(resp.header("content-length").is_none(), "{}", resp.raw_head);
    assert!(!resp.chunk_sizes.is_empty());

    let chunks = stream_chunks(&resp);
    assert_chunk_envelopes(&chunks);
    assert_eq!(
        chunks.len(),
        1 + HELLO_WORLD_TOKENS.len() + 1,
        "role + tokens + finish"
    );
    for chunk in &chunks {
        assert!(
            chunk.get("usage").is_none(),
            "usage without include_usage: {chunk}"
        );
        let choices = chunk["choices"].as_array().expect("choices");
        assert_eq!(choices.len(), 1, "{chunk}");
        assert_eq!(choices[0]["index"], 0);
        assert_eq!(choices[0]["logprobs"], Value::Null, "{chunk}");
    }
    let first = &chunks[0]["choices"][0];
    assert_eq!(first["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(first["finish_reason"], Value::Null);
    for (chunk, token) in chunks[1..=HELLO_WORLD_TOKENS.len()]
        .iter()
        .zip(HELLO_WORLD_TOKENS)
    {
        assert_eq!(chunk["choices"][0]["delta"], json!({"content": token}));
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
    let last = &chunks.last().unwrap()["choices"][0];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "stop");

    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, echo("Hello world"));

    // The terminating zero chunk was sent: the connection serves the next request.
    conn.send(&get("/health", &[]));
    assert_eq!(conn.read_response().status, 200);
}

#[test]
fn stream_with_include_usage() {
    let server = Server::start(&[]);
    let body = json!({
        "model": MODEL, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Hello world"}],
    });
    let chunks = stream_chunks(&server.send(&chat(&body.to_string(), &[])));
    assert_chunk_envelopes(&chunks);
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    for chunk in rest {
        assert_eq!(chunk.get("usage"), Some(&Value::Null), "{chunk}");
    }
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 14, "total_tokens": 16})
    );
}

#[test]
fn stream_with_max_tokens_finishes_with_length() {
    let server = Server::start(&[]);
    let body = json!({
        "model": MODEL, "stream": true, "max_tokens": 3,
        "messages": [{"role": "user", "content": "Hello world"}],
    });
    let chunks = stream_chunks(&server.send(&chat(&body.to_string(), &[])));
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": ""}),
            &json!({"content": "As"}),
            &json!({"content": " a"}),
            &json!({"content": " mock"}),
            &json!({}),
        ]
    );
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "length");
}

#[test]
fn stream_request_errors_are_plain_json() {
    let server = Server::start(&[]);
    let body = json!({"model": MODEL, "stream": true, "messages": []}).to_string();
    let resp = server.send(&chat(&body, &[]));
    let err = resp.assert_error(400, None);
    assert_eq!(err["param"], "messages");
    assert!(resp
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
}

#[test]
fn http10_stream_is_not_chunked_and_closes() {
    let server = Server::start(&[]);
    let body = stream_body("Hello world");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = server.connect();
    conn.send(req.as_bytes());
    // With neither chunked nor Content-Length, the reader takes the body up to EOF.
    let resp = conn.read_response();
    assert!(
        resp.header("transfer-encoding").is_none(),
        "{}",
        resp.raw_head
    );
    assert!(resp.header("content-length").is_none(), "{}", resp.raw_head);
    let chunks = stream_chunks(&resp);
    assert_eq!(chunks.len(), 16);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, echo("Hello world"));
}

#[test]
fn stream_with_n_choices_covers_each_index() {
    let server = Server::start(&[]);
    let body = json!({
        "model": MODEL, "stream": true, "n": 2,
        "messages": [{"role": "user", "content": "Hello world"}],
    });
    let chunks = stream_chunks(&server.send(&chat(&body.to_string(), &[])));
    assert_chunk_envelopes(&chunks);
    for index in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0])
            .filter(|choice| choice["index"] == index)
            .collect();
        assert_eq!(mine.len(), 16, "choice {index}");
        assert_eq!(
            mine[0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let text: String = mine
            .iter()
            .filter_map(|c| c["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, echo("Hello world"));
        assert_eq!(mine[15]["finish_reason"], "stop");
    }
}

/// Streamed content is the echo whether the reply needs escapes or not: a reply without `"`, `\` or control
/// characters is written without a check per token, one with them escapes each token that holds one.
/// Either way every chunk is valid JSON and the pieces join to the echo.
#[test]
fn streamed_text_with_and_without_escapes_joins_to_the_echo() {
    let server = Server::start(&[]);
    for prompt in [
        "plain words, caf\u{e9} and \u{1F600}",
        "a \"quoted\" word",
        "back\\slash and tab\tand\nnewline",
        "a control \u{1} byte",
    ] {
        for n in [1, 2] {
            let body = json!({
                "model": MODEL, "stream": true, "n": n,
                "messages": [{"role": "user", "content": prompt}],
            });
            let chunks = stream_chunks(&server.send(&chat(&body.to_string(), &[])));
            assert_chunk_envelopes(&chunks);
            for index in 0..n {
                let text: String = chunks
                    .iter()
                    .map(|c| &c["choices"][0])
                    .filter(|choice| choice["index"] == index)
                    .filter_map(|c| c["delta"]["content"].as_str())
                    .collect();
                assert_eq!(text, echo(prompt), "n={n} choice {index}");
            }
        }
    }
}
