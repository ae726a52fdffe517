"""Plain helpers shared by the Python client tests: the echo model's expected
output (from /work/notes/contract.md, "Echo model"), an SSE body parser, and a
tiny raw-socket HTTP exchange for the cases httpx cannot express (a request
head that never finishes, a body that is announced but never sent).
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass

DEFAULT_MODEL = "mock-gpt-model"

#: The fixed reply prefix; the contract counts it as 12 tokens.
ECHO_PREFIX = "As a mock AI Assistant, I can only echo your last message: "
#: Reply when the last message carries no text (null content, no text parts).
NO_MESSAGE_REPLY = "As a mock AI Assistant, I can only echo your last message, but there wasn't one!"

_TOKEN = re.compile(r"\s*\S+")


def tokenize(text: str) -> list[str]:
    """The contract's token rule: a run of whitespace (possibly empty) then a run
    of non-whitespace; trailing whitespace joins the last token.

    Texts without any non-whitespace are ambiguous in the contract, so the tests
    never use them.
    """
    tokens = _TOKEN.findall(text)
    if not tokens:
        raise ValueError(f"ambiguous token count for {text!r}")
    rest = text[sum(len(t) for t in tokens):]
    tokens[-1] += rest
    return tokens


def echo_reply(text: str | None) -> str:
    """The full (uncut) reply for a last message whose text is `text`."""
    if text is None:
        return NO_MESSAGE_REPLY
    return ECHO_PREFIX + text


def user(text) -> dict:
    return {"role": "user", "content": text}


def chat_body(text="Hello", **extra) -> dict:
    body = {"model": DEFAULT_MODEL, "messages": [user(text)]}
    body.update(extra)
    return body


def parse_sse(raw: bytes) -> list[dict]:
    """Parses a complete SSE body made only of `data: ...\\n\\n` events.

    Asserts the framing the contract promises: every event is one `data:` line,
    the last event is `data: [DONE]` and nothing follows it. Returns the decoded
    JSON chunks (without the [DONE] marker).
    """
    text = raw.decode("utf-8")
    assert text.endswith("data: [DONE]\n\n"), f"stream does not end with data: [DONE]: {text[-200:]!r}"
    events = text.split("\n\n")
    assert events[-1] == "", "bytes after the last event"
    payloads = []
    for event in events[:-1]:
        assert event.startswith("data: "), f"event is not a single data: line: {event!r}"
        assert "\n" not in event, f"multi-line event: {event!r}"
        payloads.append(event[len("data: "):])
    assert payloads[-1] == "[DONE]"
    assert "[DONE]" not in payloads[:-1], "[DONE] is not the last event"
    return [json.loads(p) for p in payloads[:-1]]


def sse_content(text: str) -> str | None:
    """If `text` (e.g. curl output) holds SSE chunks, the concatenated
    choices[0].delta.content of all of them; otherwise None."""
    parts = []
    found = False
    for line in text.splitlines():
        if not line.startswith("data: {"):
            continue
        found = True
        chunk = json.loads(line[len("data: "):])
        for choice in chunk.get("choices", []):
            if choice.get("index") == 0 and choice.get("delta", {}).get("content"):
                parts.append(choice["delta"]["content"])
    return "".join(parts) if found else None


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after the response

    def json(self):
        return json.loads(self.body)


def raw_exchange(addr: tuple[str, int], data: bytes, timeout: float = 5.0) -> RawResponse:
    """Sends `data` on a fresh connection and reads one Content-Length response.

    `closed` reports whether the peer closed the connection right after it
    (checked with a short read).
    """
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before a full response head: {buf!r}")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed inside the response body")
            body += chunk
        closed = False
        sock.settimeout(1.0)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
        return RawResponse(status, headers, body[:length], closed)
