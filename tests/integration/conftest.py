"""Real embedded services for the integration tests, and helpers to run Pulse processes on them.

One set of services per test session; each test gets its own database, topics and consumer
group (a unique suffix), so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.embedded import EmbeddedServices, ServiceAddresses

REPO = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.25) -> Any:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceAddresses]:
    embedded = EmbeddedServices(tmp_path_factory.mktemp("services") / ".pulse")
    addresses = embedded.start(timeout=120)
    try:
        yield addresses
    finally:
        embedded.stop()


def stop_process(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGTERM (a clean shutdown leaves the consumer group at once), SIGKILL if it hangs."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Worker:
    """A `pulse worker` process of one test."""

    env: dict[str, str]
    state_dir: Path
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel",
             os.environ.get("PULSE_TEST_WORKER_LOGLEVEL", "WARNING")],
            env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metrics_port(self) -> int:
        record = self.state_dir / "workers" / f"{self.pid}.json"

        def port() -> int | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
            return orjson.loads(record.read_bytes())["metrics_port"] if record.exists() else None

        return int(wait_for(port, 60, "the worker's /metrics port"))

    def ready(self, timeout: float = 90) -> Worker:
        """Wait until the worker owns partitions and has recovered its tables."""
        wait_for(lambda: self.total("pulse_partitions_owned") > 0, timeout,
                 "the worker to own partitions")
        return self

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.metrics_port()}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def total(self, name: str, snapshot: dict | None = None, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels` (from one `snapshot` of
        /metrics when given, so several values can be compared at the same instant)."""
        samples = snapshot if snapshot is not None else self.metrics()
        return sum(value for (metric, sample_labels), value in samples.items()
                   if metric == name and set(labels.items()) <= set(sample_labels))

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@dataclass
class PulseEnv:
    """Settings of one test: its database, topics, group and state directory."""

    addresses: ServiceAddresses
    suffix: str
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.env["PULSE_DATABASE_URL"]

    def worker(self) -> Worker:
        worker = Worker(self.env, Path(self.env["PULSE_STATE_DIR"]),
                        self.tmp / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker.start()

    def cli(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=self.env,
                                cwd=REPO, input=stdin, capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        return result

    def rows(self) -> dict[tuple[str, Any], tuple[int, ...]]:
        """daily_metrics as {(app, day): (dau, wau, mau, new_users, sessions, events)}; empty
        until the worker has created the schema."""
        with psycopg.connect(self.database_url) as conn:
            exists = conn.execute("SELECT to_regclass('daily_metrics')").fetchone()
            if exists is None or exists[0] is None:
                return {}
            return {(app, day): tuple(values) for app, day, *values in conn.execute(
                "SELECT app, day, dau, wau, mau, new_users, sessions, events FROM daily_metrics")}

    def cohorts(self) -> dict[tuple[str, Any, str], tuple[int, ...]]:
        with psycopg.connect(self.database_url) as conn:
            exists = conn.execute("SELECT to_regclass('retention_cohorts')").fetchone()
            if exists is None or exists[0] is None:
                return {}
            return {(app, day, kind): tuple(values) for app, day, kind, *values in conn.execute(
                "SELECT app, cohort_date, cohort_kind, size, d1, d3, d7, d14, d30, d60, d90 "
                "FROM retention_cohorts")}

    def deadletters(self, expected: int, timeout: float = 60) -> list[Any]:
        return self.read_topic(self.env["PULSE_DEADLETTER_TOPIC"], expected, timeout)

    def read_topic(self, topic: str, expected: int, timeout: float = 60) -> list[Any]:
        return asyncio.run(_read_topic(self.addresses.kafka_bootstrap, topic, expected, timeout))

    def counters(self) -> dict[tuple[str, Any, str, str], Any]:
        with psycopg.connect(self.database_url) as conn:
            exists = conn.execute("SELECT to_regclass('app_daily_counters')").fetchone()
            if exists is None or exists[0] is None:
                return {}
            return {(app, day, name, dim): value for app, day, name, dim, value in conn.execute(
                "SELECT app, day, counter, dimension, value FROM app_daily_counters")}

    def streaks(self) -> dict[tuple[str, str, str], tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            exists = conn.execute("SELECT to_regclass('user_streaks')").fetchone()
            if exists is None or exists[0] is None:
                return {}
            return {(app, user, kind): tuple(values) for app, user, kind, *values in conn.execute(
                "SELECT app, user_id, streak_type, current_length, record_length, current_start,"
                " current_end FROM user_streaks")}


async def _read_topic(bootstrap: str, topic: str, expected: int, wait: float) -> list[Any]:
    """Every record of `topic` from the beginning, once at least `expected` have arrived (and a
    short quiet period found no more, so an excess is visible too)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetches metadata, so the topic's partitions are known
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + wait
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for items in batch.values():
                records.extend(items)
            if len(records) >= expected:
                if quiet_until is None:
                    quiet_until = time.monotonic() + 2
                elif time.monotonic() > quiet_until:
                    break
        return records
    finally:
        await consumer.stop()


@pytest.fixture
def pulse_env(services: ServiceAddresses, tmp_path: Path) -> Iterator[PulseEnv]:
    suffix = uuid.uuid4().hex[:10]
    database = f"test_{suffix}"
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    base = services.database_url.rsplit("/", 1)[0]
    state = tmp_path / "state"
    env = {
        **os.environ,
        "PULSE_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "PULSE_DATABASE_URL": f"{base}/{database}",
        "PULSE_REDIS_URL": services.redis_url,
        "PULSE_STATE_DIR": str(state),
        "PULSE_APP_ID": f"pulse-{suffix}",
        "PULSE_INGEST_TOPIC": f"ingest-{suffix}",
        "PULSE_EVENTS_TOPIC": f"events-{suffix}",
        "PULSE_DEADLETTER_TOPIC": f"deadletters-{suffix}",
        "PULSE_DERIVED_TOPIC": f"derived-{suffix}",
        "PULSE_ALERTS_TOPIC": f"alerts-{suffix}",
        "PULSE_TRIGGERS_TOPIC": f"triggers-{suffix}",
        "PULSE_USER_PROPERTIES_TOPIC": f"user-properties-{suffix}",
        "PULSE_METRICS_PORT": "0",
        "PULSE_PARTITIONS": "4",
        "PULSE_SINK_FLUSH_SECONDS": "0.2",
    }
    pulse = PulseEnv(services, suffix, tmp_path, env)
    try:
        yield pulse
    finally:
        for worker in pulse.workers:
            worker.stop()


@dataclass
class Alertmanager:
    """A real Alertmanager (Debian's prometheus-alertmanager) on a loopback port."""

    url: str
    proc: subprocess.Popen

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            return orjson.loads(response.read())

    def for_incident(self, incident: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts() if a["labels"].get("incident") == incident]


ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
ALERTMANAGER_CONFIG = """
route:
  receiver: blackhole
  group_by: [alertname, app, incident]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1m
receivers:
  - name: blackhole
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    if not Path(ALERTMANAGER_BIN).exists():
        raise AssertionError("Alertmanager missing: apt-get install prometheus-alertmanager "
                             "(make test installs it)")
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG)
    port = free_port()
    proc = subprocess.Popen(
        [ALERTMANAGER_BIN, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=open(tmp_path / "alertmanager.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    manager = Alertmanager(f"http://127.0.0.1:{port}", proc)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{manager.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 30, "Alertmanager to be ready")
        yield manager
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
