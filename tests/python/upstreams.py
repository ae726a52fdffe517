"""Real OpenAI-compatible servers on 127.0.0.1, as upstreams for the tests of standin's `upstream` model kind.

Plain context managers (no pytest fixtures yet); each starts one server as a subprocess of the Python that
runs the tests (tests/run.sh's venv, target/pyvenv), on a port the OS picks, waits until it answers, yields
an `Upstream`, and kills the process group on the way out, also when the test body raised:

    with litellm_proxy() as up:        # LiteLLM proxy (PyPI `litellm[proxy]`), mock_response models, offline
        client = openai.OpenAI(base_url=up.api_base, api_key=up.api_key)
    with fastapi_echo() as up:         # loadtest/peers/fastapi_echo.py: our conforming FastAPI echo server
    with sloppy_upstream() as up:      # loadtest/peers/sloppy_upstream.py: a non-conforming one (see its doc)

A session fixture can wrap any of them: `with litellm_proxy() as up: yield up`.

LiteLLM runs without a database, UI, telemetry or network: the env below keeps its model cost map, blog
posts, policy templates and router presets local and vetoes telemetry, and every model has a loopback
`api_base` (port 9, nothing listens) so a request that ever missed the mock would fail on 127.0.0.1, not
leave the machine. It requires a master key (it refuses to start without one); each start gets a fresh one
in `Upstream.api_key`. Observed with litellm 1.108.7 (pinned in requirements.txt):

- it takes 10-20 s to start on a 2-core machine (importing litellm.proxy is most of it), hence the timeout;
- a request without `Authorization` is a 500 text/plain "Internal Server Error" (its auth error path wants
  the `prisma` package), and a wrong key a 400 `no_db_connection`: always send `api_key`;
- `mock_response` replies ignore the request (no echo, `stop`, `max_tokens`), the usage numbers are made up
  (20/10/30 non-streaming), and the `include_usage` chunk keeps one choice with an empty delta.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / "loadtest" / "peers"

#: LiteLLM imports for 10-20 s on 2 busy cores; this only guards against a hang.
LITELLM_START_TIMEOUT_S = 120.0
#: The FastAPI peers start in about a second.
PEER_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

#: The text every plain LiteLLM mock model answers.
LITELLM_REPLY = "Hello from the LiteLLM mock."
#: The fake upstream every LiteLLM model points at: the discard port on loopback, where nothing listens.
LITELLM_DEAD_API_BASE = "http://127.0.0.1:9/v1"

#: model name -> litellm_params besides model/api_key/api_base. The strings "litellm.RateLimitError",
#: "litellm.InternalServerError" and "litellm.ContextWindowExceededError" make LiteLLM raise that error;
#: `mock_delay` sleeps before the reply (before the first chunk when streaming); `mock_timeout` with `timeout`
#: raises its timeout error after `timeout` seconds.
LITELLM_MODELS: dict[str, dict] = {
    "mock-gpt": {"mock_response": LITELLM_REPLY},
    "mock-ratelimit": {"mock_response": "litellm.RateLimitError"},  # 429, type throttling_error
    "mock-internal-error": {"mock_response": "litellm.InternalServerError"},  # 500, type internal_server_error
    "mock-context-window": {"mock_response": "litellm.ContextWindowExceededError"},  # 400
    "mock-timeout": {"mock_response": LITELLM_REPLY, "mock_timeout": True, "timeout": 1},  # 408 after 1 s
    "mock-slow": {"mock_response": LITELLM_REPLY, "mock_delay": 2},  # the reply after 2 s
}

#: Keeps LiteLLM off the network and quiet about it; see the module doc.
LITELLM_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_TELEMETRY_DISABLED": "True",
    "LITELLM_TELEMETRY": "False",  # the older releases' switch
    "LITELLM_DISABLE_BUG_REPORT_LINK": "True",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_ADMIN_UI": "True",
    "NO_DOCS": "True",
    "NO_REDOC": "True",
}

#: Variables of the test run's environment that would change what a child server does or where it connects.
_DROPPED_ENV = re.compile(
    r"^(STANDIN_|LITELLM_|OPENAI_|AZURE_|ANTHROPIC_|REDIS_|DATABASE_URL|DIRECT_URL|PROXY_|UI_|"
    r"(HTTP|HTTPS|ALL)_PROXY$|(http|https|all)_proxy$)"
)

_LITELLM_READY = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:(\d+))")
_PEER_READY = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")


class UpstreamStartError(RuntimeError):
    """The server exited, or did not answer in time; the message ends with its log."""


@dataclass
class Upstream:
    """One running upstream server."""

    name: str
    base_url: str  # http://127.0.0.1:PORT, without /v1, like conftest's Server.base_url
    api_key: str  # what to send as Bearer; "unused" where the server checks none
    models: tuple[str, ...]
    proc: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)  # e.g. the LiteLLM config path, the sloppy quirks

    @property
    def api_base(self) -> str:
        """The base URL for the openai SDK: base_url + "/v1"."""
        return self.base_url + "/v1"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def url(self, path: str) -> str:
        return self.base_url + path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the server printed (stdout and stderr) so far."""
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _DROPPED_ENV.match(k)}
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def _answers(url: str, headers: Mapping[str, str], timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=dict(headers)), timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (the server and anything it spawned), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def _serve(
    name: str,
    argv: list[str],
    *,
    ready: re.Pattern,
    health_path: str,
    api_key: str,
    models: tuple[str, ...],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    extra: dict | None = None,
) -> Iterator[Upstream]:
    """Runs `argv`, waits for a `ready` line (group 1: the base URL) and a 200 from `health_path`, yields."""
    with tempfile.TemporaryDirectory(prefix=f"standin-upstream-{name}-") as tmp:
        log_path = Path(tmp) / "server.log"
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(cwd or tmp),
            env=_child_env(env),
            start_new_session=True,  # its own process group, so _stop reaches its children too
        )
        found: list[str] = []
        seen = threading.Event()

        def pump():
            # Copies the output to the log for as long as the server runs, so it can never block on a full
            # pipe, and reports the first ready line.
            with open(log_path, "ab") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if not found:
                        match = ready.search(line.decode("utf-8", "replace"))
                        if match:
                            found.append(match.group(1))
                            seen.set()
            seen.set()

        pumper = threading.Thread(target=pump, name=f"{name}-log", daemon=True)
        pumper.start()
        try:
            deadline = time.monotonic() + timeout
            seen.wait(timeout)
            upstream = None
            if found:
                upstream = Upstream(name, found[0], api_key, models, proc, log_path, dict(extra or {}))
                headers = {"Authorization": f"Bearer {api_key}"}
                while not _answers(upstream.url(health_path), headers):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        upstream = None
                        break
                    time.sleep(0.1)
            if upstream is None:
                # Its output can end a moment before the process is reaped: give an exiting server that moment.
                try:
                    code = proc.wait(timeout=5) if not found else proc.poll()
                except subprocess.TimeoutExpired:
                    code = None
                _stop(proc)
                pumper.join(5)  # the last lines
                tail = log_path.read_text("utf-8", "replace")[-4000:] if log_path.exists() else ""
                state = f"exited with {code}" if code is not None else f"did not answer within {timeout:.0f}s"
                raise UpstreamStartError(f"{name} ({' '.join(argv)}) {state}; log:\n{tail}")
            yield upstream
        finally:
            _stop(proc)
            pumper.join(5)  # EOF once the process group is gone; then the log can be removed
            proc.stdout.close()


def litellm_config(models: Mapping[str, Mapping] | None = None, master_key: str = "sk-unused") -> dict:
    """The proxy config: one `openai/gpt-3.5-turbo` deployment per model, pointed at a dead loopback
    api_base, with the given litellm_params on top; no retries; the master key."""
    return {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": "openai/gpt-3.5-turbo",
                    "api_key": "sk-upstream-unused",
                    "api_base": LITELLM_DEAD_API_BASE,
                    **params,
                },
            }
            for name, params in (LITELLM_MODELS if models is None else models).items()
        ],
        "litellm_settings": {"num_retries": 0},
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": master_key},
    }


@contextmanager
def litellm_proxy(
    models: Mapping[str, Mapping] | None = None,
    *,
    timeout: float = LITELLM_START_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> Iterator[Upstream]:
    """A LiteLLM proxy (`litellm --config ... --port 0`, one uvicorn worker) serving `models` (default
    LITELLM_MODELS). `extra["config"]` is the path of the config file it reads."""
    import yaml

    master_key = "sk-standin-" + secrets.token_hex(16)
    config = litellm_config(models, master_key)
    cli = Path(sys.executable).with_name("litellm")
    launcher = [str(cli)] if cli.exists() else [sys.executable, "-m", "litellm.proxy.proxy_cli"]
    with tempfile.TemporaryDirectory(prefix="standin-litellm-") as home:
        config_path = Path(home) / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        with _serve(
            "litellm",
            [*launcher, "--config", str(config_path), "--host", "127.0.0.1", "--port", "0", "--num_workers", "1"],
            ready=_LITELLM_READY,
            health_path="/health/liveliness",
            api_key=master_key,
            models=tuple(m["model_name"] for m in config["model_list"]),
            timeout=timeout,
            env={**LITELLM_OFFLINE_ENV, **(env or {})},
            cwd=Path(home),  # no stray .env from the caller's directory
            extra={"config": config_path},
        ) as upstream:
            yield upstream


@contextmanager
def fastapi_echo(*, timeout: float = PEER_START_TIMEOUT_S) -> Iterator[Upstream]:
    """loadtest/peers/fastapi_echo.py: standin's echo contract on FastAPI + uvicorn (model mock-gpt-model,
    any model name accepted, no auth)."""
    with _serve(
        "fastapi_echo",
        [sys.executable, str(PEERS / "fastapi_echo.py"), "--port", "0"],
        ready=_PEER_READY,
        health_path="/health",
        api_key="unused",
        models=("mock-gpt-model",),
        timeout=timeout,
    ) as upstream:
        yield upstream


@contextmanager
def sloppy_upstream(quirks: str | list[str] | tuple[str, ...] | None = None, *,
                    timeout: float = PEER_START_TIMEOUT_S) -> Iterator[Upstream]:
    """loadtest/peers/sloppy_upstream.py with `quirks` (None: its default set; "none" or []: none at all;
    else names like "no_done" or ["no_usage", "empty_finish_reason"]). Model `sloppy-model`; `error-NNN`
    answers status NNN. `extra["quirks"]` is the set the server reported."""
    if quirks is None:
        spec = "default"
    elif isinstance(quirks, str):
        spec = quirks
    else:
        spec = ",".join(quirks) or "none"
    argv = [sys.executable, str(PEERS / "sloppy_upstream.py"), "--port", "0", "--quirks", spec]
    with _serve(
        "sloppy_upstream",
        argv,
        ready=_PEER_READY,
        health_path="/health",
        api_key="unused",
        models=("sloppy-model",),
        timeout=timeout,
    ) as upstream:
        line = next((ln for ln in upstream.log().splitlines() if "listening on" in ln), "")
        reported = line.partition("quirks=")[2].strip()
        upstream.extra["quirks"] = frozenset() if reported in ("", "none") else frozenset(reported.split(","))
        yield upstream
