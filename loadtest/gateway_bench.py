#!/usr/bin/env python3
"""What the gateway costs: standin-load against standin's echo directly and through a second standin that
relays to it as an `upstream` model, in one run, with ratios.

    python3 loadtest/gateway_bench.py [--seconds 8]

Both servers are pinned to core 0 and the load to core 1 (this machine has two cores). Two upstreams:
- a paced echo (`--ttft-ms 50 --itl-ms 20`, 50 tokens/s per stream), standing in for a real model whose time is spent generating:
  the figures that matter for a front (TTFT added at p50, throughput kept at concurrency 64);
- the zero-delay echo, the worst case: every request costs the upstream almost nothing, so the gateway's own
  work (two more sockets per request) is all that shows, on the same core as the upstream.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import RELEASE, Server, load, sh  # noqa: E402


def gateway_args(upstream_url):
    model = {"name": "gw", "kind": "upstream", "url": upstream_url, "upstream_model": "mock-gpt-model"}
    return [os.path.join(RELEASE, "standin"), "--listen", "127.0.0.1:0", "--quiet", "--workers", "1",
            "--models", json.dumps([model])]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    sh(["cargo", "build", "--release", "--quiet", "--workspace"])
    secs = args.seconds
    rows = []
    for label, pace in [("paced upstream (ttft 50 ms, itl 20 ms)", ["--ttft-ms", "50", "--itl-ms", "20"]),
                        ("zero-delay upstream", [])]:
        upstream = Server("upstream", [os.path.join(RELEASE, "standin"), "--listen", "127.0.0.1:0", "--quiet",
                                       "--workers", "1"] + pace)
        gateway = Server("gateway", gateway_args(upstream.url))
        try:
            runs = [("stream c=64", ["--concurrency", "64", "--stream"]),
                    ("non-stream c=64", ["--concurrency", "64"])]
            if pace:
                # Open loop (Poisson arrivals): requests do not arrive in lockstep bursts as closed-loop ones do.
                runs.append(("stream open loop 150/s", ["--rate", "150", "--max-concurrency", "256", "--stream"]))
            for kind, extra in runs:
                stream = "--stream" in extra
                direct = load(upstream.url, secs, extra)
                through = load(gateway.url, secs, extra + ["--model", "gw"])
                for d in (direct, through):
                    if d["failed"]:
                        raise SystemExit(f"{label} {kind}: {d['failed']} failed requests")
                rows.append((f"{label}, {kind}: requests/s (gateway / direct)",
                             through["request_throughput"], direct["request_throughput"]))
                key = "median_ttft_ms" if stream else "median_e2el_ms"
                rows.append((f"{label}, {kind}: p50 {'TTFT' if stream else 'latency'} ms (gateway, direct)",
                             through[key], direct[key]))
        finally:
            gateway.stop()
            upstream.stop()
    print(f"\nstandin gateway benchmark  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {os.cpu_count()} cores")
    print(f"servers pinned to core 0, load to core 1, {secs:g} s per run\n")
    print(f"{'figure':78} {'gateway':>10} {'direct':>10} {'ratio':>7} {'added':>8}")
    for name, a, b in rows:
        print(f"{name:78} {a:10.2f} {b:10.2f} {a / b if b else 0:7.3f} {a - b:8.2f}")


if __name__ == "__main__":
    main()
