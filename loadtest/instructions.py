#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind: the user-space work of a server (or of
standin-load) per request, repeatable to a fraction of a percent whatever else the machine is doing. CPU time
on this shared machine swings by 15-30 % between runs; this does not, so it is how small changes to the hot
path are judged. It counts user space only: the kernel's share (about two thirds of a request here) is not in
it, so a ratio of instructions is not a ratio of CPU time.

    python3 loadtest/instructions.py [--requests 20000] [--streams 5000] [--only standin]

Each server runs under callgrind pinned to core 0; standin-load, not under valgrind, sends the requests from
core 1 at concurrency 64. The counters are zeroed after a warm-up of 500 requests, so start-up is not counted.
Then the same for standin-load itself, against a server running normally: over its whole run, and on its
worker threads alone (the load, without start-up and the final statistics). Then wrk, when installed, with
the same chat body at concurrency 64, over its whole run: the client the harness is held against.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

WARMUP = 500
STREAM_PROMPT = "one two three four five six seven eight"


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def harness(url, n, extra, valgrind_out=None):
    """standin-load pinned to the load core (under callgrind when `valgrind_out`); its JSON report."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        report_path = out.name
    argv = [os.path.join(bench.RELEASE, "standin-load"), "--url", url, "--quiet", "--workers", "1",
            "--requests", str(n), "--warmup", "0", "--concurrency", "64", "--json", report_path] + extra
    if valgrind_out:
        argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
                f"--callgrind-out-file={valgrind_out}"] + argv
    bench.sh(["taskset", "-c", bench.LOAD_CORE] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(report_path) as f:
        report = json.load(f)
    os.unlink(report_path)
    if report["failed"]:
        raise RuntimeError(f"{report['failed']} requests failed")
    return report


def thread_totals(path):
    """{thread number: instructions} of a `--separate-threads=yes` run (files `path-01`, `path-02`, ...)."""
    totals = {}
    for name in os.listdir(os.path.dirname(path)):
        if name.startswith(os.path.basename(path) + "-"):
            part = os.path.join(os.path.dirname(path), name)
            with open(part) as f:
                thread = next(int(line.split()[1]) for line in f if line.startswith("thread:"))
            totals[thread] = callgrind_total(part)
            os.unlink(part)
    return totals


def wrk_per_request(url, seconds=6):
    """wrk (one thread, 64 connections, the same chat body) under callgrind: instructions per request over
    its whole run."""
    out = tempfile.mktemp(suffix=".callgrind")
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    body = json.dumps({"model": "mock-gpt-model", "messages": [{"role": "user", "content": "Hello"}]})
    script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                 'wrk.headers["Content-Type"] = "application/json"\n')
    script.close()
    text = subprocess.run(["taskset", "-c", bench.LOAD_CORE, "valgrind", "--tool=callgrind",
                           f"--callgrind-out-file={out}", "wrk", "-t1", "-c64", f"-d{seconds}s", "-s",
                           script.name, url + "/v1/chat/completions"],
                          check=True, capture_output=True, text=True).stdout
    os.unlink(script.name)
    done = int(re.search(r"(\d+) requests in", text).group(1))
    total = callgrind_total(out)
    os.unlink(out)
    return total / done


def server_per_request(name, argv, n, extra):
    """Instructions the server ran per completed request, start-up and warm-up excluded."""
    out = tempfile.mktemp(suffix=".callgrind")
    server = bench.Server(name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + argv)
    try:
        harness(server.url, WARMUP, extra)
        bench.sh(["callgrind_control", "--zero", str(server.proc.pid)], stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
        report = harness(server.url, n, extra)
    finally:
        server.proc.send_signal(2)
        server.proc.wait(timeout=60)
    total = callgrind_total(out)
    os.unlink(out)
    return total / report["completed"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--streams", type=int, default=5000)
    ap.add_argument("--only", choices=["standin", "floor", "harness"], help="measure just this one")
    args = ap.parse_args()
    bench.sh(["cargo", "build", "--release", "--workspace", "--quiet"])
    standin = [os.path.join(bench.RELEASE, "standin"), "--listen", "127.0.0.1:0", "--quiet", "--workers", "1"]
    floor = [os.path.join(bench.RELEASE, "standin-floor"), "--listen", "127.0.0.1:0", "--workers", "1"]
    stream = ["--stream", "--prompt", STREAM_PROMPT]
    rows = []
    if args.only in (None, "standin", "floor"):
        base = server_per_request("floor", floor, args.requests, [])
        rows.append(("floor, non-stream", base, None))
    if args.only in (None, "standin"):
        rows.append(("standin, non-stream", server_per_request("standin", standin, args.requests, []), base))
        rows.append(("standin, stream of 23 events", server_per_request("standin", standin, args.streams, stream),
                     base))
    if args.only in (None, "harness"):
        server = bench.Server("standin", standin)
        try:
            for label, n, extra in (("standin-load, non-stream", args.requests, []),
                                    ("standin-load, stream of 23 events", args.streams, stream)):
                out = tempfile.mktemp(suffix=".callgrind")
                report = harness(server.url, n, extra, valgrind_out=out)
                threads = thread_totals(out)
                # The whole run includes start-up and the final statistics (the main thread); the load
                # itself runs on the worker threads.
                rows.append((label + " (whole run)", sum(threads.values()) / report["completed"], None))
                rows.append((label + " (workers)", sum(v for t, v in threads.items() if t != 1)
                             / report["completed"], None))
            if shutil.which("wrk"):
                rows.append(("wrk, non-stream (whole run)", wrk_per_request(server.url), None))
        finally:
            server.stop()
    print(f"{'who':48} {'instructions/request':>21} {'vs floor':>9}")
    for label, value, baseline in rows:
        ratio = f"{value / baseline:.2f}x" if baseline else ""
        print(f"{label:48} {value:>21,.0f} {ratio:>9}")


if __name__ == "__main__":
    main()
