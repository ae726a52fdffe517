"""Stream failures (`x-standin-fail`) on the legacy `POST /v1/completions` endpoint, seen through the real openai
SDK's `client.completions.create(..., stream=True)`: the same kinds and the same SDK exceptions as the chat
endpoint (`test_failures.py`). Every event that arrives is validated against the spec's
`CreateCompletionResponse` (stream events share that shape).

What the SDK (openai 3.x) does, as observed and asserted here:
- `stream-error`: the `{"error": …}` event raises `openai.APIError` (not a subclass) mid-iteration;
- `stream-cut:K`: after K token events the SDK's HTTP client (httpx2 in openai 3.x) raises `RemoteProtocolError`
  (incomplete chunked read), which the SDK wraps as `openai.APIConnectionError` mid-iteration;
- `stream-stall`: after the first token the read times out: `openai.APITimeoutError`;
- `no-done`: nothing is raised; the iteration ends at the end of the body with every event delivered.
"""

from __future__ import annotations

import copy
import json

import httpx
import openai
import pytest
from openai import OpenAI

from support import DEFAULT_MODEL, echo_reply, tokenize

ROOMY = 4096
FAULT = "x-standin-fail"


def client_for(base_url: str, timeout: float = 10.0) -> OpenAI:
    return OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=timeout)


def validate_event(spec, event: dict) -> None:
    """`CreateCompletionResponse` for one stream event; `finish_reason` is null on all but a choice's last event
    (as on OpenAI), which the spec does not allow, so that one value is checked to be null and replaced."""
    instance = copy.deepcopy(event)
    for choice in instance["choices"]:
        if "finish_reason" in choice and choice["finish_reason"] is None:
            choice["finish_reason"] = "stop"
    spec.validate(instance, "CreateCompletionResponse")


def stream(client: OpenAI, fail: str | None, prompt="Hello", headers=None, **kwargs):
    all_headers = {**({FAULT: fail} if fail else {}), **(headers or {})}
    return client.completions.create(
        model=DEFAULT_MODEL, prompt=prompt, stream=True, extra_headers=all_headers, **kwargs
    )


def collect(spec, events, into: list) -> None:
    """Iterates an SDK stream, validating each event and appending (index, text, finish_reason) per choice to
    `into` as it arrives, so the caller still sees what came before an exception."""
    for event in events:
        validate_event(spec, event.to_dict())
        assert event.object == "text_completion"
        for choice in event.choices:
            into.append((choice.index, choice.text, choice.finish_reason))


def texts(received) -> list[str]:
    return [text for _, text, _ in received]


#: Paced and instant streams take different write paths (flush before every wait vs one buffered body).
PACING = {"instant": {}, "paced": {"x-standin-ttft-ms": "20", "x-standin-itl-ms": "20"}}


# --- stream-error -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pacing", PACING)
def test_stream_error_event_raises_api_error_mid_stream(base_url, spec, pacing):
    received = []
    with pytest.raises(openai.APIError) as caught:
        collect(spec, stream(client_for(base_url), "stream-error", headers=PACING[pacing]), received)
    error = caught.value
    # The error event itself, not an HTTP status: the response was a 200.
    assert type(error) is openai.APIError
    assert "server had an error" in error.message
    assert error.code == "stream_error" and error.type == "server_error"
    spec.validate({"error": error.body}, "ErrorResponse")
    # The first token arrived before the error, and nothing else.
    assert received == [(0, "As", None)]


def test_stream_error_after_the_echoed_prompt(base_url, spec):
    received = []
    with pytest.raises(openai.APIError):
        collect(spec, stream(client_for(base_url), "stream-error", prompt="Hi there", echo=True, n=2), received)
    # Step 0 of every choice: the echoed prompt, then the first token.
    assert received == [(0, "Hi there", None), (1, "Hi there", None), (0, "As", None), (1, "As", None)]


def test_stream_error_raw_body_ends_without_done(base_url, spec):
    body = {"model": DEFAULT_MODEL, "prompt": "Hello", "stream": True}
    raw = httpx.post(base_url + "/v1/completions", json=body, headers={FAULT: "stream-error"})
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    payloads = [json.loads(e[len("data: "):]) for e in events]
    assert [p["choices"][0]["text"] for p in payloads[:-1]] == ["As"]
    assert list(payloads[-1]) == ["error"]
    spec.validate(payloads[-1], "ErrorResponse")
    assert "[DONE]" not in raw.text


# --- stream-cut:K -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pacing", PACING)
@pytest.mark.parametrize("k", [0, 1, 3, 12])
def test_stream_cut_after_k_token_events(base_url, spec, pacing, k):
    received = []
    with pytest.raises(openai.APIConnectionError) as caught:
        collect(spec, stream(client_for(base_url), f"stream-cut:{k}", headers=PACING[pacing]), received)
    # The SDK's own HTTP client (httpx2 in openai 3.x) saw the body end mid-chunk.
    cause = caught.value.__cause__
    assert type(cause).__name__ == "RemoteProtocolError" and "peer closed connection" in str(cause), repr(cause)
    # Exactly K token events, the reply's first K tokens, and no finish event.
    assert texts(received) == tokenize(echo_reply("Hello"))[:k]
    assert all(finish is None for _, _, finish in received)


def test_stream_cut_counts_steps_of_every_choice(base_url, spec):
    received = []
    with pytest.raises(openai.APIConnectionError):
        collect(spec, stream(client_for(base_url), "stream-cut:2", prompt=["one", "two"], n=2), received)
    # K token events per choice (4 choices: 2 prompts × n=2), as the chat endpoint cuts every choice at step K.
    by_choice: dict[int, list[str]] = {}
    for index, text, _ in received:
        by_choice.setdefault(index, []).append(text)
    assert by_choice == {i: ["As", " a"] for i in range(4)}


def test_stream_cut_of_a_synthetic_model_keeps_a_prefix(server_factory, spec):
    srv = server_factory("--models", json.dumps([{"name": "syn", "kind": "synthetic", "output_tokens": 20}]))
    with client_for(srv.base_url) as c:
        full = c.completions.create(model="syn", prompt="cut me", seed=3, max_tokens=ROOMY).choices[0].text
        received = []
        with pytest.raises(openai.APIConnectionError):
            events = c.completions.create(
                model="syn", prompt="cut me", seed=3, max_tokens=ROOMY, stream=True,
                extra_headers={FAULT: "stream-cut:5"},
            )
            collect(spec, events, received)
    assert texts(received) == tokenize(full)[:5]


def test_stream_cut_raw_body_drops_mid_body(base_url):
    body = {"model": DEFAULT_MODEL, "prompt": "Hello", "stream": True}
    got = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", base_url + "/v1/completions", json=body, headers={FAULT: "stream-cut:2"}) as resp:
            assert resp.status_code == 200
            for part in resp.iter_raw():
                got += part
    events = [e for e in got.decode().split("\n\n") if e]
    assert [json.loads(e[len("data: "):])["choices"][0]["text"] for e in events] == ["As", " a"]


# --- stream-stall -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pacing", PACING)
def test_stream_stall_times_out_mid_stream(base_url, spec, pacing):
    received = []
    with pytest.raises(openai.APITimeoutError):
        collect(spec, stream(client_for(base_url, timeout=0.5), "stream-stall", headers=PACING[pacing]), received)
    assert received == [(0, "As", None)]


# --- no-done ------------------------------------------------------------------------------------------------

def test_no_done_stream_is_complete_but_lacks_done(base_url, spec):
    body = {"model": DEFAULT_MODEL, "prompt": "Hello", "stream": True, "max_tokens": ROOMY}
    raw = httpx.post(base_url + "/v1/completions", json=body, headers={FAULT: "no-done"})
    assert raw.status_code == 200
    assert "[DONE]" not in raw.text
    assert raw.text.endswith('"finish_reason":"stop"}]}\n\n')
    # The SDK raises nothing and delivers the whole reply: it stops at the end of the body.
    received = []
    collect(spec, stream(client_for(base_url), "no-done", max_tokens=ROOMY), received)
    assert "".join(texts(received)) == echo_reply("Hello")
    assert received[-1] == (0, "", "stop")


def test_no_done_keeps_the_usage_event(base_url, spec):
    events = stream(client_for(base_url), "no-done", prompt="count me", stream_options={"include_usage": True})
    chunks = list(events)
    for chunk in chunks:
        validate_event(spec, chunk.to_dict())
    *choice_events, usage = chunks
    assert usage.choices == []
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (2, 14)
    received = [c.choices[0].text for c in choice_events]
    assert "".join(received) == echo_reply("count me")


# --- the same kinds elsewhere -------------------------------------------------------------------------------

@pytest.mark.parametrize("fail", ["stream-error", "stream-cut:1", "stream-stall", "no-done"])
def test_non_streaming_request_ignores_stream_faults(base_url, spec, fail):
    raw = httpx.post(
        base_url + "/v1/completions",
        json={"model": DEFAULT_MODEL, "prompt": "Hello", "max_tokens": ROOMY},
        headers={FAULT: fail},
        timeout=10,
    )
    assert raw.status_code == 200
    spec.validate(raw.json(), "CreateCompletionResponse")
    resp = client_for(base_url).completions.create(
        model=DEFAULT_MODEL, prompt="Hello", max_tokens=ROOMY, extra_headers={FAULT: fail}
    )
    assert (resp.choices[0].text, resp.choices[0].finish_reason) == (echo_reply("Hello"), "stop")


@pytest.mark.parametrize(
    "fail, exception, status",
    [("429", openai.RateLimitError, 429), ("500", openai.InternalServerError, 500), ("404", openai.NotFoundError, 404)],
)
def test_pre_response_faults_raise_before_a_stream_starts(base_url, spec, fail, exception, status):
    with pytest.raises(exception) as caught:
        stream(client_for(base_url), fail)
    assert caught.value.status_code == status
    spec.validate(caught.value.response.json(), "ErrorResponse")


def test_unknown_kind_is_a_bad_request(base_url):
    with pytest.raises(openai.BadRequestError) as caught:
        stream(client_for(base_url), "stream-cut:x")
    assert FAULT in caught.value.message


def test_fail_rate_injects_stream_faults_into_legacy_streams(server_factory, spec):
    srv = server_factory("--fail-rate", "stream-cut:2=1")
    with client_for(srv.base_url) as c:
        received = []
        with pytest.raises(openai.APIConnectionError):
            collect(spec, stream(c, None), received)
        assert texts(received) == ["As", " a"]
        # A JSON answer ignores it.
        resp = c.completions.create(model=DEFAULT_MODEL, prompt="Hello", max_tokens=ROOMY)
        assert resp.choices[0].text == echo_reply("Hello")


def test_server_keeps_serving_after_every_legacy_fault(base_url, spec):
    c = client_for(base_url, timeout=0.5)
    for fail in ["stream-error", "stream-cut:1", "stream-stall"]:
        with pytest.raises(openai.APIError):
            list(stream(c, fail))
    received = []
    collect(spec, stream(client_for(base_url), None, prompt="still here", max_tokens=ROOMY), received)
    assert "".join(texts(received)) == echo_reply("still here")
