"""The container image without a container engine: the Dockerfile's own build command makes the static musl
binary, which is put with the Dockerfile's passwd entry into an otherwise empty root (as `FROM scratch` does)
and started there through `chroot` as the Dockerfile's USER, with its ENV and ENTRYPOINT. The HEALTHCHECK
command runs in the same root. This proves the binary needs nothing from a filesystem (no libc, no shell),
runs unprivileged, serves the SDK, answers its own health check and drains on the STOPSIGNAL; only the
`docker build` itself is left untested (no Docker engine on these machines).

Needs the `x86_64-unknown-linux-musl` target (`.ci/run` adds it) and root for `chroot`; without either the
tests are skipped and the run says "image check skipped"."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import openai
import pytest

from conftest import NOTES, REPO

DOCKERFILE = REPO / "Dockerfile"
MUSL = "x86_64-unknown-linux-musl"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def one(kind: str) -> str:
    (value,) = [args for k, args in instructions() if k == kind]
    return value


def skip_reason() -> str | None:
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        return "image check skipped: chroot needs root"
    installed = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True)
    if MUSL not in installed.stdout.split():
        return f"image check skipped: no {MUSL} target (rustup target add {MUSL})"
    return None


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    reason = skip_reason()
    if reason:
        NOTES.append(reason)
        pytest.skip(reason)
    runs = [args for kind, args in instructions() if kind == "RUN"]
    (build,) = [r for r in runs if "cargo build" in r]
    cargo = re.search(r"cargo build [^&]+", build).group(0).split()
    passwd = re.search(r"echo '([^']+)' > /passwd", build).group(1)
    subprocess.run(cargo, cwd=REPO, check=True)
    # The final stage is exactly these two files.
    copies = [args for kind, args in instructions() if kind == "COPY" and args.startswith("--from=build")]
    assert copies == ["--from=build /standin /standin", "--from=build /passwd /etc/passwd"], copies
    root = tmp_path_factory.mktemp("scratch")
    (root / "etc").mkdir()
    shutil.copy(REPO / "target" / MUSL / "release" / "standin", root / "standin")
    (root / "etc" / "passwd").write_text(passwd + "\n")
    # pytest makes its directories private to root; an image's root is readable by its user.
    for path in (root, root / "etc", root / "standin"):
        path.chmod(0o755)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_image(root: Path, argv: list[str], env: dict[str, str]) -> list[str]:
    """`argv` started in `root` as the Dockerfile's USER, with nothing from the host's environment."""
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), shutil.which("chroot"),
            f"--userspec={one('USER')}", str(root), *argv]


def image_env(port: int) -> dict[str, str]:
    """The Dockerfile's ENV, listening on loopback instead of every interface (tests stay on 127.0.0.1)."""
    key, value = one("ENV").split("=", 1)
    assert (key, value) == ("STANDIN_LISTEN", "0.0.0.0:8000")
    return {key: f"127.0.0.1:{port}"}


def health_check(root: Path, env: dict[str, str]) -> int:
    command = json.loads(re.search(r"CMD (\[.*\])", one("HEALTHCHECK")).group(1))
    return subprocess.run(in_image(root, command, env), capture_output=True, timeout=10).returncode


def test_the_image_serves_checks_its_health_and_drains(image_root):
    port = free_port()
    env = image_env(port)
    entrypoint = json.loads(one("ENTRYPOINT"))
    proc = subprocess.Popen(in_image(image_root, entrypoint, env), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert f"listening on http://127.0.0.1:{port}" in line, line
        # chroot execs the entrypoint: this process is the server, running as the unprivileged user.
        status = Path(f"/proc/{proc.pid}/status").read_text()
        uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
        assert uid == one("USER").split(":")[0] != "0"
        assert health_check(image_root, env) == 0
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model="mock-gpt-model", messages=[{"role": "user", "content": "Hello"}])
        assert reply.choices[0].message.content.endswith("Hello")
        stream = client.chat.completions.create(
            model="mock-gpt-model", messages=[{"role": "user", "content": "Hello"}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).endswith("Hello")
        assert one("STOPSIGNAL") == "SIGTERM"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 5
        while health_check(image_root, env) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health_check(image_root, env) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
