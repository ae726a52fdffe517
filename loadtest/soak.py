#!/usr/bin/env python3
"""Soak test (a benchmark, not CI): thousands of paced streams for minutes, 5 % of them abandoned by the client
at a random point, then checks that the server gave back every descriptor and its memory, and that no stream was
lost or counted twice on either side.

    python3 loadtest/soak.py [--seconds 600] [--concurrency 10000] [--sources 2] [--disconnect 0.05]
                             [--warmup-seconds 20] [--keep DIR] [--json FILE] [--no-build]

What it does, in order:
1. builds the release binaries (`cargo build --release --workspace`; $CARGO_TARGET_DIR is honoured) and starts
   `standin --listen 127.0.0.1:0 --quiet --workers 1 --itl-ms 100 --idle-timeout-ms 5000` pinned to core 0, with
   its descriptor limit raised to the hard limit; records its RSS (/proc/PID/status VmRSS) and open descriptors
   (len(os.listdir(/proc/PID/fd))): the pristine start;
2. warm-up: the same load as the soak for --warmup-seconds, then waits for the server to settle and records RSS and
   descriptors again. The RSS bound is checked against this warm figure, not the pristine one: the allocator keeps
   the arenas and the coroutine stacks that the first 10,000 streams needed (glibc malloc returns little to the
   OS), which is retention, not a leak; a leak is growth *beyond* what a short run at the same concurrency left;
3. the soak: `standin-load --stream --concurrency C --sources S --duration SECONDS --disconnect P --raw FILE`, the
   load pinned to core 1, with /metrics scraped before;
4. waits for the server to settle: the idle timeout plus 3 s, then until /metrics shows no generation running and
   no connection open but the scrape's own (at most 60 s more);
5. records RSS, descriptors and /metrics after, and prints a verdict table.

Checks (exit status 1 if any fails):
- descriptors after == the pristine start, within FD_SLACK (2: a scrape's connection the server is still closing,
  a log or timer descriptor created lazily on first use);
- RSS after <= RSS after warm-up + max(RSS_SLACK_FRACTION of it, RSS_SLACK_KIB) (10 %, 8 MiB): what allocator
  fragmentation may add over a longer run at the same peak; a leak of even 10 bytes a stream over the 4.5 million
  streams of a 10-minute soak (45 MB) would exceed it;
- RSS after <= the pristine RSS + PRISTINE_SLACK_KIB (16 MiB): standin gives freed heap back to the OS after a
  quiet second (src/reclaim.rs), so memory returns close to where it started, not just to the warm-up level;
- client, from the raw file (warm-up included): completed + failed + abandoned == sent, and one record per request
  sent; no failed request;
- server, /metrics deltas over the soak against the raw file (the scrapes' own responses subtracted):
  sent - abandoned <= 2xx responses <= sent (a request reaches the server at most once; one abandoned before the
  server read it leaves no response), no other status class, completed <= finished generations
  (vllm:request_success_total) <= completed + abandoned (every completed stream finished on the server; a client
  that hangs up after the last events were written leaves a generation the server counts as finished),
  accepted connections == connections the harness opened, and after settling no generation running and only
  the scrape's connection open.

The raw file takes about 330 bytes a completed stream (some 1.5 GB for 10 minutes at 10,000 streams); it is
written to a temporary directory and removed, unless --keep DIR. Only the standard library is used.
"""

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
SERVER_CORE = "0"
LOAD_CORE = "1"
ITL_MS = 100
IDLE_TIMEOUT_MS = 5000
FD_SLACK = 2
RSS_SLACK_FRACTION = 0.10
RSS_SLACK_KIB = 8 * 1024
# What glibc's heap keeps fragmented after 10,000 streams even once standin trims it (src/reclaim.rs): measured
# 6 to 12 MiB over the pristine start; without the trim it kept about 50 MiB.
PRISTINE_SLACK_KIB = 16 * 1024
SETTLE_MAX_S = 60


def raise_nofile():
    """In the server's child process: as many descriptors as the hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """standin pinned to the server core; its address from the listening line, its memory and descriptors from
    /proc, its counters from /metrics (counting the scrapes, which /metrics itself sees)."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CORE] + argv, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, preexec_fn=raise_nofile)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"standin did not start: {line!r}")
        self.url = match.group(1)
        self.scrapes = 0
        time.sleep(0.5)

    def status_kib(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def metrics(self):
        """Every series as {name{labels}: value}; each call is one connection and one 2xx response."""
        self.scrapes += 1
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as resp:
            text = resp.read().decode()
        series = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                series[name] = float(value)
        return series

    def settle(self):
        """Waits past the idle timeout, then until nothing runs and only the scrape's connection is open."""
        time.sleep(IDLE_TIMEOUT_MS / 1000 + 3)
        deadline = time.monotonic() + SETTLE_MAX_S
        while True:
            m = self.metrics()
            idle = gauge(m, "vllm:num_requests_running") == 0 and m["standin_connections_open"] <= 1
            if idle or time.monotonic() > deadline:
                break
            time.sleep(1)
        # The last scrape's connection closes as the response ends; give the server a moment to drop it, and
        # standin a quiet second (two samples of src/reclaim.rs) to give freed heap back to the OS.
        time.sleep(2.5)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def gauge(m, name):
    """A series whose labels we do not care about (model_name=...): the sum over every label set."""
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def load(url, seconds, args, raw=None, report=None):
    """standin-load pinned to the load core, the soak's load shape; progress on our stderr."""
    argv = ["taskset", "-c", LOAD_CORE, os.path.join(RELEASE, "standin-load"), "--url", url, "--stream",
            "--workers", "1", "--concurrency", str(args.concurrency), "--sources", str(args.sources),
            "--duration", str(seconds), "--warmup", "2", "--timeout", "60", "--disconnect", str(args.disconnect),
            "--seed", str(args.seed)]
    if raw:
        argv += ["--raw", raw]
    if report:
        argv += ["--json", report]
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL if not report else None)


def raw_counts(path):
    """Counts the raw file's records by outcome (warm-up included), without parsing every line: the keys are
    compact and documented (loadtest/src/raw.rs), `"a":true` marks an abandoned request, `"f":` a failure."""
    counts = {"records": 0, "completed": 0, "failed": 0, "abandoned": 0, "warmup": 0}
    failures = {}
    with open(path) as f:
        header = json.loads(f.readline())
        trailer = None
        for line in f:
            if line.startswith('{"trailer"'):
                trailer = json.loads(line)
                continue
            counts["records"] += 1
            if '"w":true' in line:
                counts["warmup"] += 1
            if '"a":true' in line:
                counts["abandoned"] += 1
            elif '"f":' in line:
                counts["failed"] += 1
                kind = json.loads(line)["f"]
                failures[kind] = failures.get(kind, 0) + 1
            else:
                counts["completed"] += 1
    if trailer is None:
        raise RuntimeError(f"{path}: no trailer line")
    return header, trailer, counts, failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600, help="soak duration [600]")
    ap.add_argument("--concurrency", type=int, default=10000, help="streams at once [10000]")
    ap.add_argument("--sources", type=int, default=2, help="source addresses 127.0.0.1..N [2]")
    ap.add_argument("--disconnect", type=float, default=0.05, help="probability a stream is abandoned [0.05]")
    ap.add_argument("--warmup-seconds", type=float, default=20, help="warm-up run before the soak [20]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="keep the raw file and the JSON report in this directory")
    ap.add_argument("--json", help="write every figure and verdict here")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], check=True, cwd=ROOT)
    work = args.keep or tempfile.mkdtemp(prefix="standin-soak-")
    os.makedirs(work, exist_ok=True)
    raw, report = os.path.join(work, "soak-raw.jsonl"), os.path.join(work, "soak.json")

    server = Server([os.path.join(RELEASE, "standin"), "--listen", "127.0.0.1:0", "--quiet", "--workers", "1",
                     "--itl-ms", str(ITL_MS), "--idle-timeout-ms", str(IDLE_TIMEOUT_MS)])
    peak = {"rss": 0, "fds": 0}
    try:
        start = {"rss": server.status_kib("VmRSS"), "fds": server.fds()}
        print(f"standin {server.url}: pristine RSS {start['rss']} KiB, {start['fds']} descriptors", file=sys.stderr)
        print(f"warm-up: {args.warmup_seconds:g} s at concurrency {args.concurrency}", file=sys.stderr)
        load(server.url, args.warmup_seconds, args)
        server.settle()
        warm = {"rss": server.status_kib("VmRSS"), "fds": server.fds()}
        print(f"after warm-up: RSS {warm['rss']} KiB, {warm['fds']} descriptors", file=sys.stderr)

        before = server.metrics()
        scrapes_before = server.scrapes
        sampling = threading.Event()

        def sample():
            while not sampling.wait(1.0):
                peak["rss"] = max(peak["rss"], server.status_kib("VmRSS"))
                peak["fds"] = max(peak["fds"], server.fds())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        print(f"soak: {args.seconds:g} s, concurrency {args.concurrency}, disconnect {args.disconnect}",
              file=sys.stderr)
        started = time.monotonic()
        load(server.url, args.seconds, args, raw=raw, report=report)
        wall = time.monotonic() - started
        sampling.set()
        sampler.join()
        server.settle()
        after = {"rss": server.status_kib("VmRSS"), "fds": server.fds(), "hwm": server.status_kib("VmHWM")}
        scrapes_between = server.scrapes - scrapes_before  # settle's scrapes, each one response + connection
        final = server.metrics()
    finally:
        server.stop()

    header, trailer, counts, failures = raw_counts(raw)
    with open(report) as f:
        measured = json.load(f)
    delta = lambda name: gauge(final, name) - gauge(before, name)  # noqa: E731
    d2xx = delta('standin_http_responses_total{class="2xx"}') - 1 - scrapes_between
    other = sum(delta(f'standin_http_responses_total{{class="{c}"}}') for c in ("0xx", "1xx", "3xx", "4xx", "5xx"))
    successes = delta("vllm:request_success_total")
    connections = delta("standin_connections_total") - 1 - scrapes_between
    connect_failures = failures.get("connect", 0)
    rss_bound = warm["rss"] + max(warm["rss"] * RSS_SLACK_FRACTION, RSS_SLACK_KIB)
    sent = trailer["sent"]

    rows = []

    def check(name, value, want, ok, rule):
        rows.append({"check": name, "value": value, "want": want, "ok": bool(ok), "rule": rule})

    check("server descriptors after vs pristine start", after["fds"], start["fds"],
          abs(after["fds"] - start["fds"]) <= FD_SLACK, f"within {FD_SLACK}")
    check("server RSS after (KiB) vs after warm-up", after["rss"], warm["rss"], after["rss"] <= rss_bound,
          f"<= warm + max({RSS_SLACK_FRACTION:.0%}, {RSS_SLACK_KIB // 1024} MiB) = {rss_bound:.0f}")
    check("server RSS after (KiB) vs pristine start", after["rss"], start["rss"],
          after["rss"] <= start["rss"] + PRISTINE_SLACK_KIB,
          f"<= pristine + {PRISTINE_SLACK_KIB // 1024} MiB = {start['rss'] + PRISTINE_SLACK_KIB}")
    check("client: completed + failed + abandoned vs sent",
          counts["completed"] + counts["failed"] + counts["abandoned"], sent,
          counts["completed"] + counts["failed"] + counts["abandoned"] == sent, "equal")
    check("client: raw records vs sent", counts["records"], sent, counts["records"] == sent, "equal")
    check("client: failed requests", counts["failed"], 0, counts["failed"] == 0, "0")
    # A drawn hang-up point past the end of a 13-token echo (2 of the 17 points) is a completed stream.
    check("client: abandoned requests", counts["abandoned"], round(sent * args.disconnect * 15 / 17),
          counts["abandoned"] > 0 or args.disconnect == 0, "> 0 (about P x 15/17 of sent)")
    # A client that hangs up before the server read its request leaves no response behind; nothing can be
    # answered twice. So: sent - abandoned <= 2xx <= sent.
    reached = sent - connect_failures
    check("server: 2xx responses vs sent", d2xx, reached,
          reached - counts["abandoned"] <= d2xx <= reached, "sent - abandoned <= value <= sent (scrapes excluded)")
    check("server: other status classes", other, 0, other == 0, "0")
    # Every completed stream was finished by the server; a stream the client abandoned after its last event
    # was already written (finish, usage and [DONE] go out together) is finished on the server's side too.
    check("server: finished generations vs completed", successes, counts["completed"],
          counts["completed"] <= successes <= counts["completed"] + counts["abandoned"],
          "completed <= value <= completed + abandoned")
    check("server: connections accepted vs opened", connections, trailer["connections"],
          connections == trailer["connections"], "equal (scrapes excluded)")
    check("server: generations running after settling", gauge(final, "vllm:num_requests_running"), 0,
          gauge(final, "vllm:num_requests_running") == 0, "0")
    check("server: connections open after settling", final["standin_connections_open"], 1,
          final["standin_connections_open"] == 1, "1 (the scrape)")

    print(f"\nstandin soak  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {os.cpu_count()} cores; "
          f"server on core {SERVER_CORE} (--workers 1 --itl-ms {ITL_MS} --idle-timeout-ms {IDLE_TIMEOUT_MS}), "
          f"load on core {LOAD_CORE}")
    print(f"soak {args.seconds:g} s (wall {wall:.1f} s), concurrency {args.concurrency}, sources {args.sources}, "
          f"disconnect {args.disconnect}, seed {args.seed}")
    kinds = f" {failures}" if failures else ""
    print(f"sent {sent} (warm-up {counts['warmup']}), completed {counts['completed']}, failed {counts['failed']}"
          f"{kinds}, abandoned {counts['abandoned']}; connections {trailer['connections']}")
    print(f"measured: {measured['completed']} completed, {measured['request_throughput']:.0f} streams/s, "
          f"peak in-flight {measured['peak_in_flight']}, TTFT p50/p99 {measured['median_ttft_ms']:.2f}/"
          f"{measured['p99_ttft_ms']:.2f} ms, ITL p50/p99 {measured['median_itl_ms']:.2f}/"
          f"{measured['p99_itl_ms']:.2f} ms")
    print(f"server RSS KiB: pristine {start['rss']}, after warm-up {warm['rss']}, peak during soak {peak['rss']} "
          f"(VmHWM {after['hwm']}), after {after['rss']}; descriptors: pristine {start['fds']}, "
          f"after warm-up {warm['fds']}, peak {peak['fds']}, after {after['fds']}\n")
    print(f"{'check':48} {'value':>12} {'want':>12}  verdict  rule")
    for r in rows:
        verdict = "PASS" if r["ok"] else "FAIL"
        print(f"{r['check']:48} {r['value']:12.0f} {r['want']:12.0f}  {verdict:7}  {r['rule']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checks": rows, "start": start, "warm": warm, "after": after, "peak": peak,
                       "counts": counts, "failures": failures, "trailer": trailer, "header": header,
                       "measured": measured, "args": vars(args)}, f, indent=1)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
