"""The README's curl and Python examples work, run as written against a live
server (only `http://127.0.0.1:8000` is replaced by the test server's URL).

Collected: every ```sh block whose first line starts with `curl`, and every
```python block. The README must hold at least one of each; a missing README
or missing blocks fail (never skip).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import sse_content

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8000"
EXPECTED = "echo your last message"
BLOCK_TIMEOUT_S = 30

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[str, str]]:
    """[(language, code)] for the blocks this test runs, in README order."""
    if not README.is_file():
        return []
    blocks = []
    for match in _FENCE.finditer(README.read_text(encoding="utf-8")):
        language = match.group(1).strip().split(" ")[0].lower()
        code = match.group(2)
        if language == "sh" and code.lstrip().startswith("curl"):
            blocks.append(("sh", code))
        elif language == "python":
            blocks.append(("python", code))
    return blocks


BLOCKS = readme_blocks()


def test_readme_has_curl_and_python_examples():
    assert README.is_file(), f"{README} does not exist"
    languages = [language for language, _ in BLOCKS]
    assert "sh" in languages, "README has no ```sh block starting with curl"
    assert "python" in languages, "README has no ```python block"


def _ids():
    counts: dict[str, int] = {}
    ids = []
    for language, _ in BLOCKS:
        counts[language] = counts.get(language, 0) + 1
        ids.append(f"{language}-{counts[language]}")
    return ids


@pytest.mark.parametrize("language,code", BLOCKS, ids=_ids())
def test_readme_block_runs(base_url, tmp_path, language, code):
    code = code.replace(README_URL, base_url)
    # Never let the host's OpenAI settings point an example elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    if language == "sh":
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        script = tmp_path / "example.py"
        script.write_text(code, encoding="utf-8")
        command = [sys.executable, str(script)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S, env=env, cwd=tmp_path
    )
    report = f"--- code ---\n{code}\n--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
    assert done.returncode == 0, report
    # A streaming curl example prints SSE chunks: the phrase is split into token
    # deltas, so look for it in their concatenation as well.
    streamed = sse_content(done.stdout) or ""
    assert EXPECTED in done.stdout or EXPECTED in streamed, report
