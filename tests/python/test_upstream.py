"""The `upstream` model kind through the real `openai` SDK, against servers standin did not write.

A gateway standin (`"kind": "upstream"`) relays to:
- LiteLLM's proxy (PyPI `litellm[proxy]`, `mock_response` models, on loopback; started once per module);
- loadtest/peers/sloppy_upstream.py, which breaks the OpenAI shapes the way real "compatible" servers do,
  and the FastAPI echo reference, which does not;
- a second standin, for the failures only it can inject (cut streams, 5xx, stalls).

Every HTTP exchange the SDK makes goes through a recording transport, so each response body, error body and
stream chunk the SDK saw is also validated against the OpenAI spec (`spec` fixture), not only read through
the SDK's lenient models. tests/suite/upstream.rs covers the same feature over raw TCP.
"""

from __future__ import annotations

import copy
import json
import socket
from dataclasses import dataclass, field

import httpx
import openai
import pytest

from support import DEFAULT_MODEL, echo_reply, tokenize
from upstreams import LITELLM_REPLY, Upstream, fastapi_echo, litellm_proxy, sloppy_upstream

TEXT = "Hello there"
MESSAGES = [{"role": "user", "content": TEXT}]
ECHO = echo_reply(TEXT)
#: The name of the variable the gateway reads the upstream key from (conftest drops STANDIN_* only).
KEY_VAR = "UPSTREAM_TEST_KEY"
#: The client's read timeout: far above anything the gateway waits for, so it never decides a test.
CLIENT_TIMEOUT_S = 60.0


# --- recording the wire ---------------------------------------------------------------------------------

@dataclass
class Exchange:
    """One request the SDK made and the response bytes it read (as far as it read them)."""

    method: str
    url: str
    status: int
    headers: httpx.Headers
    body: bytearray = field(default_factory=bytearray)

    @property
    def is_sse(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    def text(self) -> str:
        return bytes(self.body).decode("utf-8")

    def events(self) -> list[str]:
        """The `data:` payloads of an SSE body, in order (every event must be one `data:` line)."""
        text = self.text()
        assert text == "" or text.endswith("\n\n"), f"body ends inside an event: {text[-200:]!r}"
        payloads = []
        for event in text.split("\n\n")[:-1]:
            assert event.startswith("data: ") and "\n" not in event, f"not a single data: line: {event!r}"
            payloads.append(event[len("data: "):])
        return payloads


class _Tee(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, sink: bytearray):
        self.inner, self.sink = inner, sink

    def __iter__(self):
        for part in self.inner:
            self.sink.extend(part)
            yield part

    def close(self) -> None:
        self.inner.close()


class Recorder(httpx.BaseTransport):
    """An httpx transport that keeps a copy of every response body as the client reads it."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        exchange = Exchange(request.method, str(request.url), response.status_code, response.headers)
        self.exchanges.append(exchange)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, exchange.body),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self.inner.close()

    def take(self) -> list[Exchange]:
        taken, self.exchanges = self.exchanges, []
        return taken


class Sdk:
    """An `openai.OpenAI` client on a gateway whose wire traffic is recorded and spec-checked."""

    def __init__(self, base_url: str, spec):
        self.recorder = Recorder()
        self.spec = spec
        self.client = openai.OpenAI(
            base_url=base_url + "/v1",
            api_key="sk-client",
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
            http_client=httpx.Client(transport=self.recorder, timeout=CLIENT_TIMEOUT_S),
        )

    def chat(self, model: str, **kwargs):
        return self.client.chat.completions.create(model=model, messages=MESSAGES, **kwargs)

    def stream(self, model: str, **kwargs) -> list:
        """Every chunk of a streamed chat, the stream consumed to its end by the SDK."""
        with self.chat(model, stream=True, **kwargs) as stream:
            return list(stream)

    def checked(self) -> list[Exchange]:
        """The exchanges since the last call, each validated against the spec; returns them."""
        exchanges = self.recorder.take()
        assert exchanges, "the SDK made no request"
        for exchange in exchanges:
            check_exchange(self.spec, exchange)
        return exchanges

    def close(self) -> None:
        self.client.close()


def _response_schema(exchange: Exchange, streaming: bool) -> tuple[str, bool]:
    """(schema name, whether it is a legacy completion) for a 2xx body of `exchange`'s route."""
    path = httpx.URL(exchange.url).path
    if path.endswith("/chat/completions"):
        return ("CreateChatCompletionStreamResponse" if streaming else "CreateChatCompletionResponse"), False
    if path.endswith("/completions"):
        return "CreateCompletionResponse", True
    if path.endswith("/embeddings"):
        return "CreateEmbeddingResponse", False
    if path.endswith("/models"):
        return "ListModelsResponse", False
    if "/models/" in path:
        return "Model", False
    raise AssertionError(f"no schema known for {exchange.url}")


def _legacy_event(event: dict) -> dict:
    """A legacy completion stream event as `CreateCompletionResponse` can judge it: that schema has no null
    `finish_reason`, yet OpenAI sends null on every event but a choice's last (see test_completions.py)."""
    instance = copy.deepcopy(event)
    for choice in instance.get("choices", []):
        if choice.get("finish_reason", "absent") is None:
            choice["finish_reason"] = "stop"
    return instance


def check_exchange(spec, exchange: Exchange) -> None:
    """Validates what the SDK read: an error body (ErrorResponse, string-or-null code), a whole body, or
    every event of a stream (chunks by their schema, an error event as ErrorResponse)."""
    if exchange.status >= 400:
        body = json.loads(exchange.body)
        spec.validate(body, "ErrorResponse")
        assert_envelope(body["error"])
        return
    assert exchange.status == 200, exchange
    if exchange.is_sse:
        schema, legacy = _response_schema(exchange, streaming=True)
        for payload in exchange.events():
            if payload == "[DONE]":
                continue
            event = json.loads(payload)
            if "error" in event:
                spec.validate(event, "ErrorResponse")
                assert_envelope(event["error"])
            else:
                spec.validate(_legacy_event(event) if legacy else event, schema)
        return
    schema, _ = _response_schema(exchange, streaming=False)
    body = json.loads(exchange.body)
    spec.validate(body, schema)
    if schema == "ListModelsResponse":
        for model in body["data"]:
            spec.validate(model, "Model")


def assert_envelope(error) -> None:
    """The OpenAI error object: exactly message/type/param/code, a non-empty message and type, and a code
    that is a string or null (never the integer some upstreams send)."""
    assert isinstance(error, dict), error
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error


def content_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finish_reasons(chunks) -> list:
    return [choice.finish_reason for c in chunks for choice in c.choices]


def only(exchanges: list[Exchange]) -> Exchange:
    assert len(exchanges) == 1, exchanges
    return exchanges[0]


def gateway_models(url: str, routes: dict[str, str], **extra) -> str:
    """`--models` JSON: one upstream model per `name -> upstream model`, all relaying to `url`."""
    return json.dumps([
        {"name": name, "kind": "upstream", "url": url, "upstream_model": model, **extra}
        for name, model in routes.items()
    ])


def dead_url() -> str:
    """An http base URL on a loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def responses_by_class(server, cls: str) -> int:
    """`standin_http_responses_total{class=cls}` of a standin."""
    text = httpx.get(server.url("/metrics"), timeout=10).text
    prefix = f'standin_http_responses_total{{class="{cls}"}} '
    values = [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]
    assert len(values) == 1, text
    return int(float(values[0]))


@pytest.fixture(scope="module")
def direct_usage(base_url):
    """standin's own echo model's usage for MESSAGES: the token rule the gateway synthesises with."""
    with openai.OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=20) as client:
        usage = client.chat.completions.create(model=DEFAULT_MODEL, messages=MESSAGES).usage
    assert usage.completion_tokens == len(tokenize(ECHO))
    return usage


# --- 1. LiteLLM's proxy ---------------------------------------------------------------------------------

LITELLM_ROUTES = {
    "gw": "mock-gpt",
    "gw-ratelimit": "mock-ratelimit",
    "gw-internal": "mock-internal-error",
    "gw-unknown": "no-such-model-in-litellm",
}


@pytest.fixture(scope="module")
def litellm():
    with litellm_proxy() as up:
        yield up


@pytest.fixture(scope="module")
def litellm_gateway(server_factory, litellm: Upstream):
    """A standin relaying to LiteLLM with its master key from the environment; `gw` also lists LiteLLM's ids."""
    models = json.loads(gateway_models(litellm.api_base, LITELLM_ROUTES, api_key_env=KEY_VAR))
    models[0]["list_models"] = True
    return server_factory("--models", json.dumps(models), env={KEY_VAR: litellm.api_key})


@pytest.fixture
def via_litellm(litellm_gateway, spec):
    sdk = Sdk(litellm_gateway.base_url, spec)
    yield sdk
    sdk.close()


def test_litellm_non_stream(via_litellm):
    completion = via_litellm.chat("gw")
    assert completion.object == "chat.completion"
    [choice] = completion.choices
    assert choice.message.content == LITELLM_REPLY
    assert choice.finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    via_litellm.checked()


def test_litellm_stream(via_litellm):
    chunks = via_litellm.stream("gw")
    exchange = only(via_litellm.checked())
    assert content_of(chunks) == LITELLM_REPLY
    assert [r for r in finish_reasons(chunks) if r is not None] == ["stop"]
    assert all(c.usage is None for c in chunks)
    assert exchange.events()[-1] == "[DONE]"


def test_litellm_stream_include_usage_ends_with_a_spec_usage_chunk(via_litellm):
    # LiteLLM's own usage chunk keeps one choice with an empty delta (test_upstreams_smoke.py); OpenAI's, and
    # what the gateway promises, has `choices: []` and comes last.
    chunks = via_litellm.stream("gw", stream_options={"include_usage": True})
    exchange = only(via_litellm.checked())
    *body, last = chunks
    assert last.choices == [], last
    assert last.usage is not None and last.usage.total_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in body)
    assert content_of(body) == LITELLM_REPLY
    assert [r for r in finish_reasons(body) if r is not None] == ["stop"]
    events = exchange.events()
    assert events[-1] == "[DONE]"
    raw_last = json.loads(events[-2])
    assert raw_last["choices"] == [] and raw_last["usage"]["total_tokens"] == last.usage.total_tokens
    assert sum(1 for e in events[:-1] if json.loads(e).get("usage")) == 1, "usage sent more than once"


@pytest.mark.parametrize("stream", [False, True])
def test_litellm_rate_limit_is_a_rate_limit_error(via_litellm, stream):
    with pytest.raises(openai.RateLimitError) as caught:
        via_litellm.chat("gw-ratelimit", stream=stream)
    exchange = only(via_litellm.checked())
    assert caught.value.status_code == exchange.status == 429
    assert_envelope(json.loads(exchange.body)["error"])
    assert caught.value.body == json.loads(exchange.body)["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_litellm_internal_error_is_an_internal_server_error(via_litellm, stream):
    with pytest.raises(openai.InternalServerError) as caught:
        via_litellm.chat("gw-internal", stream=stream)
    exchange = only(via_litellm.checked())
    assert caught.value.status_code == exchange.status == 500
    assert caught.value.body["type"] == json.loads(exchange.body)["error"]["type"]


@pytest.mark.parametrize("stream", [False, True])
def test_litellm_unknown_model_is_a_bad_request(via_litellm, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        via_litellm.chat("gw-unknown", stream=stream)
    exchange = only(via_litellm.checked())
    assert caught.value.status_code == exchange.status == 400
    error = json.loads(exchange.body)["error"]
    assert "no-such-model-in-litellm" in error["message"], error
    assert error["type"] == "invalid_request_error", error


def test_litellm_models_are_listed_and_routed(via_litellm, litellm):
    ids = [m.id for m in via_litellm.client.models.list()]
    assert set(LITELLM_ROUTES) <= set(ids), ids
    assert set(litellm.models) <= set(ids), ids
    via_litellm.checked()
    # A listed LiteLLM id is routed to LiteLLM as is.
    completion = via_litellm.chat("mock-gpt")
    assert completion.choices[0].message.content == LITELLM_REPLY
    via_litellm.checked()


# --- 4. key isolation -----------------------------------------------------------------------------------

def test_litellm_master_key_never_reaches_the_client(via_litellm, litellm):
    key = litellm.api_key
    assert key.startswith("sk-standin-") and len(key) > 20
    via_litellm.chat("gw")
    via_litellm.stream("gw", stream_options={"include_usage": True})
    via_litellm.client.models.list()
    for model, error in [("gw-ratelimit", openai.RateLimitError), ("gw-internal", openai.InternalServerError),
                         ("gw-unknown", openai.BadRequestError)]:
        for stream in (False, True):
            with pytest.raises(error):
                via_litellm.chat(model, stream=stream)
    exchanges = via_litellm.recorder.take()
    assert len(exchanges) == 9
    for exchange in exchanges:
        assert key not in exchange.text(), exchange
        # Not even its random part (a masked key would still show a suffix of it).
        assert key[-8:] not in exchange.text(), exchange
        for name, value in exchange.headers.multi_items():
            assert key[-8:] not in value and key[-8:] not in name, (name, value)
    # The key did work: the gateway really authenticated to LiteLLM (which refuses requests without it).
    assert exchanges[0].status == 200
    for exchange in exchanges:
        check_exchange(via_litellm.spec, exchange)


# --- 2. the sloppy upstream and the FastAPI reference ---------------------------------------------------

SLOPPY_ROUTES = {"gw": "sloppy-model", "gw-500": "error-500", "gw-404": "error-404"}


@pytest.fixture(scope="module", params=["default", "empty_finish_reason"])
def sloppy(request):
    with sloppy_upstream(None if request.param == "default" else [request.param]) as up:
        yield up


@pytest.fixture
def via_sloppy(sloppy, server_factory, spec):
    gateway = server_factory("--models", gateway_models(sloppy.api_base, SLOPPY_ROUTES))
    sdk = Sdk(gateway.base_url, spec)
    yield sdk
    sdk.close()


def sloppy_reply(up: Upstream) -> str:
    """What the upstream generates: the echo, with two trailing spaces under `trailing_spaces`."""
    return ECHO + ("  " if "trailing_spaces" in up.extra["quirks"] else "")


def test_sloppy_quirks_are_on(sloppy):
    expected = {"default": {"no_finish_reason", "no_usage", "trailing_spaces", "no_done", "flat_errors"},
                "empty_finish_reason": {"empty_finish_reason"}}
    assert sloppy.extra["quirks"] in expected.values()


def test_sloppy_non_stream(via_sloppy, sloppy, direct_usage):
    completion = via_sloppy.chat("gw")
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    # Content is passed through untouched, trailing spaces included.
    assert choice.message.content == sloppy_reply(sloppy)
    assert completion.object == "chat.completion"
    # Synthesised (no_usage) or relayed, the numbers follow the echo's token rule.
    assert completion.usage.completion_tokens == direct_usage.completion_tokens
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    raw = json.loads(only(via_sloppy.recorder.exchanges).body)
    assert raw["choices"][0]["message"]["content"] == sloppy_reply(sloppy)
    via_sloppy.checked()


def test_sloppy_stream_ends_normally_with_done(via_sloppy, sloppy):
    chunks = via_sloppy.stream("gw")
    exchange = only(via_sloppy.checked())
    assert content_of(chunks) == sloppy_reply(sloppy)
    # Never "" (the spec's enum has no empty reason); null where the upstream said nothing.
    assert all(r in (None, "stop") for r in finish_reasons(chunks)), finish_reasons(chunks)
    assert all(c.usage is None for c in chunks)
    events = exchange.events()
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    assert all("finish_reason" in choice for e in events[:-1] for choice in json.loads(e)["choices"])


def test_sloppy_stream_include_usage_ends_with_a_usage_chunk(via_sloppy, sloppy, direct_usage):
    chunks = via_sloppy.stream("gw", stream_options={"include_usage": True})
    exchange = only(via_sloppy.checked())
    *body, last = chunks
    assert last.choices == [], last
    assert content_of(body) == sloppy_reply(sloppy)
    assert all(c.usage is None for c in body)
    assert last.usage.completion_tokens == direct_usage.completion_tokens
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert last.id == body[0].id and last.model == body[0].model
    assert exchange.events()[-1] == "[DONE]"


@pytest.mark.parametrize("stream", [False, True])
def test_sloppy_500_is_an_internal_server_error_in_the_envelope(via_sloppy, sloppy, stream):
    with pytest.raises(openai.InternalServerError) as caught:
        via_sloppy.chat("gw-500", stream=stream)
    exchange = only(via_sloppy.checked())
    assert caught.value.status_code == exchange.status == 500
    error = json.loads(exchange.body)["error"]
    # {"detail": "..."} (flat_errors) or OpenAI-shaped: the upstream's text is the message either way.
    assert error["message"] == "forced error 500 for model error-500", error
    assert error["type"] == "server_error", error
    # A flat body has no code; an OpenAI-shaped one's string code is kept.
    assert error["code"] == (None if "flat_errors" in sloppy.extra["quirks"] else "500"), error


@pytest.mark.parametrize("stream", [False, True])
def test_sloppy_404_is_a_not_found_error(via_sloppy, sloppy, stream):
    with pytest.raises(openai.NotFoundError) as caught:
        via_sloppy.chat("gw-404", stream=stream)
    exchange = only(via_sloppy.checked())
    assert caught.value.status_code == exchange.status == 404
    error = json.loads(exchange.body)["error"]
    assert error["message"] == "forced error 404 for model error-404", error
    if "flat_errors" in sloppy.extra["quirks"]:
        # No type upstream: the gateway's own for a 4xx.
        assert (error["type"], error["code"]) == ("invalid_request_error", None), error
    else:
        # The upstream's own type and code are kept.
        assert (error["type"], error["code"]) == ("server_error", "404"), error


def test_fastapi_echo_reference_is_relayed_unchanged(server_factory, spec, direct_usage):
    with fastapi_echo() as up:
        gateway = server_factory("--models", gateway_models(up.api_base, {"gw": "mock-gpt-model"}))
        sdk = Sdk(gateway.base_url, spec)
        try:
            completion = sdk.chat("gw")
            assert completion.choices[0].message.content == ECHO
            assert completion.choices[0].finish_reason == "stop"
            assert completion.usage.completion_tokens == direct_usage.completion_tokens
            chunks = sdk.stream("gw", stream_options={"include_usage": True})
            exchanges = sdk.checked()
        finally:
            sdk.close()
    *body, last = chunks
    assert content_of(body) == ECHO
    assert [r for r in finish_reasons(body) if r is not None] == ["stop"]
    assert last.choices == [] and last.usage.completion_tokens == direct_usage.completion_tokens
    assert exchanges[-1].events()[-1] == "[DONE]"


# --- 3. standin as the upstream -------------------------------------------------------------------------

def upstream_gateway(server_factory, declaration: dict):
    return server_factory("--models", json.dumps([{"name": "gw", "kind": "upstream", **declaration}]))


@pytest.fixture
def sdk_on(spec):
    made: list[Sdk] = []

    def make(server) -> Sdk:
        made.append(Sdk(server.base_url, spec))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def test_cut_upstream_stream_raises_api_error_mid_iteration(server_factory, sdk_on):
    cutting = server_factory("--fail-rate", "stream-cut:2=1")
    sdk = sdk_on(upstream_gateway(server_factory, {"url": cutting.base_url, "upstream_model": "inner"}))
    received = []
    with pytest.raises(openai.APIError) as caught:
        with sdk.client.chat.completions.create(
            model="gw", messages=[{"role": "user", "content": "a b c d e f g h"}], stream=True
        ) as stream:
            for chunk in stream:
                received.append(chunk)
    assert not isinstance(caught.value, openai.APIStatusError), "a stream that started is a 200"
    exchange = only(sdk.checked())
    assert exchange.status == 200
    assert content_of(received), "the error came before any content"
    events = exchange.events()
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert (error["code"], error["type"]) == ("upstream_error", "server_error"), error
    assert caught.value.body == error


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_from_a_failing_upstream_is_invisible(server_factory, sdk_on, stream):
    failing = server_factory("--fail-rate", "500=1")
    healthy = server_factory()
    sdk = sdk_on(upstream_gateway(server_factory, {"upstreams": [
        {"url": failing.base_url, "model": "one"},
        {"url": healthy.base_url, "model": "two"},
    ], "cooldown_ms": 1}))
    failed_before = responses_by_class(failing, "5xx")
    if stream:
        chunks = sdk.stream("gw")
        assert content_of(chunks) == ECHO
        assert {c.model for c in chunks} == {"two"}
        assert only(sdk.checked()).events()[-1] == "[DONE]"
    else:
        completion = sdk.chat("gw")
        assert (completion.model, completion.choices[0].message.content) == ("two", ECHO)
        assert only(sdk.checked()).status == 200
    assert responses_by_class(failing, "5xx") == failed_before + 1, "the failing target was not asked first"


@pytest.mark.parametrize("stream", [False, True])
def test_every_target_down_is_a_502(server_factory, sdk_on, stream):
    sdk = sdk_on(upstream_gateway(server_factory, {"upstreams": [{"url": dead_url()}, {"url": dead_url()}]}))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat("gw", stream=stream)
    exchange = only(sdk.checked())
    assert caught.value.status_code == exchange.status == 502
    error = json.loads(exchange.body)["error"]
    assert (error["code"], error["type"]) == ("upstream_error", "server_error"), error


@pytest.mark.parametrize("stream", [False, True])
def test_stalling_upstream_is_a_504(server_factory, sdk_on, stream):
    stalling = server_factory("--fail-rate", "stall=1")
    sdk = sdk_on(upstream_gateway(server_factory, {"url": stalling.base_url, "first_byte_timeout_ms": 500}))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat("gw", stream=stream)
    exchange = only(sdk.checked())
    assert caught.value.status_code == exchange.status == 504
    error = json.loads(exchange.body)["error"]
    assert error["code"] == "upstream_timeout", error


def test_legacy_completions_and_embeddings_are_relayed(server_factory, sdk_on):
    upstream = server_factory()
    sdk = sdk_on(upstream_gateway(server_factory, {"url": upstream.base_url, "upstream_model": "inner"}))
    completion = sdk.client.completions.create(model="gw", prompt="say this", max_tokens=40)
    assert completion.choices[0].text == echo_reply("say this")
    assert completion.model == "inner"
    with sdk.client.completions.create(model="gw", prompt="say this", max_tokens=40, stream=True) as stream:
        streamed = "".join(c.choices[0].text for c in stream if c.choices)
    assert streamed == completion.choices[0].text
    embeddings = sdk.client.embeddings.create(model="gw", input=["one", "two words"], encoding_format="float")
    assert [e.index for e in embeddings.data] == [0, 1] and embeddings.model == "inner"
    assert all(len(e.embedding) > 0 for e in embeddings.data)
    exchanges = sdk.checked()
    assert [e.status for e in exchanges] == [200, 200, 200]
    assert exchanges[1].events()[-1] == "[DONE]"
