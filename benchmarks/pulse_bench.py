"""Sections 3 and 4: the full Pulse pipeline (`python -m streams.cli worker`, every feature on,
PostgreSQL and Redis sinks) — events/s with 1 and 2 worker processes, and latency at half load.

Every run has its own app id (consumer groups, changelog), topics and database. Workers are
started on an empty ingest topic and wait until they own their partitions; then they are
paused (SIGSTOP), the stream is published, and they continue (SIGCONT): the timing starts at
the first consumed event and ends when every event is applied, summed over the workers'
/metrics, so neither start-up nor group joins nor the publisher's CPU are in the figure.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psutil
import psycopg
from confluent_kafka import Producer

from benchmarks.harness import (
    BENCH_USER_ID_SECRET,
    Figure,
    Stream,
    bucket_quantile,
    create_database,
    histogram_buckets,
    percentile,
    python,
    scrape,
    scrape_labelled,
    stop_process,
    wait_for,
)
from benchmarks.targets import METRICS_P99, PULSE_1, PULSE_2
from streams.embedded import BROKER, POSTGRES, REDIS, ServiceAddresses
from streams.envelope import user_key
from streams.generate import EventFactory
from streams.plan import load_plans
from streams.publish import Publisher

# The samples the throughput loop polls every 50 ms: only these are rendered (harness.scrape).
PROGRESS = ("pulse_events_consumed_total", "pulse_events_valid_total",
            "pulse_events_duplicate_total", "pulse_events_rejected_total")
# The workers' log level; INFO (with `benchmarks.run --keep DIR`) keeps their group joins and
# partition assignments, to tell a slow run's cause.
WORKER_LOGLEVEL = os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING")
# Latency markers: first events of new onepercent users (a profile row appears in PostgreSQL),
# of an event name the background load never carries, so its /metrics counter counts markers.
MARKER_APP = "onepercent"
MARKER_EVENT = "onboarding_completed"


@dataclass
class PulseRun:
    """The environment of one Pulse run and its worker processes."""

    name: str
    svc: ServiceAddresses
    partitions: int
    work: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    longest_silence: float = 0.0  # seconds the worker's /metrics did not answer (recovery)
    longest_stall: float | None = None  # the worker's pulse_event_loop_stall_max_seconds
    cpu_seconds: float | None = None  # the worker's process_cpu_seconds_total, restored
    caught_up: float | None = None  # seconds from restored to the catch-up's end (recovery)
    rebuild_seconds: float | None = None  # the worker's own timing of its rebuild (recovery)
    loglevel: str = WORKER_LOGLEVEL

    def __post_init__(self) -> None:
        suffix = f"{self.name}-{uuid.uuid4().hex[:6]}"
        self.state_dir = self.work / suffix
        self.state_dir.mkdir(parents=True)
        database = create_database(self.svc, f"bench_{suffix.replace('-', '_')}")
        self.ingest_topic = f"bench.{suffix}.ingest"
        self.env = {
            **os.environ,
            "PULSE_KAFKA_BOOTSTRAP": self.svc.kafka_bootstrap,
            "PULSE_DATABASE_URL": database,
            "PULSE_REDIS_URL": self.svc.redis_url,
            # vkusvill_bot accepts raw ids: workers need the pseudonymization key.
            "PULSE_USER_ID_SECRET": os.environ.get("PULSE_USER_ID_SECRET", BENCH_USER_ID_SECRET),
            "PULSE_STATE_DIR": str(self.state_dir),
            "PULSE_APP_ID": f"bench-{suffix}",
            "PULSE_INGEST_TOPIC": self.ingest_topic,
            "PULSE_EVENTS_TOPIC": f"bench.{suffix}.events",
            "PULSE_DEADLETTER_TOPIC": f"bench.{suffix}.deadletters",
            "PULSE_USER_PROPERTIES_TOPIC": f"bench.{suffix}.user_properties",
            "PULSE_DERIVED_TOPIC": f"bench.{suffix}.derived",
            "PULSE_ALERTS_TOPIC": f"bench.{suffix}.alerts",
            "PULSE_METRICS_PORT": "0",
            "PULSE_PARTITIONS": str(self.partitions),
        }
        self.database_url = database

    def start(self, workers: int) -> None:
        for i in range(workers):
            log = open(self.state_dir / f"worker-{i}.log", "ab")  # noqa: SIM115
            self.procs.append(subprocess.Popen(
                [python(), "-m", "streams.cli", "worker", "--loglevel", self.loglevel],
                env=self.env, cwd=self.state_dir, stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def ports(self) -> list[int]:
        def found() -> list[int] | None:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {proc.returncode}; see "
                                       f"{self.state_dir}/worker-*.log")
            out = []
            for proc in self.procs:
                record = self.state_dir / "workers" / f"{proc.pid}.json"
                if not record.exists():
                    return None
                out.append(int(orjson.loads(record.read_bytes())["metrics_port"]))
            return out

        ports: list[int] = wait_for(found, 120, "workers' /metrics ports", 0.1)
        return ports

    def total(self, name: str) -> float:
        return sum(scrape(port, name).get(name, 0.0) for port in self.ports())

    def ready(self) -> list[int]:
        """Wait until the workers own every partition between them, of the events topic
        (Faust's group) and of the ingest topic (the ingest loop's own group), and hold it a
        moment (a rebalance in progress shows up as a drop).

        Both groups count: the ingest group settles seconds after Faust's on the embedded
        broker. Waiting for Faust's alone, a 2-worker run sometimes began while one worker's
        ingest loop still joined, and that worker read nothing for its first 1-1.6 s: the
        slow third of 2-worker runs (~30k against ~40k events/s, 2026-11-25)."""
        ports = self.ports()
        gauges = ("pulse_partitions_owned", "pulse_ingest_partitions_owned")

        def owned() -> bool:
            snapshots = [scrape(p, *gauges) for p in ports]
            return all(sum(s.get(gauge, 0) for s in snapshots) == self.partitions
                       for gauge in gauges)

        stable_since = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if owned():
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 3.0:
                    return ports
            else:
                stable_since = None
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: partitions never settled over {len(ports)} workers")

    def publish_paused(self, records: list[tuple[bytes, bytes]]) -> None:
        """Publish to the ingest topic while the workers are paused (SIGSTOP), then let them
        go on: a run's clock starts at their first read, not at the publisher's pace."""
        self.signal(signal.SIGSTOP)
        try:
            publish_records(self.svc.kafka_bootstrap, self.ingest_topic, records)
        finally:
            self.signal(signal.SIGCONT)

    def signal(self, sig: signal.Signals) -> None:
        for proc in self.procs:
            proc.send_signal(sig)

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.send_signal(signal.SIGCONT)
            stop_process(proc)


@contextlib.contextmanager
def pulse_run(name: str, svc: ServiceAddresses, partitions: int, work: Path,
              workers: int) -> Iterator[PulseRun]:
    run = PulseRun(name, svc, partitions, work)
    run.start(workers)
    try:
        yield run
    finally:
        run.stop()


def spy_on(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` (all threads, without pausing it) into collapsed stacks."""
    return subprocess.Popen(
        [str(Path(python()).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "100",
         "--nonblocking", "--format", "raw", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    with contextlib.suppress(subprocess.TimeoutExpired):
        spy.wait(30)
    stop_process(spy)


def publish_records(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    publisher = Publisher(bootstrap, topic)
    for value, key in records:
        publisher.send(value, key)
    if publisher.flush(120) or publisher.summary.sent != len(records):
        raise RuntimeError(f"publish to {topic} incomplete: {publisher.summary}")


@dataclass
class CpuUse:
    """Cores kept busy over the measured interval (first event consumed → all applied), read
    from /proc (psutil), by part, and the whole machine's."""

    parts: dict[str, float]  # CpuClock.PARTS → cores
    machine: float
    stolen: float  # cores the hypervisor ran other guests on while ours waited (steal)
    each_worker: list[float]  # the workers' cores one by one: an idle one shows here


@dataclass
class Reading:
    """CPU seconds so far (CpuClock.read)."""

    wall: float
    parts: dict[str, float]
    machine: float
    stolen: float
    workers: list[float]


class CpuClock:
    """Cumulative CPU seconds of each part of a run and of the machine, read at two instants.
    The throughput target for 2 workers compares wall-clock rates; on a machine the broker,
    PostgreSQL, Redis and this benchmark share, the second worker may find less than a core
    free: this tells the two apart."""

    PARTS = ("workers", "broker", "PostgreSQL and Redis", "benchmark")

    def __init__(self, worker_pids: list[int], svc: ServiceAddresses) -> None:
        def process(pid: int | None) -> list[psutil.Process]:
            return [psutil.Process(pid)] if pid else []

        self.roots = {
            "workers": [psutil.Process(pid) for pid in worker_pids],
            "broker": process(svc.pids.get(BROKER)),
            # The postmaster's children are its backends, read at each instant (a backend
            # that ends in between takes its CPU time with it: the pools keep theirs open).
            "PostgreSQL and Redis": [*process(svc.pids.get(POSTGRES)),
                                     *process(svc.pids.get(REDIS))],
            "benchmark": [psutil.Process()],  # the /metrics polling of this loop
        }

    @staticmethod
    def _seconds(proc: psutil.Process, children: bool = True) -> float:
        total = 0.0
        with contextlib.suppress(psutil.Error):  # a backend gone meanwhile
            for one in (proc, *(proc.children(recursive=True) if children else ())):
                with contextlib.suppress(psutil.Error):
                    times = one.cpu_times()
                    total += times.user + times.system
        return total

    def read(self) -> Reading:
        machine = psutil.cpu_times()
        # Work done on this machine's CPUs; guest time is inside user time already (proc(5)),
        # and steal is time the hypervisor gave to others.
        busy = sum(getattr(machine, part, 0.0)
                   for part in ("user", "nice", "system", "irq", "softirq"))
        workers = [self._seconds(proc) for proc in self.roots["workers"]]
        # This benchmark's children are the workers and the services: counted on their own.
        parts = {name: sum(workers) if name == "workers" else
                 sum(self._seconds(proc, children=name != "benchmark") for proc in procs)
                 for name, procs in self.roots.items()}
        return Reading(time.perf_counter(), parts, busy, getattr(machine, "steal", 0.0), workers)

    @staticmethod
    def between(start: Reading, end: Reading) -> CpuUse:
        wall = max(end.wall - start.wall, 1e-9)
        return CpuUse({name: (end.parts[name] - start.parts[name]) / wall for name in start.parts},
                      (end.machine - start.machine) / wall, (end.stolen - start.stolen) / wall,
                      [(b - a) / wall for a, b in zip(start.workers, end.workers, strict=True)])


def measure_throughput(name: str, svc: ServiceAddresses, stream: Stream, partitions: int,
                       work: Path, workers: int, profile: Path | None = None,
                       timeout: float = 900) -> tuple[float, float, str, CpuUse]:
    """(events/s from first consumed to all applied, seconds applied → sinks drained, note,
    cores busy meanwhile)."""
    with pulse_run(name, svc, partitions, work, workers) as run:
        ports = run.ready()
        clock = CpuClock([proc.pid for proc in run.procs], svc)
        run.publish_paused(stream.records)
        spy = None if profile is None else spy_on(run.procs[0].pid, profile)
        first = None
        cpu_first = cpu_applied = clock.read()
        deadline = time.monotonic() + timeout
        while True:
            snapshots = [scrape(port, *PROGRESS) for port in ports]
            now = time.perf_counter()

            def total(metric: str, snaps: list[dict[str, float]] = snapshots) -> float:
                return sum(s.get(metric, 0.0) for s in snaps)

            if first is None and total("pulse_events_consumed_total") > 0:
                first = now
                cpu_first = clock.read()
            applied = total("pulse_events_valid_total") + total("pulse_events_duplicate_total")
            rejected = total("pulse_events_rejected_total")
            if applied + rejected >= stream.count:
                applied_at = now
                cpu_applied = clock.read()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: applied {applied:.0f} of {stream.count}")
            time.sleep(0.05)
        valid = total("pulse_events_valid_total")

        def stored() -> tuple[int, int]:
            with psycopg.connect(run.database_url) as conn:
                found = conn.execute("SELECT count(*), coalesce(sum(events), 0) "
                                     "FROM daily_metrics").fetchone()
            return (int(found[0]), int(found[1])) if found else (0, 0)

        # Drained: every applied event counted in PostgreSQL. No rows pending is not enough:
        # the day rows are queued by a 0.5 s timer, so the sinks can be empty before the last
        # rows reach them (a run reported 94,000 of 94,106 events that way).
        wait_for(lambda: stored()[1] >= valid and sum(
            scrape(p, "pulse_sink_pending_rows").get("pulse_sink_pending_rows", 1)
            for p in ports) == 0,
            120, "every applied event in daily_metrics")
        drained = time.perf_counter() - applied_at
        if spy is not None:
            stop_spy(spy)
        row = stored()
    assert first is not None
    note = (f"{stream.count:,} events, {rejected:.0f} rejected; daily_metrics: "
            f"{row[0] if row else 0} rows, {row[1] if row else 0:,} events; sinks drained "
            f"{drained:.2f} s after the last event was applied")
    return (stream.count / (applied_at - first), drained, note,
            CpuClock.between(cpu_first, cpu_applied))


def run_throughput(svc: ServiceAddresses, stream: Stream, partitions: int, work: Path,
                   profile: Path | None = None, rounds: int = 3) -> list[Figure]:
    """1 and 2 workers, alternated `rounds` times; each figure is the median of its runs.
    Single runs of the same tree gave 7.1k-11.5k events/s within an hour on this shared
    machine, and a 2-worker ratio of 1.38-1.76×: one run decided PASS or FAIL by chance
    (docs/performance.md)."""
    setups = ((1, PULSE_1), (2, PULSE_2))
    rates: dict[int, list[float]] = {workers: [] for workers, _ in setups}
    cpu: dict[int, list[CpuUse]] = {workers: [] for workers, _ in setups}
    notes: dict[int, str] = {}
    errors: dict[int, str] = {}
    for round_ in range(rounds):
        for workers, _ in setups:
            try:
                rate, _drained, notes[workers], use = measure_throughput(
                    f"p{workers}r{round_}", svc, stream, partitions, work, workers)
                rates[workers].append(rate)
                cpu[workers].append(use)
            except Exception as err:
                errors[workers] = f"failed: {type(err).__name__}: {err}"[:300]
    figures = []
    for workers, label in setups:
        runs = rates[workers]
        if not runs:
            figures.append(Figure("pulse", label, None, "events/s", note=errors[workers]))
            continue
        spread = ", ".join(f"{rate:,.0f}" for rate in runs)
        failed = f"; {rounds - len(runs)} runs {errors[workers]}" if workers in errors else ""
        figures.append(Figure(
            "pulse", label, statistics.median(runs), "events/s",
            note=f"median of {len(runs)} runs alternated with the other worker count "
                 f"({spread}){failed}; full pipeline, {partitions} partitions; last run: "
                 f"{notes[workers]}"))
    figures.extend(cpu_figures(rates, cpu))
    if profile is not None:
        measure_throughput("profiled", svc, stream, partitions, work, 1, profile=profile)
    return figures


def cpu_figures(rates: dict[int, list[float]], cpu: dict[int, list[CpuUse]]) -> list[Figure]:
    """Events per worker CPU-second for 1 and 2 workers, with the cores each part kept busy:
    whether a 2-worker shortfall is Pulse scaling badly or the machine running out of cores
    (the broker, PostgreSQL, Redis and this benchmark share them here)."""
    figures = []
    per_cpu: dict[int, float] = {}
    for workers, uses in cpu.items():
        if not uses:
            continue
        # Run by run: a run's events/s over the cores its workers used.
        per_cpu[workers] = statistics.median(
            rate / max(use.parts["workers"], 1e-9)
            for rate, use in zip(rates[workers], uses, strict=True))
        busy = ", ".join(f"{name} {statistics.median(u.parts[name] for u in uses):.2f}"
                         for name in CpuClock.PARTS)
        each = "; ".join(" + ".join(f"{cores:.2f}" for cores in u.each_worker)
                         + f" (machine {u.machine:.2f})" for u in uses)
        figures.append(Figure(
            "pulse", f"events per worker CPU-second, {workers} worker{'s' * (workers > 1)}",
            per_cpu[workers], "events/s",
            note=f"median of {len(uses)} runs; cores busy meanwhile (medians): {busy}; whole "
                 f"machine {statistics.median(u.machine for u in uses):.2f} of "
                 f"{psutil.cpu_count() or 0}, stolen by the hypervisor "
                 f"{statistics.median(u.stolen for u in uses):.2f}; each worker, run by run: "
                 f"{each}"))
    if 1 in per_cpu and 2 in per_cpu:
        figures.append(Figure(
            "pulse", "2 workers / 1, events per worker CPU-second", per_cpu[2] / per_cpu[1], "×",
            note="1.0× means a second worker costs nothing extra per event; the wall-clock "
                 "ratio is then bounded by the cores the machine has left for it"))
    return figures


# -- latency ---------------------------------------------------------------------------------


def background_records(stream: Stream) -> list[tuple[bytes, bytes]]:
    """The stream without the marker event, so the marker's counter counts markers only."""
    out = []
    for value, key in stream.records:
        doc = orjson.loads(value)
        if doc["app"] == MARKER_APP and doc["event"] == MARKER_EVENT:
            continue
        out.append((value, key))
    return out


def _cycled(records: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """The records over and over; later rounds get new event ids (not dropped as duplicates)."""
    round_ = 0
    while True:
        for value, key in records:
            if round_:
                value = value.replace(b'"event_id":"', f'"event_id":"r{round_}-'.encode(), 1)
            yield value, key
        round_ += 1


class Background(threading.Thread):
    """Open-loop load: records on a fixed schedule at `rate`/s, whatever the worker does."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
                 rate: float) -> None:
        super().__init__(daemon=True)
        self.publisher = Publisher(bootstrap, topic)
        self.records = records
        self.rate = rate
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        started = time.perf_counter()
        source = _cycled(self.records)
        while not self.halt.is_set():
            due = int((time.perf_counter() - started) * self.rate)
            while self.sent < due:
                value, key = next(source)
                self.publisher.send(value, key)
                self.sent += 1
            time.sleep(0.005)
        self.publisher.flush(30)


def run_latency(svc: ServiceAddresses, stream: Stream, partitions: int, work: Path,
                max_rate: float | None, markers: int,
                marker_rate: float = 5.0) -> list[Figure]:
    """publish → /metrics and publish → PostgreSQL p50/p99, open-loop at half of max_rate."""
    if not max_rate:
        return [Figure("latency", METRICS_P99, None, "ms",
                       note="no Pulse, 1 worker figure to take 50% of")]
    rate = max_rate / 2
    run_id = uuid.uuid4().hex[:6]
    plan = load_plans()[MARKER_APP]
    factory = EventFactory(plan, random.Random(run_id))
    background = background_records(stream)
    sent: list[float] = []
    users: list[str] = []
    at_metrics: list[float] = []
    at_postgres: dict[str, float] = {}
    scrape_seconds: list[float] = []
    with pulse_run("latency", svc, partitions, work, 1) as run:
        port = run.ready()[0]
        load = Background(svc.kafka_bootstrap, run.ingest_topic, background, rate)
        # Markers leave at once (no linger): the time is the pipeline's, not the client's.
        producer = Producer({"bootstrap.servers": svc.kafka_bootstrap, "linger.ms": 0,
                             "acks": "all", "enable.idempotence": False})
        halt = threading.Event()

        def poll_metrics() -> None:
            # Every 50 ms: each scrape renders the whole page in the worker's process, so
            # scraping much faster would slow the worker it measures.
            labels = (("app", MARKER_APP), ("event", MARKER_EVENT))
            while not halt.is_set():
                before = time.perf_counter()
                seen = int(scrape_labelled(port, "pulse_events_valid_total").get(labels, 0))
                now = time.time()
                scrape_seconds.append(time.perf_counter() - before)
                while len(at_metrics) < seen:
                    at_metrics.append(now)
                time.sleep(0.05)

        def poll_postgres() -> None:
            with psycopg.connect(run.database_url, autocommit=True) as conn:
                while not halt.is_set():
                    waiting = [u for u in users if u not in at_postgres]
                    if waiting:
                        found = conn.execute(
                            "SELECT user_id FROM user_profiles WHERE app = %s AND "
                            "user_id = ANY(%s)", (MARKER_APP, waiting)).fetchall()
                        now = time.time()
                        for (user,) in found:
                            at_postgres[user] = now
                    time.sleep(0.02)

        pollers = [threading.Thread(target=poll_metrics, daemon=True),
                   threading.Thread(target=poll_postgres, daemon=True)]
        load.start()
        try:
            time.sleep(5.0)  # reach the steady state first
            # The stage histograms from here on: the warm-up's start-up backlog aside.
            warm = histogram_buckets(port, "pulse_stage_seconds", "stage")
            for poller in pollers:
                poller.start()
            started = time.perf_counter()
            for i in range(markers):
                while time.perf_counter() < started + i / marker_rate:
                    time.sleep(0.001)
                doc = factory.event(10**9 + i, MARKER_EVENT, datetime.now(UTC))
                doc["event_id"] = f"marker-{run_id}-{i}"
                users.append(doc["user_id"])
                sent.append(time.time())
                producer.produce(run.ingest_topic, orjson.dumps(doc),
                                 user_key(MARKER_APP, doc["user_id"]))
                producer.poll(0)
            producer.flush(30)
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: len(at_metrics) >= markers and len(at_postgres) >= markers,
                         30, "every marker to be visible", 0.1)
        finally:
            halt.set()
            load.halt.set()
            load.join(60)
        achieved = load.sent / max(time.perf_counter() - started + 5.0, 1e-9)
        lag = run.total("pulse_ingest_lag_records")
        stages = {stage: {le: count - warm.get(stage, {}).get(le, 0.0)
                          for le, count in buckets.items()}
                  for stage, buckets in histogram_buckets(port, "pulse_stage_seconds",
                                                        "stage").items()}
    metrics_ms = [(at_metrics[i] - sent[i]) * 1000 for i in range(min(len(at_metrics),
                                                                       len(sent)))]
    postgres_ms = [(at_postgres[u] - sent[i]) * 1000 for i, u in enumerate(users)
                   if u in at_postgres]
    note = (f"open loop at {rate:,.0f} events/s (50% of Pulse, 1 worker; sent "
            f"{achieved:,.0f}/s), {markers} markers at {marker_rate:g}/s; ingest lag at the "
            f"end {lag:.0f}; /metrics polled every 50 ms, a scrape took "
            f"{1000 * sum(scrape_seconds) / max(len(scrape_seconds), 1):.0f} ms on average")
    figures = []
    for label, values in (("publish → /metrics", metrics_ms),
                          ("publish → PostgreSQL", postgres_ms)):
        missing = markers - len(values)
        extra = f"; {missing} markers never seen" if missing else ""
        figures.append(Figure("latency", f"{label} p50",
                              percentile(values, 0.5) if values else None, "ms",
                              note=f"{len(values)} markers{extra}"))
        figures.append(Figure("latency", f"{label} p99",
                              percentile(values, 0.99) if values else None, "ms",
                              note=note if label.endswith("metrics") else
                              "user_profiles row of a new user (sink flush 1 s)"))
    # Where the time goes: the worker's own stage histogram while the markers were sent.
    for stage, what in (("ingest_wait", "a record's broker timestamp → read by the ingest "
                         "stage, per record"),
                        ("events_wait", "an events-topic batch's timestamp → taken by the "
                         "activity agent, per batch"),
                        ("apply", "the activity agent's work on one batch")):
        buckets = stages.get(stage, {})
        p50, p99 = bucket_quantile(buckets, 0.5), bucket_quantile(buckets, 0.99)
        figures.append(Figure(
            "latency", f"stage {stage} p99", None if p99 is None else p99 * 1000, "ms",
            note=f"{what}; p50 {'—' if p50 is None else f'{p50 * 1000:.0f}'} ms; "
                 "pulse_stage_seconds while the markers were sent, estimated within its "
                 "buckets as histogram_quantile"))
    return figures
