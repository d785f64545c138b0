"""Soak: one `pulse worker` under steady live traffic at 70% of its measured maximum for ten
minutes, on the embedded services. Samples the worker's RSS (psutil), its ingest lag
(`pulse_ingest_lag_records`), the per-user states it holds and the error lines of its log
every few seconds, then prints a table and a verdict:

* RSS flat: after the warm-up, RSS grows by no more than the new users' state explains
  (`--bytes-per-user` each) plus 5%;
* lag bounded: over the second half the ingest lag (`pulse_ingest_lag_records`) plus the
  backlog behind it (events read from ingest but not yet applied: consumed − valid − duplicate −
  rejected) stays below two seconds of traffic, and ends below it;
* no error logs: no ERROR/CRITICAL line and no traceback in the worker's log.

    .venv/bin/python benchmarks/soak.py --max-rate 4760 --users 50000 --every 2  # runs 13-14
    .venv/bin/python benchmarks/soak.py                      # measure the max first

Measuring drains a backlog sent at once, i.e. full ingest batches: it overstates what the
worker sustains under paced traffic (13.6k-17.6k vs ~7k events/s here), so prefer
`--max-rate` with a rate the worker was seen to sustain.

Before the run, every user of the population is made known (one registration each within the
last `--user-base-days`), and the soak waits for the worker's first trigger sweep over them, a
one-off that creates a trigger for each inactive user (docs/reliability.md, session 5).

Not part of `make test`. Live traffic is `streams.generate.live_session` (the demo producer's
sessions, without its deliberately broken records) over `--users` users per app, 2% of the
sessions from newcomers, so the state grows slowly, as in production.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from streams.embedded import EmbeddedServices
from streams.envelope import user_key
from streams.generate import EventFactory, first_seen, live_session
from streams.plan import Plan, load_plans
from streams.publish import Publisher

REPO = Path(__file__).resolve().parents[1]
ERROR_LINE = re.compile(rb"\[(ERROR|CRITICAL)\]|Traceback \(most recent call last\)")
console = Console()


# What the soak reads: asking for these alone (`name[]`) keeps each scrape cheap for the
# worker it measures.
SCRAPED = ("pulse_ingest_lag_records", "pulse_events_consumed_total", "pulse_events_valid_total",
           "pulse_events_duplicate_total", "pulse_events_rejected_total", "pulse_users_tracked",
           "pulse_partitions_owned", "pulse_event_loop_stall_max_seconds",
           "pulse_sink_pending_rows", "pulse_sweep_seconds_count", "pulse_sweep_seconds_sum",
           "pulse_triggers_created_total")


def scrape(port: int) -> dict[str, float]:
    query = "&".join(f"name[]={name}" for name in SCRAPED)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?{query}",
                                timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def processed(m: dict[str, float]) -> float:
    """Events that went all the way: applied to state, dropped as duplicates, dead-lettered."""
    return sum(m.get(f"pulse_events_{kind}_total", 0.0)
               for kind in ("valid", "duplicate", "rejected"))


def live_events(plans: dict[str, Plan], rng: random.Random, users: int,
                at: datetime | None = None) -> list[dict]:
    plan = plans[rng.choice(sorted(plans))]
    return live_session(plan, rng, users, at or datetime.now(UTC))


Record = tuple[bytes, bytes]


class Load:
    """Live sessions at `rate` events/s from a thread (0 = pause).

    The soak's traffic is generated and serialized before it starts (`prepare`), each session
    stamped with the time it is due: generating it live put the load generator at 25-30% of a
    core instead of ~10%, taken from the worker and the broker on a two-core machine
    (docs/reliability.md, soak run 9). Past the prepared traffic, sessions are generated
    live."""

    def __init__(self, bootstrap: str, plans: dict[str, Plan], users: int,
                 linger_ms: float = 20) -> None:
        self.publisher = Publisher(bootstrap, "pulse.ingest", linger_ms)
        self.plans, self.users = plans, users
        self.rng = random.Random(7)
        self.rate = 0.0
        self.sent = 0
        self.prepared: list[list[Record]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def records(self, events: list[dict]) -> list[Record]:
        # A copy: orjson's bytes keep its ~4 KiB output buffer, 14x a 300-byte event, which
        # matters only here, where ten minutes of traffic (2M events) are held at once.
        return [(bytes(memoryview(orjson.dumps(e))), user_key(e["app"], e["user_id"]))
                for e in events]

    def prepare(self, rate: float, seconds: float) -> datetime:
        """Generate `seconds` of sessions at `rate`, stamped from a start time far enough
        ahead for the generation to finish first; returns that start time."""
        probe_started = time.monotonic()
        probe = 0
        while probe < 20_000:
            probe += len(live_events(self.plans, random.Random(probe), self.users))
        per_event = (time.monotonic() - probe_started) / probe * 1.3  # + serializing
        start = datetime.now(UTC) + timedelta(seconds=5 + rate * seconds * per_event)
        count = 0
        while count < rate * seconds:
            due = start + timedelta(seconds=count / rate)
            session = self.records(live_events(self.plans, self.rng, self.users, due))
            self.prepared.append(session)
            count += len(session)
        return start

    def user_base(self, days: int) -> list[Record]:
        """One registration (or first event) per user of every app, at a random time within
        the last `days` days: the users the live sessions return as, known before the soak."""
        rng = random.Random(11)
        now = datetime.now(UTC)
        events: list[dict] = []
        for app in sorted(self.plans):
            factory = EventFactory(self.plans[app], rng)
            for user in range(self.users):
                when = now - timedelta(days=1 + rng.random() * (days - 1))
                events.extend({**e, "historical": True} for e in first_seen(factory, user, when))
        return self.records(events)

    def send(self, records: list[Record]) -> None:
        for value, key in records:
            self.publisher.send(value, key)
        self.sent += len(records)

    def next_session(self) -> list[Record]:
        if self.prepared:
            return self.prepared.pop()
        return self.records(live_events(self.plans, self.rng, self.users))

    def run(self) -> None:
        self.prepared.reverse()  # pop() from the end is the earliest
        started, base = time.monotonic(), self.sent
        rate = self.rate
        while not self.stopped.is_set():
            if self.rate != rate:  # a new pace starts now
                started, base, rate = time.monotonic(), self.sent, self.rate
            if rate <= 0:
                time.sleep(0.05)
                continue
            self.send(self.next_session())
            ahead = (self.sent - base) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(min(ahead, 0.5))
        self.publisher.flush(30)


@dataclass
class Sample:
    at: float
    rss_mb: float
    lag: float
    backlog: float  # read from the ingest topic, not yet applied (the events topic's lag)
    consumed: float
    users: float
    errors: int
    stall_max: float = 0.0  # longest event-loop stall so far (pulse_event_loop_stall_max_seconds)
    # CPU % since the previous sample per process group (100 = one core), and sink rows queued:
    # what a lag spike coincides with (docs/reliability.md, soak runs 4-5)
    cpu: dict[str, float] = field(default_factory=dict)
    sink_pending: float = 0.0


def process_group(proc: psutil.Process, worker_pid: int) -> str:
    if proc.pid == worker_pid:
        return "worker"
    name = proc.name()
    for group in ("tansu", "postgres", "redis"):
        if group in name:
            return "broker" if group == "tansu" else group
    return "other"


class CpuSampler:
    """CPU time per process group between calls: the worker, the broker, PostgreSQL, Redis,
    this process (the load generator) and the machine as a whole."""

    def __init__(self, worker_pid: int) -> None:
        self.worker_pid = worker_pid
        self.me = psutil.Process()
        self.last: dict[int, tuple[str, float]] = {}
        self.last_at = time.monotonic()
        self.sample()

    def sample(self) -> dict[str, float]:
        now = time.monotonic()
        elapsed, self.last_at = max(now - self.last_at, 1e-3), now
        used: dict[str, float] = {"load": 0.0}
        seen: dict[int, tuple[str, float]] = {}
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                group = "load" if proc.pid == self.me.pid else process_group(proc,
                                                                          self.worker_pid)
            except psutil.Error:
                continue
            total = times.user + times.system
            seen[proc.pid] = (group, total)
            before = self.last.get(proc.pid, (group, total))[1]
            used[group] = used.get(group, 0.0) + (total - before) / elapsed * 100
        self.last = seen
        used["machine"] = psutil.cpu_percent() * psutil.cpu_count()
        return used


def error_lines(log: Path) -> int:
    return sum(1 for line in log.read_bytes().splitlines() if ERROR_LINE.search(line))


def drain(load: Load, port: int, records: list[Record]) -> float:
    """Send `records` at once and wait until the worker has processed them all; returns the
    events/s it applied them at (read from ingest is not enough: the ingest stage outruns the
    per-user stage behind it)."""
    before = processed(scrape(port))
    load.send(records)
    load.publisher.flush(60)
    first = None
    while True:
        done = processed(scrape(port)) - before
        now = time.monotonic()
        if first is None and done > 0:
            first, first_count = now, done
        if done >= len(records):
            assert first is not None
            return (done - first_count) / max(now - first, 1e-3)
        time.sleep(0.1)


def first_sweep(port: int, worker: subprocess.Popen, log: Path) -> None:
    """Wait for the worker's first periodic sweep (triggers, PULSE_TRIGGER_SWEEP_SECONDS after
    its start). Over a user base just loaded it is a one-off: every inactive user of a plan
    with triggers gets one (tens of thousands of rows at once), which is not the steady state
    the soak is for; the later sweeps, over users who mostly have theirs, are inside the run."""
    console.print("waiting for the first sweep over the user base")
    while alive(worker, log) and scrape(port).get("pulse_sweep_seconds_count", 0.0) < 1:
        time.sleep(2)
    while alive(worker, log) and scrape(port).get("pulse_sink_pending_rows", 0.0) > 0:
        time.sleep(1)  # and the rows it made are written
    m = scrape(port)
    console.print(f"first sweep: {m.get('pulse_sweep_seconds_sum', 0.0):.1f} s, "
                  f"{m.get('pulse_triggers_created_total', 0.0):,.0f} triggers created")


def measure_max(load: Load, port: int, events: int) -> float:
    """Events/s the worker applies from a backlog of `events` live events sent at once."""
    batch: list[dict] = []
    while len(batch) < events:
        batch.extend(live_events(load.plans, load.rng, load.users))
    return drain(load, port, load.records(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--max-rate", type=float, default=None,
                        help="events/s the worker sustains (default: measure it first)")
    parser.add_argument("--fraction", type=float, default=0.7)
    # 50k per app: ~12 events per user over 10 min at 5k/s. With 2k per app every user sends
    # hundreds of events, and the per-user dedupe state grows with them (docs/reliability.md).
    parser.add_argument("--users", type=int, default=50_000, help="users per app")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    # Without it nearly every session of the run is a user the worker has not seen (250k users,
    # ~200k sessions): the soak measured a flood of newcomers, not the steady state it is for.
    parser.add_argument("--user-base-days", type=int, default=30,
                        help="first make every user known, registered within this many days "
                             "before the run (0: start from no users)")
    parser.add_argument("--bytes-per-user", type=int, default=4096,
                        help="RSS a newly tracked user may add (state, indexes, profiles)")
    # The embedded broker's every fetch lists every batch a partition ever received
    # (benchmarks/broker_fetch_cost.py): the load generator's batches, which are not Pulse's,
    # should add as few as they can. Kafka would not care.
    parser.add_argument("--publish-linger-ms", type=float, default=100.0,
                        help="the load generator's producer linger (batches on the ingest topic)")
    parser.add_argument("--samples-json", type=Path, default=None,
                        help="also write every sample to this file (for a closer look at a spike)")
    args = parser.parse_args()
    plans = load_plans()
    # A stopped soak stops its worker and services too (the `finally` and `with` below):
    # Python's default SIGTERM ends the process without running them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with tempfile.TemporaryDirectory() as tmp, EmbeddedServices(Path(tmp) / ".pulse") as svc:
        env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP": svc.kafka_bootstrap,
               "PULSE_DATABASE_URL": svc.database_url, "PULSE_REDIS_URL": svc.redis_url,
               "PULSE_STATE_DIR": str(Path(tmp) / "state"), "PULSE_METRICS_PORT": "0",
               "PULSE_APP_ID": f"soak-{os.getpid()}",
               # vkusvill_bot sends raw ids: the worker needs a key to pseudonymize them.
               "PULSE_USER_ID_SECRET": os.environ.get("PULSE_USER_ID_SECRET",
                                                      "pulse-benchmark-user-id-secret")}
        subprocess.run([sys.executable, "-m", "streams.cli", "topics", "create"], env=env,
                       check=True, capture_output=True, cwd=tmp)
        log = Path(tmp) / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "WARNING"], env=env,
            cwd=tmp, stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        load = Load(svc.kafka_bootstrap, plans, args.users, args.publish_linger_ms)
        try:
            port = wait_for_port(Path(tmp) / "state" / "workers" / f"{worker.pid}.json", worker,
                                 log)
            while alive(worker, log) and scrape(port).get("pulse_partitions_owned", 0) < 1:
                time.sleep(0.5)
            if args.user_base_days > 0:
                base = load.user_base(args.user_base_days)
                console.print(f"user base: {len(base):,} users of {len(plans)} apps, "
                              f"applied at {drain(load, port, base):,.0f} events/s")
                first_sweep(port, worker, log)
            if args.max_rate is None:
                measure_max(load, port, 30_000)  # a warm-up: the first sessions' state
                max_rate = measure_max(load, port, 60_000)
                console.print(f"measured max: {max_rate:,.0f} events/s")
            else:
                max_rate = args.max_rate
            rate = args.fraction * max_rate
            console.print(f"preparing {args.minutes:g} min of traffic at {rate:,.0f} events/s")
            start = load.prepare(rate, args.minutes * 60)
            time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
            console.print(f"soak: {rate:,.0f} events/s for {args.minutes:g} min")
            load.rate = rate
            load.thread.start()
            samples = run_soak(load, worker, port, log, args.minutes * 60, args.every)
        finally:
            load.stopped.set()
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if args.samples_json:
            args.samples_json.write_bytes(orjson.dumps([vars(s) for s in samples]))
        report(samples, rate, max_rate, args, error_lines(log), log)


def alive(worker: subprocess.Popen, log: Path) -> bool:
    """True while the worker runs; else stop with the end of its log (the temporary
    directory that holds it goes with the run)."""
    if worker.poll() is None:
        return True
    tail = log.read_bytes()[-4000:].decode(errors="replace") if log.exists() else ""
    raise SystemExit(f"the worker exited with {worker.returncode}; its log ends:\n{tail}")


def wait_for_port(record: Path, worker: subprocess.Popen, log: Path) -> int:
    while alive(worker, log) and not record.exists():
        time.sleep(0.2)
    return int(orjson.loads(record.read_bytes())["metrics_port"])


def run_soak(load: Load, worker: subprocess.Popen, port: int, log: Path, seconds: float,
             every: float) -> list[Sample]:
    proc = psutil.Process(worker.pid)
    cpu = CpuSampler(worker.pid)
    samples: list[Sample] = []
    started = time.monotonic()
    while alive(worker, log) and time.monotonic() - started < seconds:
        m = scrape(port)
        consumed = m.get("pulse_events_consumed_total", 0.0)
        samples.append(Sample(time.monotonic() - started, proc.memory_info().rss / 2**20,
                              m.get("pulse_ingest_lag_records", 0.0), consumed - processed(m),
                              processed(m),
                              m.get("pulse_users_tracked", 0.0), error_lines(log),
                              m.get("pulse_event_loop_stall_max_seconds", 0.0), cpu.sample(),
                              m.get("pulse_sink_pending_rows", 0.0)))
        time.sleep(every)
    return samples


CPU_GROUPS = ("worker", "broker", "postgres", "redis", "load", "machine")


def cpu_cell(cpu: dict[str, float]) -> str:
    return "/".join(f"{cpu.get(group, 0.0):.0f}" for group in CPU_GROUPS)


def report(samples: list[Sample], rate: float, max_rate: float, args: argparse.Namespace,
           errors: int, log: Path) -> None:
    table = Table(title=f"soak at {rate:,.0f} events/s ({args.fraction:.0%} of "
                        f"{max_rate:,.0f})")
    for column in ("t s", "RSS MB", "ingest lag", "backlog", "events/s", "users tracked",
                   "longest stall s", "CPU % worker/broker/pg/redis/load/machine",
                   "sink rows queued", "error lines"):
        table.add_column(column, justify="right")
    step = max(1, len(samples) // 20)
    for prev, cur in zip(samples[::step], samples[step::step], strict=False):
        table.add_row(f"{cur.at:.0f}", f"{cur.rss_mb:.1f}", f"{cur.lag:.0f}", f"{cur.backlog:.0f}",
                      f"{(cur.consumed - prev.consumed) / (cur.at - prev.at):,.0f}",
                      f"{cur.users:,.0f}", f"{cur.stall_max:.2f}", cpu_cell(cur.cpu),
                      f"{cur.sink_pending:,.0f}", str(cur.errors))
    console.print(table)

    warm = [s for s in samples if s.at >= 0.2 * samples[-1].at]
    head, tail = warm[: max(1, len(warm) // 10)], warm[-max(1, len(warm) // 10):]
    rss_start = statistics.median(s.rss_mb for s in head)
    rss_end = statistics.median(s.rss_mb for s in tail)
    new_users = tail[-1].users - head[0].users
    allowed = rss_start * 0.05 + new_users * args.bytes_per_user / 2**20
    second_half = [s for s in samples if s.at >= samples[-1].at / 2]
    lag_bound = 2 * rate
    lag_max = max(s.lag + s.backlog for s in second_half)
    last_lag = samples[-1].lag + samples[-1].backlog
    achieved = (samples[-1].consumed - samples[0].consumed) / (samples[-1].at - samples[0].at)
    verdicts = {
        "RSS flat": rss_end - rss_start <= allowed,
        "lag bounded": lag_max <= lag_bound and last_lag <= lag_bound,
        "no error logs": errors == 0,
    }
    console.print(f"RSS after warm-up {rss_start:.1f} MB → end {rss_end:.1f} MB "
                  f"(+{rss_end - rss_start:.1f} MB; allowed +{allowed:.1f} MB for 5% and "
                  f"{new_users:,.0f} new users)")
    console.print(f"lag (ingest lag + backlog behind it): max {lag_max:.0f} events over the "
                  f"second half, last {last_lag:.0f} (bound {lag_bound:.0f} = 2 s of traffic)")
    console.print(f"applied {achieved:,.0f} events/s on average; error lines: {errors} "
                  f"({log.name}; {samples[-1].errors} while running, the rest at shutdown)")
    if errors:
        # The log goes with the temporary directory: show what the error lines said.
        lines = log.read_bytes().splitlines()
        for i in [i for i, line in enumerate(lines) if ERROR_LINE.search(line)][:5]:
            console.print(b"\n".join(lines[i:i + 12]).decode(errors="replace"), markup=False,
                          highlight=False)
    for name, ok in verdicts.items():
        console.print(f"{name}: {'PASS' if ok else 'FAIL'}")
    console.print(f"verdict: {'PASS' if all(verdicts.values()) else 'FAIL'}")
    if not all(verdicts.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
