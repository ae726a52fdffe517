//! Chat request bodies that frame correctly but are not valid requests: 400 naming the field.

use serde_json::{json, Value};

use crate::support::{assert_echo, chat, post, Server, MODEL};

/// The base request with `fields` merged in at the top level.
fn with(fields: Value) -> String {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    for (key, value) in fields.as_object().expect("fields object") {
        body[key] = value.clone();
    }
    body.to_string()
}

/// Asserts `body` is rejected with 400, `param` and (when given) `code`.
fn assert_invalid(server: &Server, body: &str, param: &str, code: Option<&str>) {
    let resp = server.send(&chat(body, &[]));
    let err = resp.assert_error(400, code);
    assert_eq!(err["param"], param, "body {body}: {err}");
}

#[test]
fn invalid_json_is_400_and_keeps_the_connection() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    for body in ["{\"model\":", "not json", "{\"model\":\"m\",}", "{} {}"] {
        conn.send(&chat(body, &[]));
        let err = conn.read_response().assert_error(400, Some("invalid_json"));
        assert_eq!(err["param"], Value::Null, "{body}");
    }
    // A body-level error is not a framing error: the connection stays usable.
    conn.send(&chat(&with(json!({})), &[]));
    assert_echo(&conn.read_response(), "hi");
}

#[test]
fn body_that_is_not_utf8_is_400() {
    let server = Server::start(&[]);
    let mut body =
        format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":""#).into_bytes();
    body.extend([0xff, 0xfe, b'x']);
    body.extend(br#""}]}"#);
    let err = server
        .send(&post("/v1/chat/completions", &body, &[]))
        .assert_error(400, Some("invalid_json"));
    assert_eq!(err["param"], Value::Null);
}

#[test]
fn top_level_must_be_an_object() {
    let server = Server::start(&[]);
    for body in ["[]", "\"text\"", "42", "null"] {
        server.send(&chat(body, &[])).assert_error(400, None);
    }
}

#[test]
fn missing_required_fields_are_named() {
    let server = Server::start(&[]);
    let no_model = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    assert_invalid(
        &server,
        &no_model,
        "model",
        Some("missing_required_parameter"),
    );
    let null_model = with(json!({"model": null}));
    assert_invalid(
        &server,
        &null_model,
        "model",
        Some("missing_required_parameter"),
    );
    let no_messages = json!({"model": MODEL}).to_string();
    assert_invalid(
        &server,
        &no_messages,
        "messages",
        Some("missing_required_parameter"),
    );
}

#[test]
fn wrong_types_are_named() {
    let server = Server::start(&[]);
    let cases = [
        (json!({"model": 5}), "model"),
        (json!({"messages": "hi"}), "messages"),
        (json!({"n": "2"}), "n"),
        (json!({"n": 1.5}), "n"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"max_tokens": 1.5}), "max_tokens"),
        (json!({"max_tokens": "10"}), "max_tokens"),
        (json!({"stream": "yes"}), "stream"),
        (json!({"stop": 5}), "stop"),
        (json!({"seed": 1.5}), "seed"),
        (json!({"user": 5}), "user"),
        (json!({"logprobs": "true"}), "logprobs"),
        (json!({"tools": {}}), "tools"),
        (json!({"parallel_tool_calls": 1}), "parallel_tool_calls"),
        (json!({"store": "no"}), "store"),
    ];
    for (fields, param) in cases {
        assert_invalid(&server, &with(fields), param, Some("invalid_type"));
    }
}

#[test]
fn out_of_range_values_are_named() {
    let server = Server::start(&[]);
    let cases = [
        (json!({"n": 0}), "n"),
        (json!({"n": 129}), "n"),
        (json!({"temperature": 5}), "temperature"),
        (json!({"temperature": -0.1}), "temperature"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"frequency_penalty": -3}), "frequency_penalty"),
        (json!({"presence_penalty": 2.5}), "presence_penalty"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
        (json!({"top_logprobs": 21}), "top_logprobs"),
    ];
    for (fields, param) in cases {
        assert_invalid(&server, &with(fields), param, Some("invalid_value"));
    }
}

#[test]
fn invalid_messages_are_named_by_index() {
    let server = Server::start(&[]);
    let user = json!({"role": "user", "content": "ok"});
    let cases = [
        (json!([]), "messages", None),
        (
            json!([{"role": "wizard", "content": "x"}]),
            "messages[0].role",
            Some("invalid_value"),
        ),
        (
            json!([user, user, {"content": "x"}]),
            "messages[2].role",
            Some("missing_required_parameter"),
        ),
        (
            json!([user, {"role": "user", "content": null}]),
            "messages[1].content",
            None,
        ),
        (
            json!([{"role": "user", "content": 5}]),
            "messages[0].content",
            Some("invalid_type"),
        ),
        (
            json!([{"role": "tool", "content": "r"}]),
            "messages[0].tool_call_id",
            None,
        ),
    ];
    for (messages, param, code) in cases {
        assert_invalid(&server, &with(json!({"messages": messages})), param, code);
    }
}

#[test]
fn invalid_structured_fields_are_named() {
    let server = Server::start(&[]);
    let stop5 = json!({"stop": ["a", "b", "c", "d", "e"]});
    assert_invalid(&server, &with(stop5), "stop", None);
    let options = json!({"stream_options": {"include_usage": true}});
    assert_invalid(&server, &with(options), "stream_options", None);
    let options_false = json!({"stream": false, "stream_options": {"include_usage": true}});
    assert_invalid(&server, &with(options_false), "stream_options", None);

    // For nested fields the param may point inside the field; it must at least start with it.
    for (fields, prefix) in [
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format",
        ),
        (json!({"logit_bias": {"50256": 101}}), "logit_bias"),
        (json!({"logit_bias": {"50256": "x"}}), "logit_bias"),
        (json!({"metadata": {"k": 1}}), "metadata"),
    ] {
        let err = server
            .send(&chat(&with(fields.clone()), &[]))
            .assert_error(400, None);
        let param = err["param"].as_str().unwrap_or_default();
        assert!(param.starts_with(prefix), "{fields}: param {param:?}");
    }
}

#[test]
fn nulls_and_unknown_fields_are_accepted() {
    let server = Server::start(&[]);
    let body = with(json!({
        "temperature": null, "n": null, "stop": null, "max_tokens": null, "stream": null,
        "stream_options": null, "seed": null, "tools": null, "some_future_field": {"a": [1, 2]},
    }));
    assert_echo(&server.send(&chat(&body, &[])), "hi");
    let body = with(json!({
        "temperature": 2, "top_p": 0, "n": 1, "frequency_penalty": -2, "presence_penalty": 2,
        "logprobs": true, "top_logprobs": 20, "logit_bias": {"1": -100, "2": 100},
        "stop": ["<<", ">>", "##", "@@"],
        "response_format": {"type": "text"}, "metadata": {"k": "v"}, "store": false,
    }));
    assert_echo(&server.send(&chat(&body, &[])), "hi");
}
