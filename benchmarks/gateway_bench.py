"""Events/s and request latency of one `pulse gateway` process (embedded broker, loopback).

    .venv/bin/python benchmarks/gateway_bench.py --seconds 20

Starts the embedded services and one gateway process, then a separate load process posts
seed 001 batches (`POST /api/rest/front/analytics/events/batch/`) of 1, 10 and 100 valid
events: first closed-loop (a fixed number of requests in flight, as fast as answered) for the
throughput, then open-loop at half the 100-event throughput (requests sent on a fixed schedule,
latency counted from the scheduled time, so queueing is not hidden) for p50/p99. Every 200
means the broker acknowledged the batch (acks=all). Afterwards the gateway's own
`pulse_gateway_events_total{outcome="accepted"}` must equal the events the load process saw
acknowledged. Not part of `make test`; prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PATH = "/api/rest/front/analytics/events/batch/"
KEY = "bench-key"


# ---- the load process -------------------------------------------------------------------

def _body(run: str, n: int, size: int, ts: str) -> bytes:
    events = ",".join(
        f'{{"event_id":"{run}-{n}-{j}","type":"habit_completed","timestamp":"{ts}",'
        f'"metadata":{{"habit_id":{j},"streak":{n % 30}}}}}' for j in range(size))
    return f'{{"events":[{events}]}}'.encode()


async def load(url: str, size: int, seconds: float, concurrency: int, rate: float | None,
               run: str) -> dict[str, Any]:
    import aiohttp

    ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**12))
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(scheduled: float) -> None:
            n = next(counter)
            headers = {"X-Pulse-Key": KEY, "X-Pulse-User-Id": str(n % 1000),
                       "Content-Type": "application/json"}
            async with session.post(url + PATH, data=_body(run, n, size, ts),
                                    headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - scheduled)

        started = time.perf_counter()
        end = started + seconds
        if rate is None:  # closed loop
            async def worker() -> None:
                while time.perf_counter() < end:
                    await send(time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:  # open loop: one request every size/rate seconds, whatever is in flight
            interval = size / rate
            tasks = []
            k = 0
            while True:
                scheduled = started + k * interval
                if scheduled >= end:
                    break
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(scheduled)))
                k += 1
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    ok = statuses.get(200, 0)
    return {"batch": size, "mode": "open" if rate else "closed", "requests": len(latencies),
            "ok": ok, "events": ok * size, "seconds": elapsed,
            "events_per_s": ok * size / elapsed, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": latencies[-1] * 1000, "statuses": statuses, "rate": rate}


# ---- the orchestrating process ----------------------------------------------------------

def run_load(url: str, size: int, seconds: float, concurrency: int, rate: float | None,
             run: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--load", url, "--batch", str(size), "--seconds",
           str(seconds), "--concurrency", str(concurrency), "--run", run]
    if rate:
        cmd += ["--rate", str(rate)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout)


def accepted(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "pulse_gateway_events_total" and s.labels.get("outcome") ==
               "accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run", default="r", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        result = asyncio.run(load(args.load, args.batch, args.seconds, args.concurrency,
                                  args.rate, args.run))
        print(json.dumps(result))
        return

    sys.path.insert(0, str(REPO))
    from streams.embedded import EmbeddedServices
    from streams.gateway.auth import hash_key
    from tests.integration.conftest import free_port

    with tempfile.TemporaryDirectory() as tmp, EmbeddedServices(Path(tmp) / ".pulse") as svc:
        port = free_port()
        env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP": svc.kafka_bootstrap,
               "PULSE_STATE_DIR": str(Path(tmp) / "state"), "PULSE_GATEWAY_PORT": str(port),
               "PULSE_GATEWAY_KEYS": json.dumps({"onepercent": [hash_key(KEY)]}),
               "PULSE_GATEWAY_RATE_LIMIT": "0"}
        url = f"http://127.0.0.1:{port}"
        gateway = subprocess.Popen([sys.executable, "-m", "streams.cli", "gateway"], env=env,
                                   cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not become ready")
                time.sleep(0.2)
            warmup = run_load(url, 10, 3, 8, None, "warmup")
            results = []
            for size, concurrency in ((1, 32), (10, 16), (100, 8)):
                results.append(run_load(url, size, args.seconds, concurrency, None, f"c{size}"))
            # Half of the measured 100-event throughput, and half of the 20k ev/s target.
            half = results[-1]["events_per_s"] / 2
            results.append(run_load(url, 100, args.seconds, 64, half, "open"))
            results.append(run_load(url, 100, args.seconds, 64, 10_000, "open10k"))
            acknowledged = warmup["events"] + sum(r["events"] for r in results)
            total = accepted(url)
        finally:
            gateway.terminate()
            gateway.wait(30)

    print(f"\n{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} "
          f"· {datetime.now(UTC):%Y-%m-%d}\n")
    print("| batch | load | in flight | requests | events/s | p50 ms | p99 ms | max ms | non-200 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r, inflight in zip(results, (32, 16, 8, "open", "open"), strict=True):
        load_kind = (f"open loop, {r['rate']:,.0f} ev/s" if r["mode"] == "open"
                     else "closed loop")
        bad = sum(v for k, v in r["statuses"].items() if k != "200")
        print(f"| {r['batch']} | {load_kind} | {inflight} | {r['requests']:,} | "
              f"{r['events_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['max_ms']:.1f} | {bad} |")
    print(f"\naccepted by the gateway (its metric): {total:,.0f} events; acknowledged to the "
          f"load process: {acknowledged:,} ({'equal' if total == acknowledged else 'DIFFER'})")


if __name__ == "__main__":
    main()
