"""Raw HTTP responses (bytes parsed here, not the SDK's objects) validated
against the OpenAI spec and the exact shapes of /work/notes/contract.md."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from support import (
    DEFAULT_MODEL,
    chat_body,
    echo_reply,
    parse_sse,
    raw_exchange,
    tokenize,
)

RESPONSE_KEYS = {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
CHOICE_KEYS = {"index", "message", "logprobs", "finish_reason"}
MESSAGE_KEYS = {"role", "content", "refusal"}
USAGE_KEYS = {"prompt_tokens", "completion_tokens", "total_tokens"}
CHUNK_KEYS = {"id", "object", "created", "model", "system_fingerprint", "choices"}
CHUNK_CHOICE_KEYS = {"index", "delta", "logprobs", "finish_reason"}
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client


def post_chat(client: httpx.Client, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}, **kwargs
    )


def stream_chat(client: httpx.Client, body) -> tuple[httpx.Response, bytes]:
    with client.stream(
        "POST", "/v1/chat/completions", content=json.dumps(body), headers={"content-type": "application/json"}
    ) as resp:
        raw = b"".join(resp.iter_raw())
    return resp, raw


def check_error(resp, spec, status, code, param="<any>", type_="invalid_request_error") -> dict:
    """Asserts an OpenAI error envelope and returns its `error` object."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = json.loads(resp.content)
    spec.validate(body, "ErrorResponse")
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["type"] == type_, error
    if isinstance(code, frozenset):
        assert error["code"] in code, error
    else:
        assert error["code"] == code, error
    if param != "<any>":
        assert error["param"] == param, error
    return error


# --- non-streaming ---------------------------------------------------------------------------

def test_chat_completion_matches_schema_and_contract(http, spec):
    before = int(time.time())
    resp = post_chat(http, chat_body("Hello world"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert int(resp.headers["content-length"]) == len(resp.content)
    body = json.loads(resp.content)
    spec.validate(body, "CreateChatCompletionResponse")

    assert set(body) == RESPONSE_KEYS, body
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) > len("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and before - 1 <= body["created"] <= time.time() + 1
    assert body["model"] == DEFAULT_MODEL
    assert body["system_fingerprint"] == "fp_standin"
    [choice] = body["choices"]
    assert set(choice) == CHOICE_KEYS
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] == "stop"
    assert set(choice["message"]) == MESSAGE_KEYS
    reply = echo_reply("Hello world")
    assert choice["message"] == {"role": "assistant", "content": reply, "refusal": None}
    assert set(body["usage"]) == USAGE_KEYS
    assert body["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": len(tokenize(reply)),
        "total_tokens": 2 + len(tokenize(reply)),
    }
    assert len(tokenize(reply)) == 14


def test_model_is_echoed_from_request(http, spec):
    resp = post_chat(http, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    spec.validate(body, "CreateChatCompletionResponse")
    assert body["model"] == "gpt-4o-mini"


def test_ids_differ_across_requests(http):
    ids = {post_chat(http, chat_body()).json()["id"] for _ in range(5)}
    assert len(ids) == 5, ids


def test_n_choices_validate(http, spec):
    resp = post_chat(http, chat_body("a b", n=3, max_tokens=13))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    spec.validate(body, "CreateChatCompletionResponse")
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    expected = "".join(tokenize(echo_reply("a b"))[:13])
    for choice in body["choices"]:
        assert choice["message"]["content"] == expected
        assert choice["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 39, "total_tokens": 41}


# --- streaming -------------------------------------------------------------------------------

def check_chunks(chunks: list[dict], spec, include_usage=False) -> None:
    for chunk in chunks:
        spec.validate(chunk, "CreateChatCompletionStreamResponse")
        keys = CHUNK_KEYS | ({"usage"} if include_usage else set())
        assert set(chunk) == keys, chunk
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["system_fingerprint"] == "fp_standin"
        for choice in chunk["choices"]:
            assert set(choice) == CHUNK_CHOICE_KEYS, choice
            assert choice["logprobs"] is None
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert len({c["id"] for c in chunks}) == 1, "id differs across chunks"
    assert len({c["created"] for c in chunks}) == 1, "created differs across chunks"
    assert len({c["model"] for c in chunks}) == 1


def test_stream_chunks_match_schema_and_contract(http, spec):
    resp, raw = stream_chat(http, chat_body("Hello world", stream=True))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in resp.headers
    chunks = parse_sse(raw)
    check_chunks(chunks, spec)

    reply_tokens = tokenize(echo_reply("Hello world"))
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    content_chunks = chunks[1:-1]
    assert [c["choices"][0]["delta"] for c in content_chunks] == [{"content": t} for t in reply_tokens]
    assert all(c["choices"][0]["finish_reason"] is None for c in content_chunks)
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]


def test_stream_include_usage(http, spec):
    resp, raw = stream_chat(
        http, chat_body("Hello", stream=True, max_tokens=5, stream_options={"include_usage": True})
    )
    assert resp.status_code == 200
    chunks = parse_sse(raw)
    check_chunks(chunks, spec, include_usage=True)
    *body_chunks, usage_chunk = chunks
    assert all(c["usage"] is None for c in body_chunks), "usage must be null before the last chunk"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
    assert body_chunks[-1]["choices"][0]["finish_reason"] == "length"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in body_chunks)
    assert content == "As a mock AI Assistant,"


def test_stream_include_usage_false_has_no_usage_field(http, spec):
    resp, raw = stream_chat(http, chat_body("Hi", stream=True, stream_options={"include_usage": False}))
    assert resp.status_code == 200
    chunks = parse_sse(raw)
    check_chunks(chunks, spec, include_usage=False)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_n_choices(http, spec):
    resp, raw = stream_chat(http, chat_body("x y", stream=True, n=2))
    assert resp.status_code == 200
    chunks = parse_sse(raw)
    check_chunks(chunks, spec)
    expected = echo_reply("x y")
    for index in (0, 1):
        mine = [ch for c in chunks for ch in c["choices"] if ch["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(ch["delta"].get("content", "") for ch in mine) == expected
        assert [ch["finish_reason"] for ch in mine][-1] == "stop"
        assert all(ch["finish_reason"] is None for ch in mine[:-1])
        assert mine[-1]["delta"] == {}


def test_stream_ids_differ_across_requests(http):
    ids = set()
    for _ in range(3):
        _, raw = stream_chat(http, chat_body(stream=True))
        ids.add(parse_sse(raw)[0]["id"])
    assert len(ids) == 3, ids


def test_stream_and_non_stream_agree(http):
    body = chat_body("The quick  brown\tfox ", stop=["fox"], max_tokens=100)
    full = post_chat(http, body).json()
    _, raw = stream_chat(http, {**body, "stream": True})
    chunks = parse_sse(raw)
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert streamed == full["choices"][0]["message"]["content"] == echo_reply("The quick  brown\t")
    assert chunks[-1]["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"] == "stop"


# --- models ----------------------------------------------------------------------------------

def test_models_list_matches_schema(server_factory, spec):
    srv = server_factory("--models", "alpha,beta-2,gamma.3")
    resp = httpx.get(srv.url("/v1/models"), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = json.loads(resp.content)
    spec.validate(body, "ListModelsResponse")
    assert set(body) == {"object", "data"} and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["alpha", "beta-2", "gamma.3"]
    for model in body["data"]:
        spec.validate(model, "Model")
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and model["owned_by"] == "standin"
        assert isinstance(model["created"], int)


def test_default_models_list(http, spec):
    body = http.get("/v1/models").json()
    spec.validate(body, "ListModelsResponse")
    assert [m["id"] for m in body["data"]] == [DEFAULT_MODEL]


@pytest.mark.parametrize("model_id", [DEFAULT_MODEL, "not-listed-model"])
def test_model_retrieve_matches_schema(http, spec, model_id):
    resp = http.get(f"/v1/models/{model_id}")
    assert resp.status_code == 200, resp.text
    body = json.loads(resp.content)
    spec.validate(body, "Model")
    assert set(body) == {"id", "object", "created", "owned_by"}
    assert body["id"] == model_id and body["object"] == "model" and body["owned_by"] == "standin"


# --- errors ----------------------------------------------------------------------------------

MSG = [{"role": "user", "content": "hi"}]

#: The contract does not say which of the two a field-combination error gets.
VALIDATION_CODES = frozenset({"invalid_value", "invalid_type"})

# (request body, code, param); status 400 for all.
BAD_REQUESTS = [
    pytest.param(b"{not json", "invalid_json", None, id="invalid-json"),
    pytest.param(b"", "invalid_json", None, id="empty-body"),
    pytest.param({"messages": MSG}, "missing_required_parameter", "model", id="missing-model"),
    pytest.param({"model": DEFAULT_MODEL}, "missing_required_parameter", "messages", id="missing-messages"),
    pytest.param({"model": 7, "messages": MSG}, "invalid_type", "model", id="model-number"),
    pytest.param({"model": DEFAULT_MODEL, "messages": "hi"}, "invalid_type", "messages", id="messages-string"),
    pytest.param(
        {"model": DEFAULT_MODEL, "messages": [{"role": "wizard", "content": "x"}]},
        "invalid_value", "messages[0].role", id="bad-role",
    ),
    pytest.param(
        {"model": DEFAULT_MODEL, "messages": [*MSG, *MSG, {"role": "user", "content": 5}]},
        "invalid_type", "messages[2].content", id="content-number",
    ),
    pytest.param({**chat_body(), "temperature": 5}, "invalid_value", "temperature", id="temperature-range"),
    pytest.param({**chat_body(), "temperature": "hot"}, "invalid_type", "temperature", id="temperature-type"),
    pytest.param({**chat_body(), "n": 0}, "invalid_value", "n", id="n-zero"),
    pytest.param({**chat_body(), "n": 1.5}, "invalid_type", "n", id="n-float"),
    pytest.param({**chat_body(), "max_tokens": 0}, "invalid_value", "max_tokens", id="max-tokens-zero"),
    pytest.param({**chat_body(), "stream": "yes"}, "invalid_type", "stream", id="stream-string"),
    pytest.param(
        {**chat_body(), "stream_options": {"include_usage": True}}, VALIDATION_CODES, "stream_options",
        id="stream-options-without-stream",
    ),
]


@pytest.mark.parametrize("body,code,param", BAD_REQUESTS)
def test_bad_request_error_body(http, spec, body, code, param):
    check_error(post_chat(http, body), spec, 400, code, param=param)


def test_json_too_deep(http, spec):
    deep = "[" * 200 + "]" * 200
    body = '{"model":"%s","messages":[{"role":"user","content":"hi"}],"extra":%s}' % (DEFAULT_MODEL, deep)
    check_error(post_chat(http, body), spec, 400, "json_too_deep", param=None)
    # Nesting well under the limit inside an unknown field is ignored.
    shallow = body.replace(deep, "[" * 10 + "]" * 10)
    assert post_chat(http, shallow).status_code == 200


def test_unknown_route(http, spec):
    check_error(http.get("/v1/nope"), spec, 404, "unknown_url")
    check_error(http.post("/v2/chat/completions", content=b"{}"), spec, 404, "unknown_url")


def test_wrong_method(http, spec):
    resp = http.get("/v1/chat/completions")
    check_error(resp, spec, 405, "method_not_allowed")
    assert "POST" in resp.headers["allow"]
    resp = http.delete("/v1/models")
    check_error(resp, spec, 405, "method_not_allowed")
    assert "GET" in resp.headers["allow"]


def test_auth_errors(server_factory, spec):
    srv = server_factory("--api-key", "k1")
    url = srv.url("/v1/chat/completions")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "k1"}, {"authorization": "Basic k1"}):
        resp = httpx.post(url, json=chat_body(), headers=headers, timeout=10)
        check_error(resp, spec, 401, "invalid_api_key")
        assert "k1" not in resp.text
    check_error(httpx.get(srv.url("/v1/models"), timeout=10), spec, 401, "invalid_api_key")
    check_error(httpx.get(srv.url("/v1/models/x"), timeout=10), spec, 401, "invalid_api_key")
    ok = httpx.post(url, json=chat_body(), headers={"authorization": "Bearer k1"}, timeout=10)
    assert ok.status_code == 200
    spec.validate(ok.json(), "CreateChatCompletionResponse")
    health = httpx.get(srv.url("/health"), timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_strict_models_errors(server_factory, spec):
    srv = server_factory("--strict-models", "--models", "m1,m2")
    resp = httpx.post(srv.url("/v1/chat/completions"), json={"model": "m3", "messages": MSG}, timeout=10)
    check_error(resp, spec, 404, "model_not_found", param="model")
    check_error(httpx.get(srv.url("/v1/models/m3"), timeout=10), spec, 404, "model_not_found")
    ok = httpx.get(srv.url("/v1/models/m2"), timeout=10)
    assert ok.status_code == 200
    spec.validate(ok.json(), "Model")


def test_header_too_large(http, spec):
    resp = http.get("/v1/models", headers={"x-big": "a" * 20000})
    check_error(resp, spec, 431, "request_header_fields_too_large")
    resp = http.get("/v1/models", headers={f"x-h{i}": "v" for i in range(80)})
    check_error(resp, spec, 431, "request_header_fields_too_large")


def _raw(resp):
    """Adapts support.RawResponse to what check_error reads."""
    class Adapter:
        status_code = resp.status
        headers = resp.headers
        content = resp.body
        text = resp.body.decode("utf-8", "replace")
    return Adapter()


def test_body_too_large_rejected_before_body(server_factory, spec):
    srv = server_factory("--max-body-bytes", "1024")
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 4096\r\n\r\n"
    ).encode()
    # No body is sent: the contract rejects on Content-Length alone.
    resp = raw_exchange(srv.addr, head)
    check_error(_raw(resp), spec, 413, "request_too_large")
    assert resp.closed


def test_header_timeout(server_factory, spec):
    srv = server_factory("--header-timeout-ms", "300")
    resp = raw_exchange(srv.addr, b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n")
    check_error(_raw(resp), spec, 408, "request_timeout")
    assert resp.closed


def test_body_timeout(server_factory, spec):
    srv = server_factory("--body-timeout-ms", "300")
    data = b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"model\":"
    resp = raw_exchange(srv.addr, data)
    check_error(_raw(resp), spec, 408, "request_timeout")
    assert resp.closed


def test_panic_is_500_and_server_survives(server_factory, spec):
    srv = server_factory("--enable-panic-route")
    resp = httpx.post(srv.url("/debug/panic"), content=b"{}", timeout=10)
    check_error(resp, spec, 500, "internal_error", type_="server_error")
    assert resp.headers.get("connection", "").lower() == "close"
    again = httpx.post(srv.url("/v1/chat/completions"), json=chat_body(), timeout=10)
    assert again.status_code == 200
    spec.validate(again.json(), "CreateChatCompletionResponse")
