"""Latency from a crisis SLA deadline to the page: at a real Alertmanager and at its webhook.

    .venv/bin/python benchmarks/safety_latency.py --incidents 200

Embedded broker and PostgreSQL, Debian's prometheus-alertmanager on loopback with a webhook
receiver served here, one `pulse worker` with the crisis SLA shortened to --sla seconds.
Detections (never escalated) are published at --rate per second; for each incident the time
its breach alert first appears in Alertmanager's API (polled every 20 ms) and at the webhook
is compared with its deadline (detection time + SLA). Target: p99 ≤ 2 s to Alertmanager.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from rich.console import Console
from rich.table import Table

from streams.embedded import EmbeddedServices
from streams.envelope import id_hash
from streams.plan import PLANS_DIR
from streams.publish import Publisher
from tables.crisis import incident_id

APP = "emotional_balance"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"  # Debian's prometheus-alertmanager
AM_CONFIG = """
route:
  receiver: hook
  group_by: [alertname, app, incident]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{port}/alerts
        send_resolved: false
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, float], dict[str, float],
                                                             dict[str, float]]:
    deadlines: dict[str, float] = {}
    at_am: dict[str, float] = {}
    at_hook: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        for alert in body.get("alerts", []):
            inc = alert["labels"].get("incident")
            if alert["labels"].get("alertname") == "CrisisSlaBreach" and inc not in at_hook:
                at_hook[inc] = time.time()
        return web.Response(text="ok")

    hook_port = free_port()
    runner = web.AppRunner(web.Application())
    runner.app.router.add_post("/alerts", hook)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    plans = tmp / "plans"
    shutil.copytree(PLANS_DIR, plans, ignore=shutil.ignore_patterns("*.md"))
    plan = plans / f"{APP}.yaml"
    plan.write_text(plan.read_text().replace("  sla_seconds: 60\n",
                                             f"  sla_seconds: {args.sla}\n"))
    am_port = free_port()
    (tmp / "am.yml").write_text(AM_CONFIG.format(port=hook_port))
    am = subprocess.Popen([ALERTMANAGER_BIN, f"--config.file={tmp / 'am.yml'}",
                           f"--storage.path={tmp / 'am'}",
                           f"--web.listen-address=127.0.0.1:{am_port}",
                           "--cluster.listen-address="],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    am_url = f"http://127.0.0.1:{am_port}"
    with EmbeddedServices(tmp / ".pulse") as svc:
        env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP": svc.kafka_bootstrap,
               "PULSE_DATABASE_URL": svc.database_url, "PULSE_REDIS_URL": svc.redis_url,
               "PULSE_USER_ID_SECRET": "pulse-benchmark-user-id-secret",
               "PULSE_STATE_DIR": str(tmp / "state"), "PULSE_METRICS_PORT": "0",
               "PULSE_PLANS_DIR": str(plans), "PULSE_ALERTMANAGER_URL": am_url}
        subprocess.run([sys.executable, "-m", "streams.cli", "topics", "create"], env=env,
                       check=True, capture_output=True)
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            async with aiohttp.ClientSession() as http:
                await _wait_ready(http, am_url, tmp / "state" / "workers")
                done = asyncio.Event()

                async def poll_alertmanager() -> None:
                    # Polled from the start, alongside publishing, every 20 ms.
                    while not done.is_set():
                        async with http.get(f"{am_url}/api/v2/alerts") as resp:
                            seen = time.time()
                            for alert in await resp.json():
                                inc = alert["labels"].get("incident")
                                if alert["labels"].get("alertname") == "CrisisSlaBreach":
                                    at_am.setdefault(inc, seen)
                        await asyncio.sleep(0.02)

                poller = asyncio.create_task(poll_alertmanager())
                publisher = Publisher(svc.kafka_bootstrap, "pulse.ingest")
                for i in range(args.incidents):
                    now = datetime.now(UTC)
                    event = {"event_id": uuid.uuid4().hex, "app": APP,
                             "event": "crisis_detected", "user_id": f"{i:032x}",
                             "timestamp": now.isoformat(), "platform": "telegram",
                             "properties": {"level": "moderate", "markers": ["m"],
                                            "confidence": 0.9}}
                    inc = incident_id(APP, event["user_id"], id_hash(APP, event["event_id"]))
                    deadlines[inc] = now.timestamp() + args.sla
                    publisher.send(orjson.dumps(event))
                    publisher.flush(5)
                    await asyncio.sleep(1 / args.rate)
                finish = time.time() + args.sla + 30
                while (len(at_am) < len(deadlines) or len(at_hook) < len(deadlines)) \
                        and time.time() < finish:
                    await asyncio.sleep(0.1)
                done.set()
                await poller
        finally:
            worker.terminate()
            worker.wait(30)
            am.terminate()
            am.wait(10)
            await runner.cleanup()
    return deadlines, at_am, at_hook


async def _wait_ready(http: aiohttp.ClientSession, am_url: str, workers: Path) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            records = list(workers.glob("*.json")) if workers.exists() else []
            if records:
                port = orjson.loads(records[0].read_bytes())["metrics_port"]
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                async with http.get(f"{am_url}/-/ready") as ready:
                    if ready.status == 200 and "\npulse_partitions_owned 4.0" in text:
                        return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("worker or Alertmanager not ready in 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="detections per second")
    parser.add_argument("--sla", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        deadlines, at_am, at_hook = asyncio.run(run(args, Path(tmp)))
    table = Table(title=f"deadline → page latency, {len(deadlines)} incidents "
                        f"({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cpus)")
    for column in ("receiver", "paged", "missing", "p50 s", "p99 s", "max s", "mean s"):
        table.add_column(column, justify="right")
    for name, arrived in (("Alertmanager API", at_am), ("webhook", at_hook)):
        lat = [arrived[i] - deadlines[i] for i in deadlines if i in arrived]
        if not lat:
            table.add_row(name, "0", str(len(deadlines)), "-", "-", "-", "-")
            continue
        table.add_row(name, str(len(lat)), str(len(deadlines) - len(lat)),
                      f"{percentile(lat, 0.5):.3f}", f"{percentile(lat, 0.99):.3f}",
                      f"{max(lat):.3f}", f"{statistics.fmean(lat):.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
