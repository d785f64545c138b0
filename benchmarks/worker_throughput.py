"""Events/s of one `pulse worker` on generated traffic for all five apps (embedded services).

    .venv/bin/python benchmarks/worker_throughput.py --users 400 --days 30

Publishes the whole history first (historical), then starts a worker and times from its first
consumed event to the moment every event is applied and PostgreSQL holds the final rows.
Not part of `make test`; the numbers are for this class of machine, to compare side by side.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from streams.embedded import EmbeddedServices
from streams.generate import GenOptions, generate
from streams.plan import load_plans
from streams.publish import publish_file

REPO = Path(__file__).resolve().parents[1]


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()

    plans = load_plans()
    buffer = io.BytesIO()
    options = GenOptions(users=args.users, days=args.days, seed=1, end=datetime.now(UTC))
    count = 0
    for plan in plans.values():
        for event in generate(plan, options):
            buffer.write(orjson.dumps(event) + b"\n")
            count += 1
    buffer.seek(0)

    with tempfile.TemporaryDirectory() as tmp, EmbeddedServices(Path(tmp) / ".pulse") as svc:
        env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP": svc.kafka_bootstrap,
               "PULSE_DATABASE_URL": svc.database_url, "PULSE_REDIS_URL": svc.redis_url,
               "PULSE_USER_ID_SECRET": "pulse-benchmark-user-id-secret",
               "PULSE_STATE_DIR": str(Path(tmp) / "state"), "PULSE_METRICS_PORT": "0",
               "PULSE_PARTITIONS": str(args.partitions)}
        subprocess.run([sys.executable, "-m", "streams.cli", "topics", "create"], env=env,
                       check=True, capture_output=True)
        started = time.perf_counter()
        summary = publish_file(svc.kafka_bootstrap, "pulse.ingest", buffer, historical=True,
                               show_progress=False)
        publish_seconds = time.perf_counter() - started
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            record_dir = Path(tmp) / "state" / "workers"
            while not record_dir.exists() or not any(record_dir.iterdir()):
                time.sleep(0.1)
            port = orjson.loads(next(record_dir.iterdir()).read_bytes())["metrics_port"]
            first = None
            while True:
                metrics = scrape(port)
                if first is None and metrics.get("pulse_events_consumed_total", 0) > 0:
                    first = time.perf_counter()
                applied = (metrics.get("pulse_events_valid_total", 0)
                           + metrics.get("pulse_events_duplicate_total", 0))
                if applied >= count:
                    applied_at = time.perf_counter()
                    break
                time.sleep(0.05)
            while scrape(port).get("pulse_sink_pending_rows", 1) > 0:
                time.sleep(0.05)
            visible_at = time.perf_counter()
            with psycopg.connect(svc.database_url) as conn:
                rows = conn.execute("SELECT count(*) FROM daily_metrics").fetchone()
        finally:
            worker.terminate()
            worker.wait(30)
    assert first is not None
    process_seconds = applied_at - first
    table = Table(title=f"pulse worker throughput ({datetime.now(UTC):%Y-%m-%d}, "
                        f"{platform.node()}, {os.cpu_count()} cpus)")
    for column in ("events", "users", "partitions", "publish ev/s", "worker ev/s",
                   "applied → PostgreSQL s", "daily_metrics rows"):
        table.add_column(column, justify="right")
    table.add_row(f"{count:,}", f"{args.users * len(plans):,}", str(args.partitions),
                  f"{summary.sent / publish_seconds:,.0f}", f"{count / process_seconds:,.0f}",
                  f"{visible_at - applied_at:.2f}", f"{rows[0] if rows else 0}")
    Console().print(table)


if __name__ == "__main__":
    main()
