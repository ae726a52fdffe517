"""Models declared by configuration, seen through the real `openai` SDK: `--models` as a JSON array of names and
declarations, `--config FILE`, `--alias`, `--kind`/`--output-tokens` defaults, the synthetic model's seeded text
and output-length rules, the `x-standin-output-tokens` header, and each model's latency profile and admission
queue (`max_concurrent` / `max_waiting`, 503 `overloaded` past it).

Every SDK response and stream chunk is validated against the OpenAI spec. Timing checks use lower bounds only
(a server sleep cannot be beaten by a fast machine); nothing asserts that something was fast.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from support import echo_reply, tokenize, user

#: Declared models of the main server: a synthetic model with a range and a declared alias, an echo model by
#: name only, a fixed-length synthetic model, and one following the request's max_tokens (fallback 5).
MODELS = [
    {"name": "syn", "kind": "synthetic", "output_tokens": "8-16", "aliases": ["gpt-4o"]},
    "plain",
    {"name": "fixed", "kind": "synthetic", "output_tokens": 7},
    {"name": "capped", "kind": "synthetic", "output_tokens": "max_tokens:5"},
]
CATALOG_FLAGS = ("--models", json.dumps(MODELS), "--alias", "old-echo=plain", "--alias", "gpt-4o-mini=syn")
#: Enough tokens that the legacy endpoint (default max_tokens 16) cuts nothing unless a test means it to.
ROOMY = 4096
#: How long a test waits for a state it polls for (a deadline against hangs, not a timing assertion).
POLL_DEADLINE_S = 10.0


def client_for(srv, timeout: float = 20.0) -> OpenAI:
    return OpenAI(base_url=srv.base_url + "/v1", api_key="sk-test", max_retries=0, timeout=timeout)


def words(text: str) -> int:
    """The token count by the contract's rule: whitespace-separated words."""
    return len(text.split())


# --- SDK calls, every body validated against the spec --------------------------------------------------------

def chat(client, spec, model, text="Hello", headers=None, **kwargs):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[user(text)], extra_headers=headers or {}, **kwargs
    )
    spec.validate(json.loads(raw.http_response.content), "CreateChatCompletionResponse")
    resp = raw.parse()
    assert words(resp.choices[0].message.content) == resp.usage.completion_tokens, resp
    return resp


def chat_stream(client, spec, model, text="Hello", headers=None, **kwargs):
    """(content, token deltas, finish reason, chunks) of a streamed chat completion."""
    stream = client.chat.completions.create(
        model=model, messages=[user(text)], stream=True, extra_headers=headers or {}, **kwargs
    )
    chunks = list(stream)
    for chunk in chunks:
        spec.validate(chunk.to_dict(), "CreateChatCompletionStreamResponse")
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1, finishes
    return "".join(deltas), deltas, finishes[0], chunks


def validate_completion_event(spec, event: dict) -> None:
    """`CreateCompletionResponse` for a legacy stream event; the spec does not mark `finish_reason` nullable,
    yet every event but a choice's last carries `null` there (as OpenAI's do)."""
    instance = copy.deepcopy(event)
    for choice in instance["choices"]:
        if choice.get("finish_reason", "x") is None:
            choice["finish_reason"] = "stop"
    spec.validate(instance, "CreateCompletionResponse")


def complete(client, spec, model, prompt="Hello", headers=None, **kwargs):
    raw = client.completions.with_raw_response.create(
        model=model, prompt=prompt, extra_headers=headers or {}, **kwargs
    )
    spec.validate(json.loads(raw.http_response.content), "CreateCompletionResponse")
    resp = raw.parse()
    assert words(resp.choices[0].text) == resp.usage.completion_tokens, resp
    return resp


def complete_stream(client, spec, model, prompt="Hello", headers=None, **kwargs):
    """(text, token events, finish reason, chunks) of a streamed legacy completion."""
    stream = client.completions.create(
        model=model, prompt=prompt, stream=True, extra_headers=headers or {}, **kwargs
    )
    chunks = list(stream)
    for chunk in chunks:
        validate_completion_event(spec, chunk.to_dict())
    pieces = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1, finishes
    return "".join(pieces), pieces, finishes[0], chunks


def metric(srv, name: str) -> int:
    """The value of a vLLM gauge on /metrics (labelled with the first model's name)."""
    text = httpx.get(srv.url("/metrics"), timeout=5).text
    match = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} (-?\d+)$", text, re.M)
    assert match, f"{name} not on /metrics:\n{text}"
    return int(match.group(1))


def wait_for(condition, what: str):
    deadline = time.monotonic() + POLL_DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out after {POLL_DEADLINE_S}s waiting for {what}")


@pytest.fixture(scope="module")
def catalog(server_factory):
    return server_factory(*CATALOG_FLAGS)


@pytest.fixture(scope="module")
def client(catalog):
    with client_for(catalog) as c:
        yield c


# --- the catalog: names, aliases, unknown names ---------------------------------------------------------------

def test_models_lists_names_then_aliases(client, catalog, spec):
    body = httpx.get(catalog.url("/v1/models")).json()
    spec.validate(body, "ListModelsResponse")
    # Names in declaration order, then the declared aliases, then the --alias ones.
    expected = ["syn", "plain", "fixed", "capped", "gpt-4o", "old-echo", "gpt-4o-mini"]
    assert [m["id"] for m in body["data"]] == expected
    assert [m.id for m in client.models.list()] == expected
    for name in ["syn", "gpt-4o", "old-echo"]:
        got = client.models.retrieve(name)
        spec.validate(got.to_dict(), "Model")
        assert (got.id, got.object, got.owned_by) == (name, "model", "standin")


def test_alias_answers_with_the_target_name(client, spec):
    by_name = chat(client, spec, "syn", "alias me", seed=11)
    for alias in ["gpt-4o", "gpt-4o-mini"]:
        by_alias = chat(client, spec, alias, "alias me", seed=11)
        assert by_alias.model == "syn"
        assert by_alias.choices[0].message.content == by_name.choices[0].message.content
        text, _, _, chunks = chat_stream(client, spec, alias, "alias me", seed=11)
        assert {c.model for c in chunks} == {"syn"}
        assert text == by_name.choices[0].message.content
        legacy = complete(client, spec, alias, "alias me", seed=11, max_tokens=ROOMY)
        assert legacy.model == "syn"
        assert legacy.choices[0].text == by_name.choices[0].message.content
    echoed = chat(client, spec, "old-echo", "via alias")
    assert (echoed.model, echoed.choices[0].message.content) == ("plain", echo_reply("via alias"))


def test_echo_model_is_the_seed_echo(client, spec):
    resp = chat(client, spec, "plain", "Hello")
    assert resp.choices[0].message.content == echo_reply("Hello")
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.choices[0].finish_reason) == (1, 13, "stop")
    legacy = complete(client, spec, "plain", "Hello", max_tokens=ROOMY)
    assert legacy.choices[0].text == echo_reply("Hello")


def test_unknown_model_is_served_by_the_first_under_its_own_name(client, spec):
    first = chat(client, spec, "syn", "who answers", seed=4)
    resp = chat(client, spec, "not-declared", "who answers", seed=4)
    assert resp.model == "not-declared"
    assert resp.choices[0].message.content == first.choices[0].message.content
    assert not resp.choices[0].message.content.startswith("As a mock")
    _, _, _, chunks = chat_stream(client, spec, "not-declared", "who answers", seed=4)
    assert {c.model for c in chunks} == {"not-declared"}
    legacy = complete(client, spec, "davinci-002", "who answers", seed=4, max_tokens=ROOMY)
    assert (legacy.model, legacy.choices[0].text) == ("davinci-002", first.choices[0].message.content)


def test_strict_models_refuses_unknown_names_only(server_factory, spec):
    srv = server_factory(*CATALOG_FLAGS, "--strict-models")
    with client_for(srv) as c:
        for call in [
            lambda: c.chat.completions.create(model="not-declared", messages=[user("x")]),
            lambda: c.chat.completions.create(model="not-declared", messages=[user("x")], stream=True),
            lambda: c.completions.create(model="not-declared", prompt="x"),
            lambda: c.models.retrieve("not-declared"),
        ]:
            with pytest.raises(openai.NotFoundError) as caught:
                call()
            assert caught.value.status_code == 404
            assert caught.value.code == "model_not_found"
            spec.validate(caught.value.response.json(), "ErrorResponse")
        # Names and both kinds of alias still answer.
        assert chat(c, spec, "gpt-4o", "ok", seed=1).model == "syn"
        assert chat(c, spec, "old-echo", "ok").choices[0].message.content == echo_reply("ok")
        assert complete(c, spec, "fixed", "ok").model == "fixed"


# --- the synthetic model --------------------------------------------------------------------------------------

def test_synthetic_is_reproducible_with_a_seed(client, spec):
    resp = chat(client, spec, "syn", "tell me something", seed=42)
    text = resp.choices[0].message.content
    assert not text.startswith("As a mock") and text.endswith(".")
    assert chat(client, spec, "syn", "tell me something", seed=42).choices[0].message.content == text
    streamed, deltas, finish, _ = chat_stream(client, spec, "syn", "tell me something", seed=42)
    assert streamed == text
    assert deltas == tokenize(text)
    assert finish == resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens == len(deltas) == words(text)
    # The legacy endpoint draws the same words for the same prompt and seed.
    legacy = complete(client, spec, "syn", "tell me something", seed=42, max_tokens=ROOMY)
    assert legacy.choices[0].text == text
    legacy_streamed, pieces, _, _ = complete_stream(client, spec, "syn", "tell me something", seed=42, max_tokens=ROOMY)
    assert legacy_streamed == text and pieces == tokenize(text)


def test_synthetic_concurrent_requests_agree_async(catalog):
    async def run():
        async with AsyncOpenAI(base_url=catalog.base_url + "/v1", api_key="k", max_retries=0, timeout=30) as ac:
            same = await asyncio.gather(*[
                ac.chat.completions.create(model="syn", messages=[user("together")], seed=9) for _ in range(20)
            ])
            streams = await asyncio.gather(*[
                ac.chat.completions.create(model="syn", messages=[user("together")], seed=9, stream=True)
                for _ in range(5)
            ])
            streamed = []
            for stream in streams:
                streamed.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
            return [r.choices[0].message.content for r in same], streamed

    texts, streamed = asyncio.run(run())
    assert len(set(texts)) == 1
    assert streamed == texts[:5]


def test_different_seeds_give_different_text(client, spec):
    texts = [chat(client, spec, "fixed", "same prompt", seed=seed).choices[0].message.content for seed in range(1, 9)]
    assert len(set(texts)) == len(texts), texts
    # ... all of the model's fixed length.
    assert {words(t) for t in texts} == {7}
    # The prompt seeds the words too.
    other = chat(client, spec, "fixed", "other prompt", seed=1).choices[0].message.content
    assert other != texts[0]


def test_range_lengths_stay_inside_the_range(client, spec):
    lengths = []
    for seed in range(40):
        resp = chat(client, spec, "syn", "how long", seed=seed)
        assert resp.choices[0].finish_reason == "stop"
        lengths.append(resp.usage.completion_tokens)
    assert all(8 <= n <= 16 for n in lengths), lengths
    assert len(set(lengths)) > 1, lengths
    for seed in range(10):
        legacy = complete(client, spec, "syn", "how long", seed=seed, max_tokens=ROOMY)
        assert 8 <= legacy.usage.completion_tokens <= 16


def test_fixed_length_is_cut_by_max_tokens(client, spec):
    resp = chat(client, spec, "fixed", "x", seed=3, max_tokens=100)
    assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (7, "stop")
    cut = chat(client, spec, "fixed", "x", seed=3, max_tokens=3)
    assert (cut.usage.completion_tokens, cut.choices[0].finish_reason) == (3, "length")
    assert cut.choices[0].message.content == "".join(tokenize(resp.choices[0].message.content)[:3])


def test_max_tokens_rule_ends_with_length(client, spec):
    for limit in [1, 23, 100]:
        resp = chat(client, spec, "capped", "go on", seed=5, max_tokens=limit)
        assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (limit, "length")
        newer = chat(client, spec, "capped", "go on", seed=5, max_completion_tokens=limit)
        assert (newer.usage.completion_tokens, newer.choices[0].finish_reason) == (limit, "length")
        text, deltas, finish, _ = chat_stream(client, spec, "capped", "go on", seed=5, max_tokens=limit)
        assert (len(deltas), finish, text) == (limit, "length", resp.choices[0].message.content)
        legacy = complete(client, spec, "capped", "go on", seed=5, max_tokens=limit)
        assert (legacy.usage.completion_tokens, legacy.choices[0].finish_reason) == (limit, "length")
        _, pieces, finish, _ = complete_stream(client, spec, "capped", "go on", seed=5, max_tokens=limit)
        assert (len(pieces), finish) == (limit, "length")
    # Without max_tokens: the fallback (5 here), a natural stop.
    resp = chat(client, spec, "capped", "go on", seed=5)
    assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (5, "stop")
    # The legacy endpoint always has a max_tokens: its default, 16.
    legacy = complete(client, spec, "capped", "go on", seed=5)
    assert (legacy.usage.completion_tokens, legacy.choices[0].finish_reason) == (16, "length")


def pick_stop(text: str) -> str:
    """A word from the middle of `text` to use as a stop sequence."""
    candidates = [w.strip(".") for w in text.split()[3:-1] if len(w.strip(".")) >= 2]
    assert candidates, text
    return candidates[0]


def test_stop_sequences_cut_synthetic_text(client, spec):
    full = chat(client, spec, "fixed", "stop me", seed=21, max_tokens=ROOMY).choices[0].message.content
    stop = pick_stop(full)
    expected = full[: full.find(stop)]
    resp = chat(client, spec, "fixed", "stop me", seed=21, stop=[stop])
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == (expected, "stop")
    assert resp.usage.completion_tokens == words(expected)
    streamed, _, finish, _ = chat_stream(client, spec, "fixed", "stop me", seed=21, stop=stop)
    assert (streamed, finish) == (expected, "stop")
    legacy = complete(client, spec, "fixed", "stop me", seed=21, stop=[stop], max_tokens=ROOMY)
    assert (legacy.choices[0].text, legacy.choices[0].finish_reason) == (expected, "stop")
    # Under the max_tokens rule a stop before the limit is a natural stop, not `length`.
    capped = chat(client, spec, "capped", "stop me", seed=21, max_tokens=30).choices[0].message.content
    stop = pick_stop(capped)
    resp = chat(client, spec, "capped", "stop me", seed=21, max_tokens=30, stop=[stop])
    assert resp.choices[0].message.content == capped[: capped.find(stop)]
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens < 30


def test_kind_and_output_tokens_flags_set_the_defaults(server_factory, spec):
    srv = server_factory("--models", "a,b", "--kind", "synthetic")
    with client_for(srv) as c:
        # The default rule is max_tokens with fallback 64.
        for model in ["a", "b"]:
            resp = chat(c, spec, model, "defaults", seed=1)
            assert not resp.choices[0].message.content.startswith("As a mock")
            assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (64, "stop")
            resp = chat(c, spec, model, "defaults", seed=1, max_tokens=10)
            assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (10, "length")
    mixed = json.dumps(["s", {"name": "e", "kind": "echo"}, {"name": "r", "output_tokens": "2-3"}])
    srv = server_factory("--models", mixed, "--kind", "synthetic", "--output-tokens", "9")
    with client_for(srv) as c:
        resp = chat(c, spec, "s", "defaults", seed=1, max_tokens=100)
        assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (9, "stop")
        assert chat(c, spec, "e", "defaults").choices[0].message.content == echo_reply("defaults")
        for seed in range(10):
            assert chat(c, spec, "r", "defaults", seed=seed).usage.completion_tokens in (2, 3)


def test_models_aliases_and_defaults_from_a_config_file(server_factory, spec, tmp_path):
    path = tmp_path / "standin.json"
    path.write_text(json.dumps({
        "models": [{"name": "cfg-syn", "kind": "synthetic", "aliases": ["gpt-4.1"]}, {"name": "cfg-echo", "kind": "echo"}],
        "aliases": ["claude-ish=cfg-echo"],
        "output_tokens": "6",
        "strict_models": True,
    }))
    srv = server_factory("--config", str(path))
    with client_for(srv) as c:
        assert [m.id for m in c.models.list()] == ["cfg-syn", "cfg-echo", "gpt-4.1", "claude-ish"]
        resp = chat(c, spec, "gpt-4.1", "from a file", seed=2)
        assert (resp.model, resp.usage.completion_tokens) == ("cfg-syn", 6)
        resp = chat(c, spec, "claude-ish", "from a file")
        assert (resp.model, resp.choices[0].message.content) == ("cfg-echo", echo_reply("from a file"))
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="mock-gpt-model", messages=[user("x")])


# --- x-standin-output-tokens ----------------------------------------------------------------------------------

def cycled_echo(text: str, n: int) -> list[str]:
    """The first `n` words of the echo reply repeated over and over."""
    base = echo_reply(text).split()
    return (base * (n // len(base) + 1))[:n]


@pytest.mark.parametrize("n", [0, 1, 5, 13, 14, 40])
def test_output_tokens_header_fixes_the_echo_length(client, spec, n):
    headers = {"x-standin-output-tokens": str(n)}
    resp = chat(client, spec, "plain", "hi there", headers=headers)
    text = resp.choices[0].message.content
    assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (n, "stop")
    assert text.split() == cycled_echo("hi there", n)
    streamed, deltas, finish, _ = chat_stream(client, spec, "plain", "hi there", headers=headers)
    assert (streamed, len(deltas), finish) == (text, n, "stop")
    legacy = complete(client, spec, "plain", "hi there", headers=headers, max_tokens=ROOMY)
    assert (legacy.choices[0].text, legacy.usage.completion_tokens, legacy.choices[0].finish_reason) == (text, n, "stop")
    legacy_streamed, pieces, _, _ = complete_stream(client, spec, "plain", "hi there", headers=headers, max_tokens=ROOMY)
    assert (legacy_streamed, len(pieces)) == (text, n)


@pytest.mark.parametrize("model", ["syn", "fixed", "capped"])
@pytest.mark.parametrize("n", [1, 3, 40])
def test_output_tokens_header_fixes_the_synthetic_length(client, spec, model, n):
    headers = {"x-standin-output-tokens": str(n)}
    resp = chat(client, spec, model, "count", headers=headers, seed=8)
    assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (n, "stop")
    _, deltas, finish, _ = chat_stream(client, spec, model, "count", headers=headers, seed=8)
    assert (len(deltas), finish) == (n, "stop")
    legacy = complete(client, spec, model, "count", headers=headers, seed=8, max_tokens=ROOMY)
    assert (legacy.usage.completion_tokens, legacy.choices[0].finish_reason) == (n, "stop")
    _, pieces, _, _ = complete_stream(client, spec, model, "count", headers=headers, seed=8, max_tokens=ROOMY)
    assert len(pieces) == n


@pytest.mark.parametrize("model", ["plain", "syn"])
def test_output_tokens_header_is_still_cut_by_max_tokens(client, spec, model):
    headers = {"x-standin-output-tokens": "40"}
    full = chat(client, spec, model, "long", headers=headers, seed=6).choices[0].message.content
    resp = chat(client, spec, model, "long", headers=headers, seed=6, max_tokens=10)
    assert (resp.usage.completion_tokens, resp.choices[0].finish_reason) == (10, "length")
    assert resp.choices[0].message.content == "".join(tokenize(full)[:10])
    _, deltas, finish, _ = chat_stream(client, spec, model, "long", headers=headers, seed=6, max_tokens=10)
    assert (len(deltas), finish) == (10, "length")
    legacy = complete(client, spec, model, "long", headers=headers, seed=6, max_tokens=10)
    assert (legacy.usage.completion_tokens, legacy.choices[0].finish_reason) == (10, "length")
    # The legacy default max_tokens (16) cuts it too.
    legacy = complete(client, spec, model, "long", headers=headers, seed=6)
    assert (legacy.usage.completion_tokens, legacy.choices[0].finish_reason) == (16, "length")
    # Exactly enough is a natural stop.
    exact = chat(client, spec, model, "long", headers=headers, seed=6, max_tokens=40)
    assert (exact.usage.completion_tokens, exact.choices[0].finish_reason) == (40, "stop")


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "1e3", "100001"])
def test_invalid_output_tokens_header_is_a_bad_request(client, spec, value):
    headers = {"x-standin-output-tokens": value}
    calls = [
        lambda: client.chat.completions.create(model="plain", messages=[user("x")], extra_headers=headers),
        lambda: client.chat.completions.create(model="syn", messages=[user("x")], extra_headers=headers, stream=True),
        lambda: client.completions.create(model="plain", prompt="x", extra_headers=headers),
        lambda: client.completions.create(model="syn", prompt="x", extra_headers=headers, stream=True),
    ]
    for call in calls:
        with pytest.raises(openai.BadRequestError) as caught:
            call()
        assert caught.value.status_code == 400
        assert caught.value.code == "invalid_value"
        assert "x-standin-output-tokens" in caught.value.message
        spec.validate(caught.value.response.json(), "ErrorResponse")


# --- latency profile and admission ----------------------------------------------------------------------------

def hold_slot(c: OpenAI, model: str, headers=None, tokens: int = 10):
    """Starts a streamed request and returns once its response head arrived, i.e. once it holds a slot of
    `model`: a paced stream sends its head before the first token. The caller consumes the stream."""
    return c.chat.completions.create(
        model=model,
        messages=[user("hold")],
        stream=True,
        extra_headers={"x-standin-output-tokens": str(tokens), **(headers or {})},
    )


def drain(stream) -> list[str]:
    return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]


def assert_overloaded(caught, spec, model):
    error = caught.value
    assert error.status_code == 503
    assert error.code == "overloaded"
    assert error.response.headers["retry-after"] == "1"
    assert model in error.message
    spec.validate(error.response.json(), "ErrorResponse")


def test_full_queue_answers_503_overloaded_per_model(server_factory, spec):
    models = [{"name": "slow", "itl_ms": 200, "max_concurrent": 1, "max_waiting": 0}, "free"]
    srv = server_factory("--models", json.dumps(models))
    with client_for(srv) as c:
        first = hold_slot(c, "slow")
        try:
            with pytest.raises(openai.InternalServerError) as caught:
                c.chat.completions.create(model="slow", messages=[user("second")])
            assert_overloaded(caught, spec, "slow")
            with pytest.raises(openai.InternalServerError) as caught:
                c.chat.completions.create(model="slow", messages=[user("second")], stream=True)
            assert_overloaded(caught, spec, "slow")
            with pytest.raises(openai.InternalServerError) as caught:
                c.completions.create(model="slow", prompt="second")
            assert_overloaded(caught, spec, "slow")
            # Another model has its own gate.
            assert chat(c, spec, "free", "meanwhile").choices[0].message.content == echo_reply("meanwhile")
        finally:
            received = drain(first)
        # The first request was not disturbed, and its slot is free again.
        assert received == tokenize(" ".join(cycled_echo("hold", 10)))
        assert chat(c, spec, "slow", "after", headers={"x-standin-itl-ms": "0"}).choices[0].finish_reason == "stop"


def test_max_concurrent_flags_with_an_itl_header(server_factory, spec):
    srv = server_factory("--max-concurrent", "1", "--max-waiting", "0")
    with client_for(srv) as c:
        first = hold_slot(c, "mock-gpt-model", headers={"x-standin-itl-ms": "200"})
        try:
            with pytest.raises(openai.InternalServerError) as caught:
                c.completions.create(model="mock-gpt-model", prompt="second")
            assert_overloaded(caught, spec, "mock-gpt-model")
        finally:
            received = drain(first)
        assert len(received) == 10
        assert complete(c, spec, "mock-gpt-model", "after").choices[0].text == echo_reply("after")


def test_waiting_request_is_queued_then_served(server_factory, spec):
    models = [{"name": "queued", "itl_ms": 200, "max_concurrent": 1, "max_waiting": 5}]
    srv = server_factory("--models", json.dumps(models))
    gauge_waiting = 'vllm:num_requests_waiting'
    assert metric(srv, gauge_waiting) == 0
    with client_for(srv) as c:
        first = hold_slot(c, "queued")
        results: list = []

        def second():
            try:
                results.append(c.chat.completions.create(model="queued", messages=[user("waiter")],
                                                         extra_headers={"x-standin-itl-ms": "0"}))
            except Exception as e:  # reported below
                results.append(e)

        waiter = threading.Thread(target=second)
        waiter.start()
        try:
            wait_for(lambda: metric(srv, gauge_waiting) == 1 or results, "the second request to queue")
            assert not results, f"the second request finished while the first held the only slot: {results}"
            text = httpx.get(srv.url("/metrics")).text
            assert 'vllm:num_requests_waiting{model_name="queued"} 1\n' in text
            assert 'vllm:num_requests_running{model_name="queued"} 1\n' in text
        finally:
            received = drain(first)
            waiter.join(POLL_DEADLINE_S + 10)
        assert len(received) == 10
        [reply] = results
        assert not isinstance(reply, Exception), reply
        assert (reply.model, reply.choices[0].message.content) == ("queued", echo_reply("waiter"))
        spec.validate(reply.to_dict(), "CreateChatCompletionResponse")
    wait_for(lambda: metric(srv, gauge_waiting) == 0, "the queue to empty")


def time_to_first_token(c: OpenAI, model: str, text: str, headers=None) -> float:
    started = time.monotonic()
    stream = c.chat.completions.create(model=model, messages=[user(text)], stream=True, extra_headers=headers or {})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            elapsed = time.monotonic() - started
            stream.close()
            return elapsed
    pytest.fail("no content")


def test_ttft_and_prefill_delay_the_first_token(server_factory, spec):
    # Lower bounds only: the server sleeps at least this long, however fast the machine.
    models = ["flagged", {"name": "own", "ttft_ms": 300, "prefill_us_per_token": 0}]
    srv = server_factory("--models", json.dumps(models), "--prefill-us-per-token", "20000")
    prompt = " ".join(f"w{i}" for i in range(50))
    with client_for(srv) as c:
        # 50 prompt tokens × 20 ms of prefill.
        assert time_to_first_token(c, "flagged", prompt) >= 1.0
        # The per-model ttft, with the per-model prefill of 0 overriding the flag.
        assert time_to_first_token(c, "own", "hi") >= 0.3
        resp = chat(c, spec, "flagged", prompt, headers={"x-standin-output-tokens": "2"})
        assert resp.usage.prompt_tokens == 50


def test_load_factor_stretches_a_concurrent_request(server_factory, spec):
    models = [{"name": "busy", "ttft_ms": 300, "load_factor": 2}]
    srv = server_factory("--models", json.dumps(models))
    with client_for(srv) as c:
        first = hold_slot(c, "busy", headers={"x-standin-itl-ms": "200"})
        try:
            # One other request in flight: 300 ms × (1 + 2 × 1).
            started = time.monotonic()
            resp = chat(c, spec, "busy", "second", headers={"x-standin-output-tokens": "1"})
            assert time.monotonic() - started >= 0.9
            assert resp.usage.completion_tokens == 1
        finally:
            assert len(drain(first)) == 10


def test_jittered_stream_still_delivers_every_token(server_factory, spec):
    srv = server_factory("--itl-ms", "2", "--jitter-ms", "1.5")
    with client_for(srv) as c:
        text, deltas, finish, _ = chat_stream(c, spec, "mock-gpt-model", "jitter me")
        assert (text, deltas, finish) == (echo_reply("jitter me"), tokenize(echo_reply("jitter me")), "stop")
        legacy, _, _, _ = complete_stream(c, spec, "mock-gpt-model", "jitter me", max_tokens=ROOMY)
        assert legacy == echo_reply("jitter me")
