#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (which start the real binary), then the Python
# client suite (the real `openai` SDK, JSON-schema checks against the OpenAI spec, the README's examples).
# Python packages go into a venv under target/, created on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --workspace
cargo test --locked --workspace

venv=target/pyvenv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt \
    -c tests/python/constraints.txt
STANDIN_BIN="$PWD/target/debug/standin" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python
