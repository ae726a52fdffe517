"""Tool calls, JSON mode and logprobs through the official `openai` SDK, with every raw response and chunk
validated against the OpenAI spec and every generated JSON value against its JSON Schema (`jsonschema`)."""

from __future__ import annotations

import json
import time
from typing import Literal, Optional

import httpx
import jsonschema
import openai
import pydantic
import pytest
from openai import OpenAI

from support import DEFAULT_MODEL, echo_reply, parse_sse, tokenize, user

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a place",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City and country"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {
                "timezone": {"type": "string"},
                "format": {"type": "string", "enum": ["12h", "24h"], "default": "24h"},
                "precise": {"type": "boolean"},
            },
            "required": ["timezone"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search-docs",
        "strict": True,
        "parameters": {
            "$defs": {
                "Filter": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string", "enum": ["title", "body"]},
                        "weight": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "required": ["field", "weight"],
                    "additionalProperties": False,
                }
            },
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 3, "maxLength": 40},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 4},
                "filters": {"type": "array", "items": {"$ref": "#/$defs/Filter"}},
                "limit": {"type": ["integer", "null"], "minimum": 1, "maximum": 50, "multipleOf": 5},
                "kind": {"const": "search"},
                "since": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
            },
            "required": ["query", "tags", "filters", "limit", "kind", "since"],
            "additionalProperties": False,
        },
    },
}
PING = {"type": "function", "function": {"name": "ping"}}
TOOLS = [WEATHER, TIME, SEARCH, PING]


def parameters(name: str) -> dict:
    """The JSON Schema of a tool's arguments (an empty object schema when it declares none)."""
    for tool in TOOLS:
        if tool["function"]["name"] == name:
            return tool["function"].get("parameters", {"type": "object", "maxProperties": 0})
    raise KeyError(name)


def check_arguments(name: str, arguments: str) -> dict:
    value = json.loads(arguments)
    assert isinstance(value, dict), arguments
    jsonschema.validate(value, parameters(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return value


@pytest.fixture(scope="module")
def client(base_url):
    with OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=20) as c:
        yield c


def create(client, spec, text="Hello", messages=None, **kwargs):
    """A non-streaming completion through the SDK; the raw body is validated against the spec first."""
    raw = client.chat.completions.with_raw_response.create(
        model=DEFAULT_MODEL, messages=messages or [user(text)], **kwargs
    )
    spec.validate(json.loads(raw.http_response.content), "CreateChatCompletionResponse")
    return raw.parse()


def raw_stream(http, spec, body: dict, headers=None) -> list[dict]:
    """A streamed completion read as raw SSE; every chunk is validated against the spec."""
    body = {"model": DEFAULT_MODEL, "stream": True, **body}
    with http.stream("POST", "/v1/chat/completions", json=body, headers=headers or {}) as resp:
        assert resp.status_code == 200, resp.read()
        raw = b"".join(resp.iter_raw())
    chunks = parse_sse(raw)
    for chunk in chunks:
        spec.validate(chunk, "CreateChatCompletionStreamResponse")
    return chunks


def calls_of(message) -> list[tuple[str, str, str]]:
    return [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]


# --- choosing tools -----------------------------------------------------------------------------

def test_required_calls_every_tool_once(client, spec):
    resp = create(client, spec, "book a table in Paris tonight", tools=TOOLS, tool_choice="required", seed=1)
    [choice] = resp.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.role == "assistant"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time", "search-docs", "ping"]
    assert len({c.id for c in calls}) == 4
    for call in calls:
        assert call.type == "function"
        assert call.id.startswith("call_") and len(call.id) > len("call_")
        check_arguments(call.function.name, call.function.arguments)
    assert json.loads(calls[3].function.arguments) == {}
    pieces = sum(len(tokenize(c.function.arguments)) for c in calls)
    assert resp.usage.completion_tokens == pieces
    assert resp.usage.prompt_tokens == len(tokenize("book a table in Paris tonight"))


def test_strings_reuse_words_of_the_last_message(client, spec):
    resp = create(client, spec, "forecast for Reykjavik", tools=[WEATHER], tool_choice="required")
    location = json.loads(resp.choices[0].message.tool_calls[0].function.arguments)["location"]
    assert set(location.split(" ")) <= {"forecast", "for", "Reykjavik"}, location


def test_required_without_parallel_calls_only_the_first(client, spec):
    resp = create(client, spec, "x", tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    assert [c.function.name for c in resp.choices[0].message.tool_calls] == ["get_weather"]


def test_named_tool_choice_calls_that_tool(client, spec):
    choice = {"type": "function", "function": {"name": "search-docs"}}
    resp = create(client, spec, "find the docs about streaming", tools=TOOLS, tool_choice=choice)
    [call] = resp.choices[0].message.tool_calls
    assert call.function.name == "search-docs"
    assert resp.choices[0].finish_reason == "tool_calls"
    args = check_arguments("search-docs", call.function.arguments)
    assert args["kind"] == "search"


def test_named_tool_choice_unknown_is_400(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=DEFAULT_MODEL,
            messages=[user("x")],
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "launch_rocket"}},
        )
    assert exc.value.body["param"] == "tool_choice"
    assert exc.value.body["code"] == "invalid_value"


def test_required_without_tools_is_400(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=[user("x")], tool_choice="required")
    assert exc.value.body["param"] == "tool_choice"


@pytest.mark.parametrize(
    "text,called",
    [
        ("What's the weather? Use get_weather for Paris", ["get_weather"]),
        ("call GET_TIME and get_weather", ["get_weather", "get_time"]),  # in the order of `tools`
        ("(search-docs) please", ["search-docs"]),
        ("what is the weather like", []),  # no name mentioned: text
        ("get_weather_forecast", []),  # not the whole word
        ("get weather", []),
    ],
)
def test_auto_calls_tools_the_user_names(client, spec, text, called):
    # `auto` is the default when tools are present.
    resp = create(client, spec, text, tools=TOOLS)
    choice = resp.choices[0]
    if called:
        assert [c.function.name for c in choice.message.tool_calls] == called
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
    else:
        assert choice.message.tool_calls is None
        assert choice.message.content == echo_reply(text)
        assert choice.finish_reason == "stop"


def test_auto_without_parallel_calls_one(client, spec):
    resp = create(client, spec, "get_time and get_weather", tools=TOOLS, parallel_tool_calls=False)
    assert [c.function.name for c in resp.choices[0].message.tool_calls] == ["get_weather"]


def test_auto_needs_the_last_message_to_be_the_users(client, spec):
    messages = [
        user("use get_weather"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, get_weather says"},
    ]
    resp = create(client, spec, messages=messages, tools=TOOLS, tool_choice="auto")
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.content == echo_reply("sunny, get_weather says")
    system_last = [{"role": "system", "content": "get_weather"}]
    resp = create(client, spec, messages=system_last, tools=TOOLS)
    assert resp.choices[0].message.tool_calls is None


def test_tool_choice_none_answers_with_text(client, spec):
    resp = create(client, spec, "use get_weather", tools=TOOLS, tool_choice="none")
    assert resp.choices[0].message.content == echo_reply("use get_weather")
    assert resp.choices[0].message.tool_calls is None


def test_allowed_tools_restricts_the_choice(client, spec):
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [TIME, PING]}}
    resp = create(client, spec, "x", tools=TOOLS, extra_body={"tool_choice": choice})
    assert [c.function.name for c in resp.choices[0].message.tool_calls] == ["get_time", "ping"]


def test_n_choices_get_their_own_call_ids(client, spec):
    resp = create(client, spec, "x", tools=[WEATHER, TIME], tool_choice="required", n=3)
    ids = [c.id for choice in resp.choices for c in choice.message.tool_calls]
    assert len(set(ids)) == 6
    arguments = {tuple(c.function.arguments for c in ch.message.tool_calls) for ch in resp.choices}
    assert len(arguments) == 1
    assert resp.usage.completion_tokens == 3 * sum(len(tokenize(a)) for a in arguments.pop())


def test_max_tokens_cuts_the_arguments(client, spec):
    full = create(client, spec, "Paris", tools=[WEATHER, TIME], tool_choice="required", seed=4)
    pieces = [tokenize(c.function.arguments) for c in full.choices[0].message.tool_calls]
    limit = len(pieces[0]) + 1
    cut = create(client, spec, "Paris", tools=[WEATHER, TIME], tool_choice="required", seed=4, max_tokens=limit)
    [choice] = cut.choices
    assert choice.finish_reason == "length"
    assert [c.function.arguments for c in choice.message.tool_calls] == [
        "".join(pieces[0]),
        pieces[1][0],
    ]
    assert cut.usage.completion_tokens == limit


def test_round_trip_conversation(client, spec):
    """A whole agent turn as SDK users write it: call, run the tool, send the result back."""
    messages = [user("What's the weather in Oslo? use get_weather")]
    first = create(client, spec, messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "-3 C and snowing"})
    second = create(client, spec, messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == echo_reply("-3 C and snowing")
    assert second.choices[0].finish_reason == "stop"


# --- streaming tool calls -------------------------------------------------------------------------

def test_stream_tool_call_chunks(http, spec):
    body = {
        "messages": [user("weather in Lisbon")],
        "tools": [WEATHER, TIME],
        "tool_choice": "required",
        "seed": 7,
        "stream_options": {"include_usage": True},
    }
    chunks = raw_stream(http, spec, body)
    *chunks, usage_chunk = chunks
    first = chunks[0]["choices"][0]
    assert first["delta"]["role"] == "assistant" and first["delta"]["content"] is None
    [start] = first["delta"]["tool_calls"]
    assert set(start) == {"index", "id", "type", "function"}
    assert (start["index"], start["type"], start["function"]) == (0, "function", {"name": "get_weather", "arguments": ""})
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}]
    arguments = {0: "", 1: ""}
    pieces = 0
    starts = [start]
    for chunk in chunks[1:-1]:
        [choice] = chunk["choices"]
        assert choice["finish_reason"] is None and set(choice["delta"]) == {"tool_calls"}
        [delta] = choice["delta"]["tool_calls"]
        if "id" in delta:
            assert delta["function"]["arguments"] == ""
            starts.append(delta)
        else:
            assert set(delta) == {"index", "function"} and set(delta["function"]) == {"arguments"}
            arguments[delta["index"]] += delta["function"]["arguments"]
            pieces += 1
    assert [s["function"]["name"] for s in starts] == ["get_weather", "get_time"]
    assert [s["index"] for s in starts] == [0, 1]
    check_arguments("get_weather", arguments[0])
    check_arguments("get_time", arguments[1])
    assert pieces == len(tokenize(arguments[0])) + len(tokenize(arguments[1]))
    assert pieces >= 4, "the arguments come in several pieces"
    assert usage_chunk["usage"]["completion_tokens"] == pieces


def test_stream_reassembles_to_the_non_stream_reply(client, spec):
    kwargs = dict(model=DEFAULT_MODEL, messages=[user("docs on SSE please")], tools=TOOLS,
                  tool_choice="required", seed=11)
    whole = create(client, spec, **{k: v for k, v in kwargs.items() if k != "model"})
    expected = calls_of(whole.choices[0].message)

    # By hand, as most SDK users accumulate deltas.
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert [(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())] == expected
    assert finish == "tool_calls"

    # With the SDK's stream helper.
    with client.chat.completions.stream(**kwargs) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert calls_of(final.choices[0].message) == expected
    assert [e.name for e in done] == [name for _, name, _ in expected]
    assert final.choices[0].finish_reason == "tool_calls"
    # The strict tool's arguments are parsed by the helper.
    parsed = final.choices[0].message.tool_calls[2].function.parsed_arguments
    assert parsed == json.loads(expected[2][2])


def test_stream_arguments_are_paced_like_tokens(http, spec):
    body = {"messages": [user("x")], "tools": [WEATHER], "tool_choice": "required"}
    start = time.monotonic()
    chunks = raw_stream(http, spec, body, headers={"x-standin-itl-ms": "40"})
    elapsed = time.monotonic() - start
    pieces = sum(1 for c in chunks for ch in c["choices"]
                 for d in ch["delta"].get("tool_calls", []) if "id" not in d)
    assert pieces >= 3
    assert elapsed >= 0.04 * (pieces - 1) * 0.9, (elapsed, pieces)


# --- JSON mode ----------------------------------------------------------------------------------------

def test_json_object_reply(client, spec, http):
    resp = create(client, spec, 'say "hi"\nplease', response_format={"type": "json_object"})
    content = resp.choices[0].message.content
    assert json.loads(content) == {"echo": 'say "hi"\nplease'}
    assert resp.usage.completion_tokens == len(tokenize(content))
    chunks = raw_stream(http, spec, {"messages": [user('say "hi"\nplease')], "response_format": {"type": "json_object"}})
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == content


RECIPE = {
    "$defs": {
        "Ingredient": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "grams": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
                "optional": {"type": "boolean"},
            },
            "required": ["name", "grams", "optional"],
            "additionalProperties": False,
        }
    },
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "servings": {"type": "integer", "minimum": 1, "maximum": 12},
        "ingredients": {"type": "array", "items": {"$ref": "#/$defs/Ingredient"}, "minItems": 2},
        "difficulty": {"enum": ["easy", "medium", "hard"]},
        "notes": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "id": {"type": "string", "format": "uuid"},
        "rating": {"type": "number", "multipleOf": 0.1, "minimum": 0, "maximum": 5},
    },
    "required": ["title", "servings", "ingredients", "difficulty", "notes", "id", "rating"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", range(8))
def test_json_schema_reply_validates(client, spec, http, seed):
    response_format = {"type": "json_schema", "json_schema": {"name": "recipe", "schema": RECIPE, "strict": True}}
    resp = create(client, spec, "a quick tomato soup", response_format=response_format, seed=seed)
    content = resp.choices[0].message.content
    jsonschema.validate(json.loads(content), RECIPE, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert list(json.loads(content)) == list(RECIPE["properties"]), "keys in schema order"
    assert resp.choices[0].finish_reason == "stop"
    body = {"messages": [user("a quick tomato soup")], "response_format": response_format, "seed": seed}
    chunks = raw_stream(http, spec, body)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == content


def test_json_schema_with_the_sdk_parse_helper(client):
    class Step(pydantic.BaseModel):
        explanation: str
        output: str

    class Answer(pydantic.BaseModel):
        steps: list[Step]
        final_answer: str
        confidence: Optional[float]
        verdict: Literal["yes", "no"]

    completion = client.chat.completions.parse(
        model=DEFAULT_MODEL, messages=[user("solve 8x + 7 = -23")], response_format=Answer, seed=3
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Answer)
    assert parsed.verdict in ("yes", "no")


# --- logprobs ---------------------------------------------------------------------------------------

def check_entry(entry, top: int):
    assert entry.logprob < 0
    assert entry.bytes == list(entry.token.encode("utf-8"))
    assert len(entry.top_logprobs) == top
    if top:
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == entry.logprob
        values = [t.logprob for t in entry.top_logprobs]
        assert values == sorted(values, reverse=True) and len(set(values)) == top
        assert len({t.token for t in entry.top_logprobs}) == top
        for t in entry.top_logprobs:
            assert t.bytes == list(t.token.encode("utf-8"))


@pytest.mark.parametrize("top", [None, 0, 3, 20])
def test_logprobs_shape(client, spec, top):
    extra = {} if top is None else {"top_logprobs": top}
    resp = create(client, spec, "héllo wörld", logprobs=True, seed=5, **extra)
    [choice] = resp.choices
    entries = choice.logprobs.content
    assert choice.logprobs.refusal is None
    assert [e.token for e in entries] == tokenize(choice.message.content)
    assert len(entries) == resp.usage.completion_tokens
    for entry in entries:
        check_entry(entry, top or 0)


def test_logprobs_stream_match_the_json_reply(client, spec, http):
    kwargs = dict(messages=[user("stream me")], logprobs=True, top_logprobs=2, seed=9, n=2)
    whole = create(client, spec, **kwargs)
    expected = [e.model_dump() for e in whole.choices[1].logprobs.content]
    chunks = raw_stream(http, spec, kwargs)
    streamed = []
    for chunk in chunks:
        for choice in chunk["choices"]:
            if choice["index"] == 1 and choice["delta"].get("content"):
                [entry] = choice["logprobs"]["content"]
                assert entry["token"] == choice["delta"]["content"]
                assert choice["logprobs"]["refusal"] is None
                streamed.append(entry)
    assert streamed == expected
    with client.chat.completions.stream(model=DEFAULT_MODEL, **{**kwargs, "n": 1}) as stream:
        final = stream.get_final_completion()
    assert [e.model_dump() for e in final.choices[0].logprobs.content] == expected


def test_logprobs_false_or_absent_is_null(client, spec):
    for extra in ({}, {"logprobs": False}):
        resp = create(client, spec, "x", **extra)
        assert resp.choices[0].logprobs is None


def test_top_logprobs_needs_logprobs(client):
    for extra in ({"top_logprobs": 2}, {"top_logprobs": 0, "logprobs": False}):
        with pytest.raises(openai.BadRequestError) as exc:
            client.chat.completions.create(model=DEFAULT_MODEL, messages=[user("x")], **extra)
        assert exc.value.body["param"] == "top_logprobs"


def test_logprobs_with_tool_calls_is_null(client, spec):
    resp = create(client, spec, "x", tools=[WEATHER], tool_choice="required", logprobs=True, top_logprobs=2)
    assert resp.choices[0].logprobs is None


# --- determinism ------------------------------------------------------------------------------------

def test_same_seed_same_output(client, spec):
    def run(seed):
        tool_reply = create(client, spec, "plan a trip to Rome", tools=TOOLS, tool_choice="required", seed=seed)
        json_reply = create(client, spec, "plan a trip to Rome", seed=seed, response_format={
            "type": "json_schema", "json_schema": {"name": "r", "schema": RECIPE}})
        logprob_reply = create(client, spec, "plan a trip to Rome", seed=seed, logprobs=True, top_logprobs=3)
        return (
            calls_of(tool_reply.choices[0].message),
            json_reply.choices[0].message.content,
            [e.model_dump() for e in logprob_reply.choices[0].logprobs.content],
        )

    first = run(42)
    assert run(42) == first
    others = [run(seed) for seed in (43, 44, 45)]
    for part in range(3):
        assert any(other[part] != first[part] for other in others), f"seed changes nothing in part {part}"
