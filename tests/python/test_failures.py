"""Failure injection (`x-standin-fail`) seen through the real openai SDK: each kind raises the exception a
user of the SDK would catch in a real outage, and error bodies match the spec's ErrorResponse."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI

from support import DEFAULT_MODEL, user


def client_for(base_url: str, timeout: float = 10.0, retries: int = 0) -> OpenAI:
    return OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=retries, timeout=timeout)


def create(client: OpenAI, fail: str, **kwargs):
    return client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[user("Hello")],
        extra_headers={"x-standin-fail": fail},
        **kwargs,
    )


@pytest.mark.parametrize(
    "fail, exception, status, code",
    [
        ("429", openai.RateLimitError, 429, "rate_limit_exceeded"),
        ("500", openai.InternalServerError, 500, "internal_error"),
        ("503", openai.InternalServerError, 503, "service_unavailable"),
        ("context_length", openai.BadRequestError, 400, "context_length_exceeded"),
        ("401", openai.AuthenticationError, 401, "invalid_api_key"),
        ("404", openai.NotFoundError, 404, "model_not_found"),
    ],
)
def test_error_kinds_raise_the_sdk_exception(base_url, spec, fail, exception, status, code):
    with pytest.raises(exception) as caught:
        create(client_for(base_url), fail)
    assert caught.value.status_code == status
    assert caught.value.code == code
    body = caught.value.response.json()
    spec.validate(body, "ErrorResponse")
    assert caught.value.response.headers["x-request-id"]


def test_429_carries_retry_headers(base_url):
    resp = httpx.post(
        base_url + "/v1/chat/completions",
        json={"model": DEFAULT_MODEL, "messages": [user("x")]},
        headers={"x-standin-fail": "429"},
    )
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "1"
    assert resp.headers["retry-after-ms"] == "1000"
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    for name in ["limit-requests", "reset-requests", "limit-tokens", "remaining-tokens", "reset-tokens"]:
        assert resp.headers[f"x-ratelimit-{name}"]


def test_sdk_retries_a_429_after_retry_after(base_url):
    # With retries on, the SDK waits retry-after-ms (1 s) and tries again: both attempts get the 429.
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        create(client_for(base_url, retries=1), "429")
    assert time.monotonic() - started >= 0.9


def test_reset_is_a_connection_error(base_url):
    with pytest.raises(openai.APIConnectionError):
        create(client_for(base_url), "reset")


def test_stall_times_out(base_url):
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        create(client_for(base_url, timeout=0.5), "stall")
    assert time.monotonic() - started < 5


def test_stream_error_event_raises_api_error_mid_stream(base_url):
    stream = create(client_for(base_url), "stream-error", stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert "server had an error" in str(caught.value)
    # The role chunk and the first token arrived before the error.
    assert [c.choices[0].delta.content for c in received] == ["", "As"]


def test_stream_cut_after_k_chunks_breaks_the_iteration(base_url):
    stream = create(client_for(base_url), "stream-cut:3", stream=True)
    received = []
    with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "As", " a", " mock"]


def test_stream_stall_times_out_mid_stream(base_url):
    stream = create(client_for(base_url, timeout=0.5), "stream-stall", stream=True)
    received = []
    with pytest.raises((openai.APITimeoutError, httpx.TimeoutException)):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "As"]


def test_no_done_stream_is_complete_but_lacks_done(base_url):
    body = {"model": DEFAULT_MODEL, "messages": [user("Hello")], "stream": True}
    raw = httpx.post(base_url + "/v1/chat/completions", json=body, headers={"x-standin-fail": "no-done"})
    assert raw.status_code == 200
    assert "data: [DONE]" not in raw.text
    assert '"finish_reason":"stop"' in raw.text
    # The SDK still delivers the whole reply: it stops at the end of the body.
    stream = create(client_for(base_url), "no-done", stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text.endswith("echo your last message: Hello")


def test_unknown_kind_is_a_bad_request(base_url):
    with pytest.raises(openai.BadRequestError) as caught:
        create(client_for(base_url), "teapot")
    assert "x-standin-fail" in str(caught.value)


def test_server_keeps_serving_after_every_fault(base_url):
    for fail in ["reset", "stream-cut:1"]:
        with pytest.raises(Exception):
            list(create(client_for(base_url), fail, stream=True))
    reply = client_for(base_url).chat.completions.create(model=DEFAULT_MODEL, messages=[user("still here")])
    assert reply.choices[0].message.content.endswith("still here")


def test_pre_response_faults_apply_to_completions_and_embeddings(base_url):
    client = client_for(base_url)
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model=DEFAULT_MODEL, prompt="hi", extra_headers={"x-standin-fail": "429"})
    with pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model=DEFAULT_MODEL, input="hi", extra_headers={"x-standin-fail": "503"})
    assert caught.value.status_code == 503
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model=DEFAULT_MODEL, input="hi", extra_headers={"x-standin-fail": "reset"})
