"""Throughput rounds with each worker's progress every 50 ms, to tell a slow round's cause.

    .venv/bin/python -m benchmarks.timeline [--workers 2] [--rounds 6] [--users 400]
        [--days 30] [--keep DIR] [--json FILE]

Each round is a run of the throughput section (benchmarks.pulse_bench: workers ready, paused,
the stream published, resumed). Per round it prints events/s and, for each worker, when it
first read an ingest record and first applied an event, counted from the round's first
record consumed by any worker, with its share of the ingest records. A worker that starts
late, or waits while another works, shows there: session 10 found a late ingest group join
this way (docs/performance.md). `--json` keeps every sample: (seconds, consumed per worker,
applied per worker).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from benchmarks.harness import generate_stream, scrape
from benchmarks.pulse_bench import PROGRESS, pulse_run
from streams.embedded import EmbeddedServices

Sample = tuple[float, list[float], list[float]]  # seconds, consumed and applied per worker


def sample_round(ports: list[int], count: int, interval: float,
                 timeout: float = 600) -> list[Sample]:
    """Every worker's ingest records consumed and events applied (valid + duplicates), until
    the stream's `count` events are applied or rejected."""
    started = time.perf_counter()
    samples: list[Sample] = []
    while time.perf_counter() - started < timeout:
        snapshots = [scrape(port, *PROGRESS) for port in ports]
        now = time.perf_counter() - started
        samples.append((now, [s.get("pulse_events_consumed_total", 0.0) for s in snapshots],
                        [s.get("pulse_events_valid_total", 0.0)
                         + s.get("pulse_events_duplicate_total", 0.0) for s in snapshots]))
        rejected = sum(s.get("pulse_events_rejected_total", 0.0) for s in snapshots)
        if sum(samples[-1][2]) + rejected >= count:
            return samples
        time.sleep(interval)
    raise TimeoutError(f"{count:,} events not applied in {timeout:.0f} s")


def first_time(samples: list[Sample], worker: int, applied: bool) -> float | None:
    """Seconds at which the worker first consumed an ingest record (or applied an event)."""
    for seconds, consumed, done in samples:
        if (done if applied else consumed)[worker] > 0:
            return seconds
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--users", type=int, default=400, help="generated users per app")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between samples")
    parser.add_argument("--keep", type=Path, help="work here and keep it (worker logs)")
    parser.add_argument("--json", type=Path, help="write every round's samples here")
    args = parser.parse_args()
    console = Console()
    stream = generate_stream(args.users, args.days)
    console.print(f"stream: {stream.count:,} events; {args.workers} workers, "
                  f"{args.rounds} rounds")
    table = Table(title="rounds", caption="wN read / applied: seconds from the round's first "
                  "record consumed (by any worker) to worker N's first ingest record read and "
                  "first event applied; share: its part of the ingest records")
    for column in ("round", "events/s", "seconds", *(
            f"w{w} {what}" for w in range(args.workers)
            for what in ("read", "applied", "share"))):
        table.add_column(column, justify="right")
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.keep or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        with EmbeddedServices(work / ".pulse") as svc:
            for n in range(args.rounds):
                with pulse_run(f"timeline{n}", svc, args.partitions, work, args.workers) as run:
                    ports = run.ready()
                    run.publish_paused(stream.records)
                    samples = sample_round(ports, stream.count, args.interval)
                start = min(t for w in range(args.workers)
                            if (t := first_time(samples, w, False)) is not None)
                took = samples[-1][0] - start
                cells = []
                for w in range(args.workers):
                    read, applied = first_time(samples, w, False), first_time(samples, w, True)
                    consumed = samples[-1][1]
                    cells += ["—" if read is None else f"{read - start:.2f}",
                              "—" if applied is None else f"{applied - start:.2f}",
                              f"{consumed[w] / max(sum(consumed), 1):.0%}"]
                table.add_row(str(n), f"{stream.count / took:,.0f}", f"{took:.2f}", *cells)
                rounds.append({"events_per_second": stream.count / took, "start": start,
                               "samples": samples})
            if args.keep:
                console.print(f"worker logs: {work}/timeline*/worker-*.log")
    console.print(table)
    if args.json:
        args.json.write_bytes(orjson.dumps(rounds))


if __name__ == "__main__":
    main()
