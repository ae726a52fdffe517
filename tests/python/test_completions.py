"""The legacy `POST /v1/completions` endpoint: the official SDK's
`client.completions.create`, stream and not, plus raw bodies validated against
the spec's `CreateCompletionResponse` (stream events share that shape)."""

from __future__ import annotations

import copy
import json
import time

import httpx
import openai
import pytest
from openai import OpenAI

from support import DEFAULT_MODEL, echo_reply, parse_sse, tokenize

#: Enough tokens that nothing in these tests is cut unless it means to be (the endpoint's default is 16).
ROOMY = 4096


@pytest.fixture(scope="module")
def client(base_url):
    with OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=10) as c:
        yield c


def complete(client, prompt="Hello", **kwargs):
    return client.completions.create(model=DEFAULT_MODEL, prompt=prompt, **kwargs)


def texts_by_index(chunks) -> dict[int, str]:
    """Concatenated text of every choice of an SDK stream."""
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    return texts


def finish_reasons(chunks) -> dict[int, list[str]]:
    reasons: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                reasons.setdefault(choice.index, []).append(choice.finish_reason)
    return reasons


def validate_event(spec, event: dict) -> None:
    """Validates one stream event against `CreateCompletionResponse`.

    The spec does not mark a choice's `finish_reason` nullable, yet OpenAI sends
    `"finish_reason": null` on every event but a choice's last, as we do. We check
    that it is exactly null there, and validate everything else as written.
    """
    instance = copy.deepcopy(event)
    for choice in instance["choices"]:
        if "finish_reason" in choice and choice["finish_reason"] is None:
            choice["finish_reason"] = "stop"
    spec.validate(instance, "CreateCompletionResponse")


# --- the SDK, non-streaming ------------------------------------------------------------------

def test_non_stream(client):
    resp = complete(client, "Hello")
    assert resp.id.startswith("cmpl-") and len(resp.id) == len("cmpl-") + 16
    assert resp.object == "text_completion"
    assert resp.model == DEFAULT_MODEL
    assert resp.system_fingerprint == "fp_standin"
    [choice] = resp.choices
    assert (choice.index, choice.text, choice.finish_reason) == (0, echo_reply("Hello"), "stop")
    assert choice.logprobs is None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (1, 13, 14)


def test_default_max_tokens_is_16(client):
    resp = complete(client, "Say this is a test")
    assert resp.choices[0].text == "".join(tokenize(echo_reply("Say this is a test"))[:16])
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 16


def test_max_tokens_gives_length(client):
    resp = complete(client, "Hello world", max_tokens=3)
    assert (resp.choices[0].text, resp.choices[0].finish_reason) == ("As a mock", "length")
    assert resp.usage.completion_tokens == 3
    chunks = list(complete(client, "Hello world", max_tokens=3, stream=True))
    assert [c.choices[0].text for c in chunks] == ["As", " a", " mock", ""]
    assert finish_reasons(chunks) == {0: ["length"]}
    # Exactly enough is a natural stop.
    assert complete(client, "Hello", max_tokens=13).choices[0].finish_reason == "stop"


def test_stop_sequences(client):
    resp = complete(client, "one two STOP three", stop="STOP", max_tokens=ROOMY)
    assert (resp.choices[0].text, resp.choices[0].finish_reason) == (echo_reply("one two "), "stop")
    resp = complete(client, "one two STOP three", stop=["zzz", "echo"], max_tokens=ROOMY)
    assert resp.choices[0].text == "As a mock AI Assistant, I can only "
    assert resp.usage.completion_tokens == 8
    chunks = list(complete(client, "one two STOP three", stop=["STOP"], max_tokens=ROOMY, stream=True))
    assert texts_by_index(chunks) == {0: echo_reply("one two ")}


def test_prompt_list_and_n(client):
    resp = complete(client, ["first", "second one"], n=2)
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    # OpenAI's order: every choice of the first prompt, then the next prompt's.
    assert [c.text for c in resp.choices] == [echo_reply("first")] * 2 + [echo_reply("second one")] * 2
    assert resp.usage.prompt_tokens == 1 + 2
    assert resp.usage.completion_tokens == 2 * 13 + 2 * 14
    chunks = list(complete(client, ["first", "second one"], n=2, stream=True))
    assert texts_by_index(chunks) == {i: c.text for i, c in enumerate(resp.choices)}
    assert finish_reasons(chunks) == {i: ["stop"] for i in range(4)}


def test_token_prompts(client):
    resp = complete(client, [1212, 318, 257])
    assert resp.choices[0].text == echo_reply("1212 318 257")
    assert resp.usage.prompt_tokens == 3
    resp = complete(client, [[1, 2], [3]])
    assert [c.text for c in resp.choices] == [echo_reply("1 2"), echo_reply("3")]
    assert resp.usage.prompt_tokens == 3


def test_echo(client):
    resp = complete(client, "Hello", echo=True)
    assert resp.choices[0].text == "Hello" + echo_reply("Hello")
    # The echoed prompt is not generated, so it counts as prompt only.
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (1, 13)
    chunks = list(complete(client, "Hello", echo=True, stream=True))
    assert chunks[0].choices[0].text == "Hello"
    assert texts_by_index(chunks) == {0: resp.choices[0].text}
    # max_tokens 0 with echo: the prompt alone, as clients use it to score a prompt.
    resp = complete(client, "just me", echo=True, max_tokens=0)
    assert (resp.choices[0].text, resp.choices[0].finish_reason) == ("just me", "length")
    assert resp.usage.completion_tokens == 0


def test_suffix_and_sampling_fields_accepted(client):
    resp = complete(
        client,
        "bounds",
        suffix="after",
        temperature=2,
        top_p=0,
        n=3,
        best_of=5,
        frequency_penalty=-2,
        presence_penalty=2,
        logprobs=5,
        seed=-5,
        user="u-1",
        logit_bias={"50256": -100},
        stop=["QQ1", "QQ2", "QQ3", "QQ4"],
        extra_body={"unknown_field": {"nested": [1, 2]}},
    )
    assert [c.text for c in resp.choices] == [echo_reply("bounds")] * 3


# --- the SDK, streaming ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "text",
    ["Hello", "  leading spaces", "trailing spaces   ", "tabs\tand\nnewlines\n\n", "ünïcödé 漢字 🎉 emoji", "a " * 500],
)
def test_stream_concatenation_equals_non_stream(client, text):
    full = complete(client, text, max_tokens=ROOMY)
    chunks = list(complete(client, text, max_tokens=ROOMY, stream=True))
    assert texts_by_index(chunks) == {0: full.choices[0].text}
    assert full.choices[0].text == echo_reply(text)
    token_texts = [c.choices[0].text for c in chunks[:-1]]
    assert token_texts == tokenize(echo_reply(text))
    assert full.usage.completion_tokens == len(token_texts)
    assert all(c.id == chunks[0].id and c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices[0].text == "" and chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)


def test_stream_include_usage(client):
    chunks = list(complete(client, "count me", stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (2, 14, 16)
    assert all(c.usage is None and c.choices for c in chunks[:-1])
    assert texts_by_index(chunks) == {0: echo_reply("count me")}


# --- raw bodies against the spec -------------------------------------------------------------

def post(http, body, headers=None) -> httpx.Response:
    return http.post("/v1/completions", content=json.dumps(body), headers={"content-type": "application/json", **(headers or {})})


def stream_events(http, body) -> tuple[httpx.Response, list[dict]]:
    with http.stream(
        "POST", "/v1/completions", content=json.dumps(body), headers={"content-type": "application/json"}
    ) as resp:
        raw = b"".join(resp.iter_raw())
    return resp, parse_sse(raw)


def test_json_matches_schema(http, spec):
    resp = post(http, {"model": DEFAULT_MODEL, "prompt": ["a b", "c"], "n": 2, "max_tokens": 13, "echo": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    spec.validate(body, "CreateCompletionResponse")
    assert list(body) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
    assert body["choices"][0] == {
        "text": "a b" + "".join(tokenize(echo_reply("a b"))[:13]),
        "index": 0,
        "logprobs": None,
        "finish_reason": "length",
    }
    assert body["choices"][3]["text"] == "c" + echo_reply("c")
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 52, "total_tokens": 55}


def test_stream_events_match_schema(http, spec):
    body = {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": ["Hello world", "x"],
        "n": 2,
        "stream": True,
        "echo": True,
        "stream_options": {"include_usage": True},
    }
    resp, events = stream_events(http, body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    for event in events:
        validate_event(spec, event)
        assert event["object"] == "text_completion"
        assert event["model"] == "gpt-3.5-turbo-instruct"
        assert event["system_fingerprint"] == "fp_standin"
    assert len({e["id"] for e in events}) == 1 and events[0]["id"].startswith("cmpl-")
    assert len({e["created"] for e in events}) == 1
    *choice_events, usage = events
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens"] == 3
    assert all("usage" not in e and len(e["choices"]) == 1 for e in choice_events)
    texts: dict[int, str] = {}
    for event in choice_events:
        choice = event["choices"][0]
        assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {0: "Hello world" + echo_reply("Hello world"), 1: "Hello world" + echo_reply("Hello world"),
                     2: "x" + echo_reply("x"), 3: "x" + echo_reply("x")}
    finals = [e["choices"][0] for e in choice_events if e["choices"][0]["finish_reason"]]
    assert finals == [{"text": "", "index": i, "logprobs": None, "finish_reason": "stop"} for i in range(4)]


def test_json_waits_for_the_last_token_and_streams_are_paced(http):
    headers = {"x-standin-ttft-ms": "150", "x-standin-itl-ms": "20"}
    started = time.monotonic()
    resp = post(http, {"model": DEFAULT_MODEL, "prompt": "Hello", "max_tokens": 3}, headers)
    assert resp.status_code == 200 and resp.json()["choices"][0]["text"] == "As a mock"
    assert time.monotonic() - started >= 0.15 + 2 * 0.02
    started = time.monotonic()
    arrivals = []
    body = {"model": DEFAULT_MODEL, "prompt": "Hello", "max_tokens": 3, "stream": True}
    with http.stream("POST", "/v1/completions", content=json.dumps(body), headers=headers) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 5  # 3 tokens, the finish event, [DONE]
    assert arrivals[0] >= 0.15
    assert arrivals[2] >= 0.15 + 2 * 0.02


# --- errors ----------------------------------------------------------------------------------

BAD = [
    ({"n": 0}, "n", "invalid_value"),
    ({"n": 129}, "n", "invalid_value"),
    ({"n": "2"}, "n", "invalid_type"),
    ({"max_tokens": -1}, "max_tokens", "invalid_value"),
    ({"max_tokens": 1.5}, "max_tokens", "invalid_type"),
    ({"temperature": 5}, "temperature", "invalid_value"),
    ({"top_p": "1"}, "top_p", "invalid_type"),
    ({"presence_penalty": -3}, "presence_penalty", "invalid_value"),
    ({"frequency_penalty": 2.5}, "frequency_penalty", "invalid_value"),
    ({"logprobs": 6}, "logprobs", "invalid_value"),
    ({"best_of": 21}, "best_of", "invalid_value"),
    ({"n": 3, "best_of": 2}, "best_of", "invalid_value"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    ({"stop": ["a", 1]}, "stop[1]", "invalid_type"),
    ({"echo": "yes"}, "echo", "invalid_type"),
    ({"suffix": 1}, "suffix", "invalid_type"),
    ({"seed": 1.5}, "seed", "invalid_type"),
    ({"user": 5}, "user", "invalid_type"),
    ({"logit_bias": {"1": 101}}, "logit_bias", "invalid_value"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({"prompt": 5}, "prompt", "invalid_type"),
    ({"prompt": []}, "prompt", "invalid_value"),
    ({"prompt": ["a", 1]}, "prompt[1]", "invalid_type"),
    ({"prompt": [1, -2]}, "prompt[1]", "invalid_value"),
    ({"prompt": [[1], [2, "x"]]}, "prompt[1][1]", "invalid_type"),
    ({"model": ["a"]}, "model", "invalid_type"),
]


@pytest.mark.parametrize("extra,param,code", BAD, ids=lambda v: v if isinstance(v, str) else None)
def test_bad_request(client, spec, extra, param, code):
    with pytest.raises(openai.BadRequestError) as exc:
        complete(client, "x", extra_body=extra)
    assert exc.value.status_code == 400
    assert (exc.value.body["param"], exc.value.body["code"]) == (param, code), exc.value.body
    assert exc.value.body["type"] == "invalid_request_error"
    spec.validate({"error": exc.value.body}, "ErrorResponse")
    # A streaming request is refused the same way, before any event.
    if "stream_options" not in extra:
        with pytest.raises(openai.BadRequestError) as exc:
            complete(client, "x", stream=True, extra_body=extra)
        assert exc.value.body["param"] == param


def test_missing_model_and_bad_json(http):
    resp = post(http, {"prompt": "x"})
    assert resp.status_code == 400
    assert (resp.json()["error"]["param"], resp.json()["error"]["code"]) == ("model", "missing_required_parameter")
    resp = http.post("/v1/completions", content=b"{", headers={"content-type": "application/json"})
    assert (resp.status_code, resp.json()["error"]["code"]) == (400, "invalid_json")


def test_missing_prompt_is_the_document_separator(http):
    body = post(http, {"model": DEFAULT_MODEL}).json()
    assert body["choices"][0]["text"] == echo_reply("<|endoftext|>")


def test_strict_models(server_factory):
    srv = server_factory("--strict-models")
    with OpenAI(base_url=srv.base_url + "/v1", api_key="k", max_retries=0, timeout=20) as c:
        assert complete(c, "ok").choices[0].text == echo_reply("ok")
        with pytest.raises(openai.NotFoundError) as exc:
            c.completions.create(model="davinci-002", prompt="x")
        assert exc.value.body["code"] == "model_not_found"
