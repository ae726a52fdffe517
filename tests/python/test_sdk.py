"""The official `openai` Python SDK against standin: what a real user sees."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from support import DEFAULT_MODEL, NO_MESSAGE_REPLY, echo_reply, tokenize, user


def make_client(base_url: str, api_key: str = "sk-test") -> OpenAI:
    return OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=20)


def make_async_client(base_url: str, api_key: str = "sk-test") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def client(base_url):
    with make_client(base_url) as c:
        yield c


def chat(client, text="Hello", **kwargs):
    return client.chat.completions.create(model=DEFAULT_MODEL, messages=[user(text)], **kwargs)


def stream_text(stream, index=0) -> tuple[str, list, list[str]]:
    """Consumes an SDK stream: (content of choice `index`, all chunks, its token deltas)."""
    chunks = list(stream)
    deltas = [
        choice.delta.content
        for chunk in chunks
        for choice in chunk.choices
        if choice.index == index and choice.delta.content
    ]
    return "".join(deltas), chunks, deltas


# --- completions -----------------------------------------------------------------------------

def test_sync_non_stream(client):
    resp = chat(client, "Hello")
    assert resp.id.startswith("chatcmpl-")
    assert resp.object == "chat.completion"
    assert resp.model == DEFAULT_MODEL
    assert resp.system_fingerprint == "fp_standin"
    [choice] = resp.choices
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "As a mock AI Assistant, I can only echo your last message: Hello"
    assert choice.message.refusal is None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (1, 13, 14)


def test_sync_stream(client):
    text, chunks, deltas = stream_text(chat(client, "Hello world", stream=True))
    assert text == echo_reply("Hello world")
    assert deltas == tokenize(echo_reply("Hello world"))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.id == chunks[0].id for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize(
    "text",
    ["Hello", "  leading spaces", "trailing spaces   ", "tabs\tand\nnewlines\n\n", "ünïcödé 漢字 🎉 emoji", "a" * 3000],
)
def test_stream_concatenation_equals_non_stream(client, text):
    full = chat(client, text)
    streamed, chunks, deltas = stream_text(chat(client, text, stream=True))
    assert streamed == full.choices[0].message.content == echo_reply(text)
    assert deltas == tokenize(echo_reply(text))
    assert full.usage.completion_tokens == len(deltas)
    assert full.usage.prompt_tokens == len(tokenize(text))


def test_async_non_stream_and_stream(base_url):
    async def run():
        async with make_async_client(base_url) as aclient:
            resp = await aclient.chat.completions.create(model="any-model", messages=[user("async hi")])
            assert resp.choices[0].message.content == echo_reply("async hi")
            assert resp.model == "any-model"
            stream = await aclient.chat.completions.create(
                model="any-model", messages=[user("async hi")], stream=True
            )
            deltas = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
            assert "".join(deltas) == echo_reply("async hi")

    asyncio.run(run())


def test_n_greater_than_one(client):
    resp = chat(client, "multi", n=4)
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    assert {c.message.content for c in resp.choices} == {echo_reply("multi")}
    assert resp.usage.completion_tokens == 4 * 13
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_n_greater_than_one_stream(client):
    chunks = list(chat(client, "multi", n=3, stream=True))
    for index in range(3):
        text = "".join(
            ch.delta.content or "" for c in chunks for ch in c.choices if ch.index == index
        )
        assert text == echo_reply("multi")
        reasons = [ch.finish_reason for c in chunks for ch in c.choices if ch.index == index and ch.finish_reason]
        assert reasons == ["stop"]


def test_max_tokens_gives_length(client):
    resp = chat(client, "Hello world", max_tokens=3)
    assert resp.choices[0].message.content == "As a mock"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 3
    text, chunks, deltas = stream_text(chat(client, "Hello world", max_tokens=3, stream=True))
    assert deltas == ["As", " a", " mock"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_max_tokens_exactly_enough_is_stop(client):
    resp = chat(client, "Hello", max_tokens=13)
    assert resp.choices[0].message.content == echo_reply("Hello")
    assert resp.choices[0].finish_reason == "stop"


def test_max_completion_tokens_wins(client):
    resp = chat(client, "Hello", max_tokens=2, max_completion_tokens=5)
    assert resp.choices[0].message.content == "As a mock AI Assistant,"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 5


def test_stop_sequences(client):
    resp = chat(client, "one two STOP three", stop="STOP")
    assert resp.choices[0].message.content == echo_reply("one two ")
    assert resp.choices[0].finish_reason == "stop"
    # The earliest occurrence of any of the strings wins, even inside the fixed prefix.
    resp = chat(client, "one two STOP three", stop=["STOP", "echo"])
    assert resp.choices[0].message.content == "As a mock AI Assistant, I can only "
    assert resp.usage.completion_tokens == 8
    # Absent stop string: untouched.
    resp = chat(client, "abc", stop=["zzz"])
    assert resp.choices[0].message.content == echo_reply("abc")
    streamed, _, _ = stream_text(chat(client, "one two STOP three", stop=["STOP"], stream=True))
    assert streamed == echo_reply("one two ")


def test_stop_then_max_tokens(client):
    resp = chat(client, "a b c d e", stop=["d"], max_tokens=14)
    assert resp.choices[0].message.content == echo_reply("a b")
    assert resp.choices[0].finish_reason == "length"


def test_stream_options_include_usage(client):
    chunks = list(chat(client, "count me", stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (2, 14, 16)
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.choices for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == echo_reply("count me")


def test_content_as_array_of_text_parts(client):
    parts = [
        {"type": "text", "text": "first part"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "second"},
    ]
    resp = client.chat.completions.create(model=DEFAULT_MODEL, messages=[{"role": "user", "content": parts}])
    assert resp.choices[0].message.content == echo_reply("first part\nsecond")
    assert resp.usage.prompt_tokens == 3


def test_last_message_is_echoed_and_prompt_tokens_sum(client):
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "developer", "content": "really"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer here"},
        {"role": "user", "content": "final words"},
    ]
    resp = client.chat.completions.create(model=DEFAULT_MODEL, messages=messages)
    assert resp.choices[0].message.content == echo_reply("final words")
    assert resp.usage.prompt_tokens == 2 + 1 + 2 + 3 + 2


def test_last_message_without_text(client):
    messages = [
        user("hi"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]},
    ]
    resp = client.chat.completions.create(model=DEFAULT_MODEL, messages=messages)
    assert resp.choices[0].message.content == NO_MESSAGE_REPLY
    image_only = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    resp = client.chat.completions.create(model=DEFAULT_MODEL, messages=image_only)
    assert resp.choices[0].message.content == NO_MESSAGE_REPLY


def test_tool_message_accepted(client):
    messages = [
        user("call it"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    resp = client.chat.completions.create(model=DEFAULT_MODEL, messages=messages)
    assert resp.choices[0].message.content == echo_reply("42")


def test_accepted_boundary_values(client):
    resp = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[user("bounds")],
        temperature=2,
        top_p=0,
        n=128,
        stop=["QQ1", "QQ2", "QQ3", "QQ4"],
        frequency_penalty=-2,
        presence_penalty=2,
        seed=-5,
        user="u-1",
        logprobs=True,
        top_logprobs=20,
        logit_bias={"50256": -100, "11": 100},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice="auto",
        parallel_tool_calls=False,
        response_format={"type": "text"},
        metadata={"k": "v"},
        store=False,
        extra_body={"unknown_field": {"nested": [1, 2]}, "max_tokens": None},
    )
    assert len(resp.choices) == 128
    assert resp.choices[127].message.content == echo_reply("bounds")


def test_request_id_header(client):
    raw = client.chat.completions.with_raw_response.create(
        model=DEFAULT_MODEL, messages=[user("x")], extra_headers={"x-request-id": "my-trace-123"}
    )
    assert raw.headers["x-request-id"] == "my-trace-123"
    assert raw.headers["server"] == "standin"
    assert raw.parse().choices[0].message.content == echo_reply("x")
    generated = client.models.with_raw_response.list()
    assert generated.headers["x-request-id"].startswith("req_")


# --- concurrency -----------------------------------------------------------------------------

def test_200_concurrent_streams(base_url):
    async def one(aclient: AsyncOpenAI, i: int):
        text = f"stream number {i}"
        stream = await aclient.chat.completions.create(
            model=DEFAULT_MODEL, messages=[user(text)], stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert content == echo_reply(text), i
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage.completion_tokens == 15
        assert len({c.id for c in chunks}) == 1
        return chunks[0].id

    async def run():
        async with make_async_client(base_url) as aclient:
            return await asyncio.gather(*(one(aclient, i) for i in range(200)))

    ids = asyncio.run(run())
    assert len(set(ids)) == 200


# --- models ----------------------------------------------------------------------------------

def test_models_list_and_retrieve(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [DEFAULT_MODEL]
    model = models.data[0]
    assert model.object == "model" and model.owned_by == "standin" and isinstance(model.created, int)
    got = client.models.retrieve(DEFAULT_MODEL)
    assert (got.id, got.object, got.owned_by) == (DEFAULT_MODEL, "model", "standin")
    other = client.models.retrieve("something-else")
    assert other.id == "something-else"


def test_models_flag(server_factory):
    srv = server_factory("--models", "m-a,m-b")
    with make_client(srv.base_url) as c:
        assert [m.id for m in c.models.list()] == ["m-a", "m-b"]


# --- errors ----------------------------------------------------------------------------------

def test_api_key_required(server_factory):
    srv = server_factory("--api-key", "k1", "--api-key", "k2")
    for key in ("k1", "k2"):
        with make_client(srv.base_url, key) as good:
            assert good.models.list().data[0].id == DEFAULT_MODEL
            assert chat(good, "auth ok").choices[0].message.content == echo_reply("auth ok")
    with make_client(srv.base_url, "wrong") as bad:
        with pytest.raises(openai.AuthenticationError) as exc:
            chat(bad)
        assert exc.value.status_code == 401
        assert exc.value.body["code"] == "invalid_api_key"
        assert exc.value.body["type"] == "invalid_request_error"
        assert exc.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        with pytest.raises(openai.AuthenticationError):
            bad.models.retrieve(DEFAULT_MODEL)
        with pytest.raises(openai.AuthenticationError):
            chat(bad, stream=True)
        # Missing Authorization header entirely.
        with pytest.raises(openai.AuthenticationError) as exc:
            chat(bad, extra_headers={"Authorization": openai.Omit()})
        assert exc.value.body["code"] == "invalid_api_key"


def test_api_key_from_env_and_file(server_factory, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text("# comment\n\nfile-key\n")
    env_srv = server_factory(env={"STANDIN_API_KEY": "e1,e2"})
    file_srv = server_factory("--api-key-file", str(key_file))
    for srv, good_keys in ((env_srv, ["e1", "e2"]), (file_srv, ["file-key"])):
        for key in good_keys:
            with make_client(srv.base_url, key) as c:
                assert chat(c).choices[0].finish_reason == "stop"
        for key in ("wrong", "# comment"):
            with make_client(srv.base_url, key) as c, pytest.raises(openai.AuthenticationError):
                chat(c)


def param_matches(got: str | None, field: str) -> bool:
    """`param` names the field; for a bad entry inside an object (metadata,
    logit_bias, response_format) a path below it is as precise."""
    return got == field or (got or "").startswith((field + ".", field + "["))


BAD_PARAMS = [
    ({"temperature": 5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "n"),
    ({"n": 129}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"frequency_penalty": 2.5}, "frequency_penalty"),
    ({"presence_penalty": -3}, "presence_penalty"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"logit_bias": {"1": 101}}, "logit_bias"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
]

BAD_TYPES = [
    ({"temperature": "hot"}, "temperature"),
    ({"n": 2.5}, "n"),
    ({"n": "2"}, "n"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"stream": "true"}, "stream"),
    ({"stop": 5}, "stop"),
    ({"seed": 1.5}, "seed"),
    ({"user": 5}, "user"),
    ({"logprobs": "yes"}, "logprobs"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"parallel_tool_calls": 1}, "parallel_tool_calls"),
    ({"response_format": "json"}, "response_format"),
    ({"metadata": {"k": 1}}, "metadata"),
    ({"store": "no"}, "store"),
    ({"model": ["a"]}, "model"),
]


@pytest.mark.parametrize("extra,param", BAD_PARAMS, ids=lambda v: str(v) if isinstance(v, str) else None)
def test_bad_request_value(client, extra, param):
    with pytest.raises(openai.BadRequestError) as exc:
        chat(client, extra_body=extra)
    assert exc.value.status_code == 400
    assert param_matches(exc.value.body["param"], param), exc.value.body
    assert exc.value.body["code"] == "invalid_value", exc.value.body
    assert exc.value.body["type"] == "invalid_request_error"
    assert exc.value.param == exc.value.body["param"]


@pytest.mark.parametrize("extra,param", BAD_TYPES, ids=lambda v: str(v) if isinstance(v, str) else None)
def test_bad_request_type(client, extra, param):
    with pytest.raises(openai.BadRequestError) as exc:
        chat(client, extra_body=extra)
    assert param_matches(exc.value.body["param"], param), exc.value.body
    assert exc.value.body["code"] == "invalid_type", exc.value.body


def test_temperature_5_via_sdk_argument(client):
    with pytest.raises(openai.BadRequestError) as exc:
        chat(client, temperature=5)
    assert exc.value.body["param"] == "temperature"
    assert exc.value.body["code"] == "invalid_value"
    assert exc.value.status_code == 400


BAD_MESSAGES = [
    ([], "messages", "invalid_value"),
    # Required content missing or null (null = absent): the contract names no code; the server says
    # missing_required_parameter, which we follow.
    ([{"role": "user"}], "messages[0].content", "missing_required_parameter"),
    ([{"content": "x"}], "messages[0].role", "missing_required_parameter"),
    ([user("a"), user("b"), {"role": "robot", "content": "x"}], "messages[2].role", "invalid_value"),
    ([user(None)], "messages[0].content", "missing_required_parameter"),
    ([user("a"), {"role": "tool", "content": "r"}], "messages[1].tool_call_id", "missing_required_parameter"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], None, None),
    (["just a string"], "messages[0]", "invalid_type"),
]


@pytest.mark.parametrize("messages,param,code", BAD_MESSAGES)
def test_bad_messages(client, messages, param, code):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=messages)
    body = exc.value.body
    assert body["type"] == "invalid_request_error"
    if param is None:
        # e.g. messages[0].content or messages[0].content[0].text: the contract names only the prefix.
        assert body["param"].startswith("messages[0].content"), body
    else:
        assert body["param"] == param, body
    if code is None:
        assert body["code"] in {"invalid_type", "invalid_value"}, body
    else:
        assert body["code"] == code, body


def test_stream_options_require_stream(client):
    with pytest.raises(openai.BadRequestError) as exc:
        chat(client, stream_options={"include_usage": True})
    assert exc.value.body["param"] == "stream_options"
    with pytest.raises(openai.BadRequestError) as exc:
        chat(client, stream=False, stream_options={"include_usage": True})
    assert exc.value.body["param"] == "stream_options"


def test_null_optional_fields_are_absent(client):
    extra = {k: None for k in ("temperature", "n", "stop", "max_tokens", "stream", "stream_options", "tools", "user")}
    resp = chat(client, "nulls", extra_body=extra)
    assert resp.choices[0].message.content == echo_reply("nulls")
    assert len(resp.choices) == 1


def test_strict_models_not_found(server_factory):
    srv = server_factory("--strict-models", "--models", "alpha,beta")
    with make_client(srv.base_url) as c:
        with pytest.raises(openai.NotFoundError) as exc:
            c.chat.completions.create(model="gamma", messages=[user("x")])
        assert exc.value.body["code"] == "model_not_found"
        assert exc.value.body["param"] == "model"
        with pytest.raises(openai.NotFoundError) as exc:
            c.chat.completions.create(model="gamma", messages=[user("x")], stream=True)
        assert exc.value.body["code"] == "model_not_found"
        with pytest.raises(openai.NotFoundError) as exc:
            c.models.retrieve("gamma")
        assert exc.value.body["code"] == "model_not_found"
        assert c.models.retrieve("beta").id == "beta"
        assert c.chat.completions.create(model="alpha", messages=[user("x")]).model == "alpha"


def test_unknown_route(client, base_url):
    with pytest.raises(openai.NotFoundError) as exc:
        client.get("/does-not-exist", cast_to=object)
    assert exc.value.body["code"] == "unknown_url"
    assert exc.value.body["type"] == "invalid_request_error"
    resp = httpx.get(base_url + "/v1/does-not-exist", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_url"
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
