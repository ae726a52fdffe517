#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after another, then minimises each corpus.
#
#   fuzz/run.sh [SECONDS]
#
# Environment:
#   FUZZ_TARGETS="request_head chunked_body"  only these targets (default: all, in the order below)
#   FUZZ_SANITIZER=address   build with AddressSanitizer (needs RUSTC_BOOTSTRAP=1 on stable, set here);
#                            default `none`: the checked code is safe Rust, and stable builds it as is
#   FUZZ_KEEP_GOING=1        libFuzzer fork mode: record crashes and go on fuzzing (finds more than one)
#   FUZZ_CORPUS_CAP=20       inputs kept per target besides the `seed-*` files (0: no cap)
#
# New inputs land in fuzz/corpus/<target>/; afterwards each corpus is minimised (see `minimise`) so the
# committed corpus stays small: it doubles as the regression suite of `cargo test`.
# Crashes land in fuzz/artifacts/<target>/ (ignored by git): minimise one with
# `cargo fuzz tmin --sanitizer none <target> <file>` and commit it under fuzz/regressions/<target>/,
# where `cargo test` (tests/suite/fuzz_regressions.rs) replays it. Logs: fuzz/target/logs/<target>.log.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
ALL_TARGETS="request_head chunked_body chat_request completions_request embeddings_request upstream_sse upstream_framing loadtest_sse"
TARGETS="${FUZZ_TARGETS:-$ALL_TARGETS}"
SANITIZER="${FUZZ_SANITIZER:-none}"
CAP="${FUZZ_CORPUS_CAP:-20}"
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it from crates.io" >&2
    cargo install cargo-fuzz --locked
fi
if [ "$SANITIZER" != none ]; then
    # -Zsanitizer is unstable; the stable toolchain accepts it with RUSTC_BOOTSTRAP.
    export RUSTC_BOOTSTRAP=1
fi
FUZZ=(cargo fuzz run --sanitizer "$SANITIZER")

# Inputs above 4 KiB reach the 4096-byte chunk-line limits of the three framing decoders.
max_len() {
    case "$1" in
        chunked_body | upstream_framing | loadtest_sse) echo 12288 ;;
        *) echo 4096 ;;
    esac
}

# Shrinks fuzz/corpus/<target> to the `seed-*` files plus at most $CAP inputs, chosen by greedy set cover
# over edge coverage: libFuzzer's set-cover merge (-merge=1 -set_cover_merge=1 -use_counters=0, a stricter
# `cargo fuzz cmin`) records every input's edges in its control file, and the inputs adding the most edges
# not yet covered (by the seeds, then by earlier picks) are kept. Seeds keep their names, the rest are
# named by their SHA-1 as libFuzzer names them. With FUZZ_CORPUS_CAP=0 the merge's own output is kept.
minimise() {
    local target="$1" corpus="fuzz/corpus/$1" merged control
    merged="$(mktemp -d)"
    control="$(mktemp)"
    cp "$corpus"/seed-* "$merged"/ 2>/dev/null || true
    if ! "${FUZZ[@]}" "$target" "$merged" "$corpus" -- -merge=1 -set_cover_merge=1 -use_counters=0 \
        -merge_control_file="$control" -max_len="$(max_len "$target")" >>"fuzz/target/logs/$target.log" 2>&1; then
        echo "$target: merge failed, corpus left as it was (see fuzz/target/logs/$target.log)" >&2
        rm -rf "$merged" "$control"
        return
    fi
    if [ "$CAP" -gt 0 ]; then
        python3 - "$control" "$merged" "$CAP" <<'PY'
import hashlib, os, sys
control, merged, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(control).read().split("\n")
count, seeds = int(lines[0]), int(lines[1])
paths = lines[2:2 + count]
features = {}
for line in lines[2 + count:]:
    parts = line.split()
    if parts and parts[0] == "FT":
        features[int(parts[1])] = set(parts[2:])
covered = set().union(*(features.get(i, set()) for i in range(seeds)))
for name in os.listdir(merged):
    if not name.startswith("seed-"):
        os.remove(os.path.join(merged, name))
candidates = {i: f - covered for i, f in features.items() if i >= seeds}
for _ in range(cap):
    best = max(candidates, default=None, key=lambda i: (len(candidates[i]), -os.path.getsize(paths[i])))
    if best is None or not candidates[best]:
        break
    gained = candidates.pop(best)
    data = open(paths[best], "rb").read()
    open(os.path.join(merged, hashlib.sha1(data).hexdigest()), "wb").write(data)
    candidates = {i: f - gained for i, f in candidates.items()}
PY
    fi
    rm -rf "$corpus" "$control"
    mv "$merged" "$corpus"
    chmod 755 "$corpus"
}

cargo fuzz build --sanitizer "$SANITIZER"
mkdir -p fuzz/target/logs
failed=()
summary=()
for target in $TARGETS; do
    corpus="fuzz/corpus/$target"
    log="fuzz/target/logs/$target.log"
    mkdir -p "$corpus" "fuzz/regressions/$target"
    flags=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -max_len="$(max_len "$target")" -print_final_stats=1)
    if [ -n "${FUZZ_KEEP_GOING:-}" ]; then
        flags+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    fi
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$artifacts"
    touch "$artifacts/.started"
    echo "== $target: ${SECONDS_PER_TARGET}s"
    # Regressions are read as seeds (a known crash stops the run at once); new inputs go to $corpus.
    if ! "${FUZZ[@]}" "$target" "$corpus" "fuzz/regressions/$target" -- "${flags[@]}" >"$log" 2>&1; then
        failed+=("$target")
        grep -m1 -A3 "panicked at\|ERROR: libFuzzer" "$log" || true
    elif [ -n "$(find "$artifacts" -type f -newer "$artifacts/.started")" ]; then
        failed+=("$target") # fork mode exits 0 after the crashes it was told to ignore
    fi
    # The last status line before the merge: `#N DONE cov: …` (fork mode: `#N: cov: …`).
    status="$(grep -E '^#[0-9]+:?[[:space:]]' "$log" | tail -1 || true)"
    execs="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' ||
        grep -oE 'exec/s: [0-9]+' <<<"$status" | grep -oE '[0-9]+$' || true)"
    minimise "$target"
    summary+=("$(printf '%-20s %8s exec/s  %-22s corpus %4d files %7d bytes' "$target" "${execs:-?}" \
        "$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$status" || echo '?')" \
        "$(find "$corpus" -type f | wc -l)" "$(find "$corpus" -type f -exec cat {} + | wc -c)")")
done

echo
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (artifacts in fuzz/artifacts/, logs in fuzz/target/logs/)" >&2
    exit 1
fi
