"""Per-key rate limits (`--rate-limit-rpm`, `--rate-limit-tpm`) seen through the real openai SDK: without
retries a refused request raises RateLimitError with OpenAI's body and headers; with retries the SDK waits
`retry-after-ms` and succeeds once the bucket has refilled."""

from __future__ import annotations

import time

import openai
import pytest
from openai import OpenAI

from support import DEFAULT_MODEL, user

#: 60 per minute: a burst of 60, then one more every second.
RPM = "60"
#: One key per test, so each test starts with a full bucket on the shared server.
KEYS = ["sk-rl-raises", "sk-rl-retries", "sk-rl-headers"]


@pytest.fixture(scope="module")
def limited(server_factory):
    flags = ["--rate-limit-rpm", RPM]
    for key in KEYS:
        flags += ["--api-key", key]
    return server_factory(*flags)


def client_for(server, key: str, retries: int = 0) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=retries, timeout=10.0)


def create(client: OpenAI):
    return client.chat.completions.create(model=DEFAULT_MODEL, messages=[user("Hello")])


def exhaust(client: OpenAI) -> None:
    """Takes every request the bucket holds."""
    for _ in range(int(RPM)):
        create(client)


def test_without_retries_the_sdk_raises_rate_limit_error(limited, spec):
    client = client_for(limited, "sk-rl-raises")
    exhaust(client)
    with pytest.raises(openai.RateLimitError) as caught:
        create(client)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert error.message.startswith("Error code: 429")
    body = error.response.json()
    spec.validate(body, "ErrorResponse")
    assert body["error"]["message"].startswith(
        f"Rate limit reached for {DEFAULT_MODEL} on requests per min (RPM): Limit 60, Used 60, Requested 1."
    )
    headers = error.response.headers
    assert headers["retry-after"] == "1"
    assert 0 < int(headers["retry-after-ms"]) <= 1000
    assert headers["x-ratelimit-limit-requests"] == RPM
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert "sk-rl" not in error.response.text


def test_with_retries_the_sdk_waits_and_succeeds(limited):
    client = client_for(limited, "sk-rl-retries", retries=2)
    exhaust(client)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model=DEFAULT_MODEL, messages=[user("again")])
    waited = time.monotonic() - started
    completion = raw.parse()
    assert completion.choices[0].message.content.endswith("again")
    # One 429, then the SDK slept retry-after-ms (up to a second) and the bucket had refilled.
    assert raw.retries_taken == 1
    assert 0.5 <= waited < 3.0, waited
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"


def test_keys_have_separate_buckets_and_every_answer_reports_them(limited):
    client = client_for(limited, "sk-rl-headers")
    raw = client.chat.completions.with_raw_response.create(model=DEFAULT_MODEL, messages=[user("x")])
    # The other tests emptied their own buckets, not this one.
    assert raw.headers["x-ratelimit-remaining-requests"] == str(int(RPM) - 1)
    assert raw.headers["x-ratelimit-limit-requests"] == RPM
    models = client.models.with_raw_response.list()
    assert models.headers["x-ratelimit-remaining-requests"] == str(int(RPM) - 1)
    stream = client.chat.completions.with_raw_response.create(
        model=DEFAULT_MODEL, messages=[user("x")], stream=True
    )
    assert stream.headers["x-ratelimit-remaining-requests"] == str(int(RPM) - 2)
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices).endswith("x")


def test_token_limit_raises_with_type_tokens(server_factory):
    server = server_factory("--rate-limit-tpm", "100")
    client = client_for(server, "sk-any")
    client.chat.completions.create(model=DEFAULT_MODEL, messages=[user("hi")], max_tokens=60)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=[user("hi")], max_tokens=60)
    assert caught.value.type == "tokens"
    assert caught.value.code == "rate_limit_exceeded"
    assert "tokens per min (TPM): Limit 100" in caught.value.response.json()["error"]["message"]
    assert caught.value.response.headers["x-ratelimit-limit-tokens"] == "100"
