"""Fixtures for the Python client tests of standin.

- `server_factory`: starts the real binary (env STANDIN_BIN, default
  <repo>/target/debug/standin) with `--listen 127.0.0.1:0 --quiet` plus extra
  flags, reads `standin listening on http://ADDR` from its stdout, and kills it
  at the end of the session. Servers are shared per distinct flag list.
- `base_url`: the default server (no flags), e.g. `http://127.0.0.1:41234`.
- `spec`: validates JSON against `#/components/schemas/NAME` of the OpenAI
  subset spec (<repo>/../shared/openai-spec/openai-subset.yaml or env
  STANDIN_SPEC). Without the file, validation is a no-op and the run says
  "schema validation skipped" once, in the terminal summary.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "debug" / "standin"
DEFAULT_SPEC = REPO.parent / "shared" / "openai-spec" / "openai-subset.yaml"

LISTENING = re.compile(r"^standin listening on (http://127\.0\.0\.1:(\d+))$")
#: A debug build starts in milliseconds; this only guards against a hang.
START_TIMEOUT_S = 15.0


class Server:
    """One running standin process."""

    def __init__(self, binary: Path, args: tuple[str, ...], env: dict[str, str] | None):
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("STANDIN_")}
        child_env.update(env or {})
        self.args = args
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(binary), "--listen", "127.0.0.1:0", "--quiet", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=child_env,
        )
        first_line: list[bytes] = []
        reader = threading.Thread(target=lambda: first_line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        line = first_line[0].decode("utf-8", "replace").rstrip("\n") if first_line else None
        match = LISTENING.match(line or "")
        if not match:
            self.stop()
            pytest.fail(
                f"standin {' '.join(args)} did not print 'standin listening on http://ADDR' "
                f"within {START_TIMEOUT_S}s; stdout line: {line!r}; exit: {self.proc.returncode}; "
                f"stderr: {self.stderr_text()!r}",
                pytrace=False,
            )
        self.base_url = match.group(1)
        self.port = int(match.group(2))
        self.addr = ("127.0.0.1", self.port)
        # Keep draining stdout so a chatty server can never block on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stop(self) -> int | None:
        """Kills the process; returns the exit code it had *before* the kill
        (None if it was still running, as it should be)."""
        before = self.proc.poll()
        if before is None:
            self.proc.kill()
        self.proc.wait(10)
        return before


def _binary() -> Path:
    binary = Path(os.environ.get("STANDIN_BIN", DEFAULT_BIN))
    if not binary.is_file():
        pytest.fail(f"standin binary not found at {binary} (run `cargo build` or set STANDIN_BIN)", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def server_factory():
    """`server_factory(*flags, env=None) -> Server`; one process per distinct
    (flags, env), started on first use and killed at the end of the session."""
    servers: dict[tuple, Server] = {}

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        key = (args, tuple(sorted((env or {}).items())))
        if key not in servers:
            servers[key] = Server(_binary(), args, env)
        return servers[key]

    yield start
    crashed = []
    for server in servers.values():
        code = server.stop()
        if code is not None:
            crashed.append(f"standin {' '.join(server.args)} exited early with {code}: {server.stderr_text()[-2000:]}")
    assert not crashed, "\n".join(crashed)


@pytest.fixture(scope="session")
def server(server_factory) -> Server:
    """The default server: no keys, default model list."""
    return server_factory()


@pytest.fixture(scope="session")
def base_url(server) -> str:
    return server.base_url


# --- OpenAI spec --------------------------------------------------------------------------------

def _spec_path() -> Path:
    return Path(os.environ.get("STANDIN_SPEC", DEFAULT_SPEC))


def _nullable_to_anyof(node):
    """Translates OpenAPI 3.0 `nullable: true` into JSON Schema.

    The spec is declared OpenAPI 3.1 (JSON Schema 2020-12, where `nullable` is
    not a keyword), yet still uses `nullable: true` in 35 places, e.g. on the
    stream chunk's `finish_reason`, `logprobs` and `usage`. Read literally,
    `finish_reason: null` in every non-final chunk (which the real API sends)
    would be invalid. We apply the intended meaning: the value may also be null.
    """
    if isinstance(node, list):
        return [_nullable_to_anyof(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_to_anyof(value) for key, value in node.items()}
    if node.get("nullable") is True:
        rest = {key: value for key, value in node.items() if key != "nullable"}
        return {"anyOf": [rest, {"type": "null"}]}
    return node


class Spec:
    """Validates instances against named component schemas of the spec."""

    def __init__(self, path: Path):
        self.path = path
        self.available = path.is_file()
        self._validators = {}
        if not self.available:
            return
        import yaml
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        document = _nullable_to_anyof(yaml.safe_load(path.read_text(encoding="utf-8")))
        self.uri = path.resolve().as_uri()
        resource = Resource(contents=document, specification=DRAFT202012)
        self.registry = Registry().with_resource(self.uri, resource)
        self.schema_names = set(document["components"]["schemas"])

    def validate(self, instance, name: str) -> None:
        """Raises AssertionError with every violation if `instance` does not
        match `#/components/schemas/<name>`; does nothing without the spec."""
        if not self.available:
            return
        from jsonschema import Draft202012Validator

        assert name in self.schema_names, f"no schema {name} in {self.path}"
        if name not in self._validators:
            self._validators[name] = Draft202012Validator(
                {"$ref": f"{self.uri}#/components/schemas/{name}"}, registry=self.registry
            )
        errors = sorted(self._validators[name].iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            details = "\n".join(f"  at {list(e.path)}: {e.message}" for e in errors[:10])
            raise AssertionError(f"{name} validation failed:\n{details}\ninstance: {instance!r}"[:4000])


_SPEC: Spec | None = None


def _get_spec() -> Spec:
    global _SPEC
    if _SPEC is None:
        _SPEC = Spec(_spec_path())
    return _SPEC


@pytest.fixture(scope="session")
def spec() -> Spec:
    return _get_spec()


#: Lines for the end of the run: checks that could not run on this machine, said out loud.
NOTES: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if _SPEC is not None and not _SPEC.available:
        terminalreporter.write_line(f"schema validation skipped: spec not found at {_SPEC.path}")
    for note in NOTES:
        terminalreporter.write_line(note)
