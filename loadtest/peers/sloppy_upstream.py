"""A deliberately non-conforming OpenAI-style upstream, for the tests of standin's `upstream` model kind.

It gives fastapi_echo.py's echo reply (same text, same token rule, same stop / max_tokens / n), but breaks the
OpenAI shapes the way real "OpenAI-compatible" servers do, so a test can check that standin normalises them.
fastapi_echo.py itself is not touched: it stays the load test's performance reference.

Quirks, chosen with `--quirks a,b,...` (default: every one except `empty_finish_reason`) or `--quirks none`:

    no_finish_reason     no `finish_reason` key in any choice or chunk, and no final empty-delta chunk
    empty_finish_reason  `finish_reason: ""` in every choice and every chunk (excludes no_finish_reason)
    no_usage             no `usage` in the completion, no usage chunk even with stream_options.include_usage
    trailing_spaces      two spaces appended to the reply (to the message, and to the last content chunk)
    no_done              the stream ends without `data: [DONE]`
    flat_errors          errors are `{"detail": "..."}` instead of `{"error": {"message", "type", ...}}`

Models: MODEL (`sloppy-model`) answers; `error-NNN` answers with status NNN and an error body (flat or
OpenAI-shaped, per flat_errors); any other name is a 404 error. A malformed body (bad JSON, no `messages`,
wrong types) is a 400 error and an empty `messages` list a 400 too. Routes: POST /v1/chat/completions,
GET /v1/models, GET /health.

    python loadtest/peers/sloppy_upstream.py --port 0 [--quirks no_done,flat_errors]

It prints `sloppy_upstream listening on http://127.0.0.1:PORT` once the socket accepts connections.
"""

import argparse
import json
import re
import secrets
import socket
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from fastapi_echo import ChatCompletionRequest, generate, usage

MODEL = "sloppy-model"
QUIRKS = ("no_finish_reason", "empty_finish_reason", "no_usage", "trailing_spaces", "no_done", "flat_errors")
DEFAULT_QUIRKS = frozenset(q for q in QUIRKS if q != "empty_finish_reason")
TRAILING = "  "
_ERROR_MODEL = re.compile(r"^error-([1-5][0-9][0-9])$")

app = FastAPI(title="sloppy_upstream: an OpenAI-compatible server that is not quite")
app.state.quirks = DEFAULT_QUIRKS


def quirk(name: str) -> bool:
    return name in app.state.quirks


def error(status: int, message: str, err_type: str = "invalid_request_error", code=None) -> JSONResponse:
    if quirk("flat_errors"):
        return JSONResponse(status_code=status, content={"detail": message})
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": err_type, "param": None, "code": code}},
    )


@app.exception_handler(RequestValidationError)
async def validation_error(_request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return error(400, "the request body is not valid JSON")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return error(400, f"invalid request body: {where or 'body'}: {first.get('msg', 'invalid')}")


def finish_fields(finish):
    """The finish_reason entry of a choice or chunk, per the quirks."""
    if quirk("no_finish_reason"):
        return {}
    if quirk("empty_finish_reason"):
        return {"finish_reason": ""}
    return {"finish_reason": finish}


@app.post("/v1/chat/completions")
async def chat_completions(req: ChatCompletionRequest):
    bad_status = _ERROR_MODEL.match(req.model)
    if bad_status:
        status = int(bad_status.group(1))
        return error(status, f"forced error {status} for model {req.model}", "server_error", str(status))
    if req.model != MODEL:
        return error(404, f"The model '{req.model}' does not exist", "invalid_request_error", "model_not_found")
    if not req.messages:
        return error(400, "'messages' must not be empty")
    text, tokens, finish = generate(req)
    if quirk("trailing_spaces"):
        text += TRAILING
        tokens = tokens[:-1] + [tokens[-1] + TRAILING] if tokens else [TRAILING]
    n = req.n or 1
    meta = {"id": "chatcmpl-" + secrets.token_hex(8), "created": int(time.time()), "model": req.model}
    counts = usage(req, len(tokens) * n)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(stream_events(meta, tokens, finish, n, counts, include_usage),
                                 media_type="text/event-stream")
    body = {
        "id": meta["id"],
        "object": "chat.completion",
        "created": meta["created"],
        "model": meta["model"],
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, **finish_fields(finish)}
            for i in range(n)
        ],
    }
    if not quirk("no_usage"):
        body["usage"] = counts
    return body


async def stream_events(meta, tokens, finish, n, counts, include_usage):
    def event(choices, **extra):
        body = {"id": meta["id"], "object": "chat.completion.chunk", "created": meta["created"],
                "model": meta["model"], "choices": choices, **extra}
        return "data: " + json.dumps(body, separators=(",", ":"), ensure_ascii=False) + "\n\n"

    def chunk(index, delta, final=False):
        if quirk("no_finish_reason"):
            fields = {}
        elif quirk("empty_finish_reason"):
            fields = {"finish_reason": ""}
        else:
            fields = {"finish_reason": finish if final else None}
        return event([{"index": index, "delta": delta, **fields}])

    for i in range(n):
        yield chunk(i, {"role": "assistant", "content": ""})
    for token in tokens:
        for i in range(n):
            yield chunk(i, {"content": token})
    if not quirk("no_finish_reason"):
        for i in range(n):
            yield chunk(i, {}, final=True)
    if include_usage and not quirk("no_usage"):
        yield event([], usage=counts)
    if not quirk("no_done"):
        yield "data: [DONE]\n\n"


_STARTED = int(time.time())


@app.get("/v1/models")
async def list_models():
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": _STARTED, "owned_by": "sloppy"}]}


@app.get("/health")
async def health():
    return {"status": "ok"}


def parse_quirks(spec: str) -> frozenset:
    if spec == "default":
        return DEFAULT_QUIRKS
    if spec in ("", "none"):
        return frozenset()
    chosen = frozenset(q.strip() for q in spec.split(",") if q.strip())
    unknown = chosen - set(QUIRKS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown quirks {sorted(unknown)}; known: {', '.join(QUIRKS)}")
    if {"no_finish_reason", "empty_finish_reason"} <= chosen:
        raise argparse.ArgumentTypeError("no_finish_reason and empty_finish_reason exclude each other")
    return chosen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003, help="0 picks a free port (default 8003)")
    parser.add_argument("--quirks", type=parse_quirks, default=DEFAULT_QUIRKS,
                        help="comma-separated quirks, 'default' or 'none' (default: all but empty_finish_reason)")
    args = parser.parse_args()
    app.state.quirks = args.quirks
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    print(f"sloppy_upstream listening on http://{host}:{port} quirks={','.join(sorted(args.quirks)) or 'none'}",
          flush=True)
    uvicorn.Server(uvicorn.Config(app, workers=1, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
