"""The upstream fixtures of upstreams.py start, answer the openai SDK (streaming and not), show the shapes
the upstream tests will rely on, and are gone afterwards. No standin here: this only proves the fixtures."""

from __future__ import annotations

import json
import socket

import httpx
import openai
import pytest

from upstreams import (
    LITELLM_REPLY,
    Upstream,
    UpstreamStartError,
    fastapi_echo,
    litellm_proxy,
    sloppy_upstream,
)

MESSAGES = [{"role": "user", "content": "Hello there"}]
ECHO = "As a mock AI Assistant, I can only echo your last message: Hello there"


def client(up: Upstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.api_base, api_key=up.api_key, max_retries=0, timeout=30)


def post(up: Upstream, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"content-type": "application/json", "authorization": f"Bearer {up.api_key}"}
    return httpx.post(up.url("/v1/chat/completions"), content=content, headers=headers, timeout=30, **kwargs)


def sse_events(raw: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [event[len("data: "):] for event in raw.split("\n\n") if event.startswith("data: ")]


def stream_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


# --- LiteLLM --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def litellm():
    with litellm_proxy() as up:
        yield up


def test_litellm_models(litellm):
    ids = [m.id for m in client(litellm).models.list()]
    assert "mock-gpt" in ids and "mock-ratelimit" in ids


def test_litellm_non_streaming(litellm):
    completion = client(litellm).chat.completions.create(model="mock-gpt", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.model == "mock-gpt"
    assert completion.choices[0].message.content == LITELLM_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_litellm_streaming_with_usage(litellm):
    chunks = list(client(litellm).chat.completions.create(
        model="mock-gpt", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert stream_text(chunks) == LITELLM_REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_litellm_raw_stream_ends_with_done(litellm):
    raw = post(litellm, {"model": "mock-gpt", "messages": MESSAGES, "stream": True,
                         "stream_options": {"include_usage": True}}).text
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]) == LITELLM_REPLY
    # Unlike OpenAI (choices: []), LiteLLM's usage chunk keeps one choice with an empty delta and no
    # finish_reason; earlier chunks have no usage key at all.
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}}] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all("usage" not in c for c in chunks[:-1])


def test_litellm_error_shapes(litellm):
    unknown = post(litellm, {"model": "no-such-model", "messages": MESSAGES})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["type"] == "invalid_request_error"
    assert unknown.json()["error"]["code"] == "400"
    assert "Invalid model name" in unknown.json()["error"]["message"]

    malformed = post(litellm, b'{"model": "mock-gpt", "messages": [')
    assert malformed.status_code == 400
    assert malformed.json()["error"]["param"] == "request_body"

    with pytest.raises(openai.RateLimitError) as exc:
        client(litellm).chat.completions.create(model="mock-ratelimit", messages=MESSAGES)
    assert exc.value.status_code == 429
    assert exc.value.body["type"] == "throttling_error"


# --- fastapi_echo (conforming) --------------------------------------------------------------------------

def test_fastapi_echo_answers_the_sdk():
    with fastapi_echo() as up:
        sdk = client(up)
        completion = sdk.chat.completions.create(model="mock-gpt-model", messages=MESSAGES)
        assert completion.choices[0].message.content == ECHO
        assert completion.choices[0].finish_reason == "stop"
        chunks = list(sdk.chat.completions.create(
            model="mock-gpt-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
        assert stream_text(chunks) == ECHO
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == completion.usage.completion_tokens
        port = up.port
    assert refuses(port)


# --- sloppy_upstream (non-conforming) -------------------------------------------------------------------

def test_sloppy_default_quirks():
    with sloppy_upstream() as up:
        assert up.extra["quirks"] == {"no_finish_reason", "no_usage", "trailing_spaces", "no_done", "flat_errors"}
        sdk = client(up)
        completion = sdk.chat.completions.create(model="sloppy-model", messages=MESSAGES)
        assert completion.choices[0].message.content == ECHO + "  "
        raw = post(up, {"model": "sloppy-model", "messages": MESSAGES}).json()
        assert "usage" not in raw and "finish_reason" not in raw["choices"][0]

        chunks = list(sdk.chat.completions.create(
            model="sloppy-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
        assert stream_text(chunks) == ECHO + "  "
        events = sse_events(post(up, {"model": "sloppy-model", "messages": MESSAGES, "stream": True}).text)
        assert "[DONE]" not in events
        assert all("finish_reason" not in json.loads(e)["choices"][0] for e in events)

        unknown = post(up, {"model": "nope", "messages": MESSAGES})
        assert (unknown.status_code, list(unknown.json())) == (404, ["detail"])
        malformed = post(up, b'{"model": ')
        assert (malformed.status_code, list(malformed.json())) == (400, ["detail"])
        forced = post(up, {"model": "error-503", "messages": MESSAGES})
        assert (forced.status_code, list(forced.json())) == (503, ["detail"])
        with pytest.raises(openai.NotFoundError) as exc:
            sdk.chat.completions.create(model="nope", messages=MESSAGES)
        assert exc.value.body == {"detail": "The model 'nope' does not exist"}


def test_sloppy_empty_finish_reason_and_no_quirks():
    with sloppy_upstream(["empty_finish_reason"]) as up:
        completion = client(up).chat.completions.create(model="sloppy-model", messages=MESSAGES)
        assert completion.choices[0].finish_reason == ""
        assert completion.choices[0].message.content == ECHO
        events = sse_events(post(up, {"model": "sloppy-model", "messages": MESSAGES, "stream": True}).text)
        assert events[-1] == "[DONE]"
        assert {json.loads(e)["choices"][0]["finish_reason"] for e in events[:-1]} == {""}

    with sloppy_upstream("none") as up:
        assert up.extra["quirks"] == frozenset()
        sdk = client(up)
        completion = sdk.chat.completions.create(model="sloppy-model", messages=MESSAGES)
        assert (completion.choices[0].finish_reason, completion.usage is not None) == ("stop", True)
        chunks = list(sdk.chat.completions.create(
            model="sloppy-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
        assert stream_text(chunks) == ECHO and chunks[-1].usage is not None
        error = post(up, {"model": "nope", "messages": MESSAGES})
        assert error.json()["error"]["code"] == "model_not_found"


def test_server_is_killed_when_the_body_raises():
    port = None
    with pytest.raises(RuntimeError, match="boom"):
        with sloppy_upstream() as up:
            port = up.port
            assert up.alive()
            raise RuntimeError("boom")
    assert not up.alive() and refuses(port)


def test_a_server_that_dies_at_start_is_reported():
    with pytest.raises(UpstreamStartError, match="exited with"):
        with sloppy_upstream("no_such_quirk"):
            pass
