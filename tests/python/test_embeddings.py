"""`POST /v1/embeddings` through the official `openai` SDK and raw HTTP: the SDK's default base64 path and
the float path agree, vectors are deterministic unit vectors, and bad fields are 400s naming the field."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest
from openai import OpenAI, omit

from support import tokenize

MODEL = "text-embedding-3-small"


def make_client(base_url: str, api_key: str = "sk-test") -> OpenAI:
    return OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def client(base_url):
    with make_client(base_url) as c:
        yield c


def embed(client, input, **kwargs) -> list[list[float]]:
    resp = client.embeddings.create(model=MODEL, input=input, **kwargs)
    return [d.embedding for d in resp.data]


def as_f32(vector: list[float]) -> list[float]:
    """JSON floats are the shortest text of an f32; rounding them back to f32 gives the exact values the
    base64 path carries."""
    return list(struct.unpack(f"<{len(vector)}f", struct.pack(f"<{len(vector)}f", *vector)))


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def raw(base_url: str, body: dict) -> httpx.Response:
    return httpx.post(base_url + "/v1/embeddings", json=body, timeout=20)


# --- the SDK ---------------------------------------------------------------------------------

def test_sdk_default_is_base64_and_matches_float(client):
    resp = client.embeddings.create(model=MODEL, input="The quick brown fox")
    assert resp.object == "list"
    assert resp.model == MODEL
    [data] = resp.data
    assert (data.object, data.index) == ("embedding", 0)
    # The SDK asked for base64 and decoded it into floats.
    assert isinstance(data.embedding, list) and len(data.embedding) == 1536
    [floats] = embed(client, "The quick brown fox", encoding_format="float")
    assert as_f32(floats) == data.embedding
    assert (resp.usage.prompt_tokens, resp.usage.total_tokens) == (4, 4)


def test_explicit_base64_is_left_encoded(client):
    resp = client.embeddings.create(model=MODEL, input="hi", encoding_format="base64", dimensions=8)
    text = resp.data[0].embedding
    assert isinstance(text, str)
    raw_bytes = base64.b64decode(text, validate=True)
    assert len(raw_bytes) == 8 * 4
    [floats] = embed(client, "hi", encoding_format="float", dimensions=8)
    assert list(struct.unpack("<8f", raw_bytes)) == as_f32(floats)


@pytest.mark.parametrize("encoding", [omit, "float"])
@pytest.mark.parametrize("dimensions", [1, 3, 256, 1536, 3072])
def test_unit_norm_and_dimensions(client, encoding, dimensions):
    [vector] = embed(client, "norm me", dimensions=dimensions, encoding_format=encoding)
    assert len(vector) == dimensions
    assert abs(norm(vector) - 1.0) < 1e-5


def test_list_keeps_order_and_index(client):
    texts = ["first", "second one", "third", "first", "ünïcödé 漢字 🎉"]
    resp = client.embeddings.create(model=MODEL, input=texts, dimensions=32)
    assert [d.index for d in resp.data] == list(range(len(texts)))
    vectors = [d.embedding for d in resp.data]
    for text, vector in zip(texts, vectors):
        # Each vector is the one that text gets on its own.
        assert embed(client, text, dimensions=32) == [vector]
    assert resp.usage.prompt_tokens == sum(len(tokenize(t)) for t in texts)


def test_equal_texts_equal_vectors_and_different_texts_differ(client):
    a1, b, a2, c = embed(client, ["same text", "other text", "same text", "same text "], dimensions=64)
    assert a1 == a2
    assert a1 != b and a1 != c and b != c
    # Deterministic across requests too.
    assert embed(client, "same text", dimensions=64) == [a1]


def test_token_arrays(client):
    nested = client.embeddings.create(model=MODEL, input=[[1212, 318, 257], [13]], dimensions=16)
    assert len(nested.data) == 2
    assert nested.usage.prompt_tokens == 4
    flat = client.embeddings.create(model=MODEL, input=[1212, 318, 257], dimensions=16)
    assert len(flat.data) == 1 and flat.usage.total_tokens == 3
    assert flat.data[0].embedding == nested.data[0].embedding
    assert nested.data[0].embedding != nested.data[1].embedding
    assert abs(norm(nested.data[1].embedding) - 1.0) < 1e-5


def test_most_inputs_accepted(client):
    resp = client.embeddings.create(model=MODEL, input=[f"t{i}" for i in range(2048)], dimensions=2)
    assert [d.index for d in resp.data] == list(range(2048))


# --- raw JSON against the spec ---------------------------------------------------------------

@pytest.mark.parametrize(
    "input",
    ["Hello world", ["a", "b c"], [1, 2, 3], [[1, 2], [3]]],
    ids=["string", "strings", "tokens", "token-arrays"],
)
def test_raw_float_response_matches_schema(base_url, spec, input):
    resp = raw(base_url, {"model": MODEL, "input": input, "dimensions": 8})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    spec.validate(body, "CreateEmbeddingResponse")
    assert list(body) == ["object", "data", "model", "usage"]
    for i, data in enumerate(body["data"]):
        assert data == {"object": "embedding", "index": i, "embedding": data["embedding"]}
        assert all(isinstance(x, float) for x in data["embedding"])


def test_raw_default_is_float(base_url):
    body = raw(base_url, {"model": MODEL, "input": "x"}).json()
    assert isinstance(body["data"][0]["embedding"], list)
    assert len(body["data"][0]["embedding"]) == 1536


# --- errors ----------------------------------------------------------------------------------

BAD = [
    ({"input": omit}, "input", "missing_required_parameter"),
    ({"input": 5}, "input", "invalid_type"),
    ({"input": ""}, "input", "invalid_value"),
    ({"input": []}, "input", "invalid_value"),
    ({"input": ["a", ""]}, "input[1]", "invalid_value"),
    ({"input": ["a", 1]}, "input[1]", "invalid_type"),
    ({"input": [[1], [-1]]}, "input[1][0]", "invalid_value"),
    ({"input": [f"t{i}" for i in range(2049)]}, "input", "invalid_value"),
    ({"dimensions": 0}, "dimensions", "invalid_value"),
    ({"dimensions": 100_000}, "dimensions", "invalid_value"),
    ({"dimensions": "8"}, "dimensions", "invalid_type"),
    ({"encoding_format": "hex"}, "encoding_format", "invalid_value"),
    ({"user": 5}, "user", "invalid_type"),
]


@pytest.mark.parametrize("args,param,code", BAD, ids=[f"{p}-{c}" for _, p, c in BAD])
def test_bad_request(client, args, param, code):
    kwargs = {"model": MODEL, "input": "x", **args}
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(**kwargs)
    assert exc.value.status_code == 400
    assert exc.value.body["param"] == param, exc.value.body
    assert exc.value.body["code"] == code, exc.value.body
    assert exc.value.body["type"] == "invalid_request_error"


def test_missing_model_raw(base_url):
    resp = raw(base_url, {"input": "x"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "model"


def test_strict_models(server_factory):
    srv = server_factory("--strict-models", "--models", MODEL)
    with make_client(srv.base_url) as c:
        assert len(embed(c, "ok", dimensions=4)) == 1
        with pytest.raises(openai.NotFoundError) as exc:
            c.embeddings.create(model="no-such-model", input="x")
        assert exc.value.body["code"] == "model_not_found"


def test_needs_key(server_factory):
    srv = server_factory("--api-key", "k1")
    with make_client(srv.base_url, "wrong") as c, pytest.raises(openai.AuthenticationError):
        c.embeddings.create(model=MODEL, input="x")
    with make_client(srv.base_url, "k1") as c:
        assert len(embed(c, "x", dimensions=4)[0]) == 4
