"""The seed's reference server (FastAPI + uvicorn, one worker) with standin's echo contract, so a load test
compares the two stacks and not two different workloads.

What it shares with standin: the reply text, the token rule and the usage counts, the response and chunk
shapes (ids, system_fingerprint, refusal/logprobs fields), the order of the stream (role chunk, one chunk per
token, finish chunk, optional usage chunk, [DONE]), stop / max_tokens / n. What it leaves out: auth, limits,
detailed validation errors. Like the seed, it validates the body with pydantic; unlike the seed, it never
sleeps between chunks.

    python loadtest/peers/fastapi_echo.py --port 8002
"""

import argparse
import json
import re
import secrets
import socket
import time
from typing import Any, Dict, List, Optional, Union

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

ECHO_PREFIX = "As a mock AI Assistant, I can only echo your last message: "
ECHO_EMPTY = "As a mock AI Assistant, I can only echo your last message, but there wasn't one!"
SYSTEM_FINGERPRINT = "fp_standin"
MODELS = ["mock-gpt-model"]

# Rust's char::is_whitespace (Unicode White_Space), which standin's token rule uses; Python's \s differs
# on a few control characters, so the class is spelled out.
_WS = "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_NOT_WS = _WS.replace("[", "[^", 1)
# A token is a run of whitespace (possibly empty) then a run of non-whitespace; whitespace at the very end
# joins the last token, and a text of whitespace only is one token.
_TOKEN = re.compile(f"{_WS}*{_NOT_WS}+(?:{_WS}+\\Z)?|{_WS}+\\Z")


def split_tokens(text: str) -> List[str]:
    return _TOKEN.findall(text)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: Union[str, List[Dict[str, Any]], None] = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: Optional[bool] = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: List[ChatMessage]
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    n: Optional[int] = None
    stop: Union[str, List[str], None] = None
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None


def message_text(message: ChatMessage) -> Optional[str]:
    """A string as is; text (and refusal) parts joined with a newline; None when there is no text."""
    content = message.content
    if content is None or isinstance(content, str):
        return content
    pieces = [
        part.get("text") if part.get("type") == "text" else part.get("refusal")
        for part in content
        if part.get("type") in ("text", "refusal")
    ]
    pieces = [p for p in pieces if isinstance(p, str)]
    return "\n".join(pieces) if pieces else None


def generate(req: ChatCompletionRequest):
    """The echo reply cut by stop, then by max tokens: (text, completion tokens per choice, finish_reason)."""
    last = message_text(req.messages[-1]) if req.messages else None
    text = ECHO_PREFIX + last if last is not None else ECHO_EMPTY
    stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    cuts = [text.find(s) for s in stops if s]
    cuts = [at for at in cuts if at >= 0]
    if cuts:
        text = text[: min(cuts)]
    tokens = split_tokens(text)
    finish = "stop"
    limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if limit is not None and len(tokens) > limit:
        tokens = tokens[:limit]
        text = "".join(tokens)
        finish = "length"
    return text, tokens, finish


def usage(req: ChatCompletionRequest, completion_tokens: int) -> Dict[str, int]:
    prompt_tokens = sum(len(split_tokens(t)) for t in map(message_text, req.messages) if t)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


app = FastAPI(title="fastapi_echo: the seed's server with standin's echo contract")


@app.post("/v1/chat/completions")
async def chat_completions(req: ChatCompletionRequest):
    if not req.messages:
        return JSONResponse(
            status_code=400,
            content={"error": {"message": "'messages' must not be empty", "type": "invalid_request_error",
                               "param": "messages", "code": "invalid_value"}},
        )
    text, tokens, finish = generate(req)
    n = req.n or 1
    meta = {
        "id": "chatcmpl-" + secrets.token_hex(8),
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    counts = usage(req, len(tokens) * n)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(
            stream_events(meta, tokens, finish, n, counts, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return {
        "id": meta["id"],
        "object": "chat.completion",
        "created": meta["created"],
        "model": meta["model"],
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
            for i in range(n)
        ],
        "usage": counts,
    }


async def stream_events(meta, tokens, finish, n, counts, include_usage):
    """Per choice a role chunk, then one chunk per token, then a finish chunk; the usage chunk; [DONE]."""

    def chunk(index, delta, finish_reason=None):
        body = {
            "id": meta["id"],
            "object": "chat.completion.chunk",
            "created": meta["created"],
            "model": meta["model"],
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            body["usage"] = None
        return "data: " + json.dumps(body, separators=(",", ":"), ensure_ascii=False) + "\n\n"

    for i in range(n):
        yield chunk(i, {"role": "assistant", "content": ""})
    for token in tokens:
        for i in range(n):
            yield chunk(i, {"content": token})
    for i in range(n):
        yield chunk(i, {}, finish)
    if include_usage:
        last = {
            "id": meta["id"],
            "object": "chat.completion.chunk",
            "created": meta["created"],
            "model": meta["model"],
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [],
            "usage": counts,
        }
        yield "data: " + json.dumps(last, separators=(",", ":"), ensure_ascii=False) + "\n\n"
    yield "data: [DONE]\n\n"


_STARTED = int(time.time())


@app.get("/v1/models")
async def list_models():
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": _STARTED, "owned_by": "standin"} for m in MODELS],
    }


@app.get("/health")
async def health():
    return {"status": "ok"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002, help="0 picks a free port (default 8002)")
    args = parser.parse_args()
    # Bind and listen here, so that port 0 works and the line below is printed only once connections are
    # accepted, as standin and standin-floor do; uvicorn then serves on this socket.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    print(f"fastapi_echo listening on http://{host}:{port}", flush=True)
    # One worker, as the seed ran it; warnings only, so no access log line per request skews the comparison.
    config = uvicorn.Config(app, workers=1, log_level="warning", backlog=2048)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
