"""`make bench`: Pulse against the Kafka clients' ceiling and its peers, in one run on one broker.

    .venv/bin/python -m benchmarks.run            # full sizes (~10–15 min on 2 cores)
    .venv/bin/python -m benchmarks.run --quick    # small sizes, a smoke run (< 3 min)
    .venv/bin/python -m benchmarks.run --only ceiling,peers,pulse

Starts the embedded services (Tansu broker, PostgreSQL, Redis), generates one event stream for
all five apps (streams.generate), publishes it once to an ingest topic, and runs the sections:

1. ceiling   raw aiokafka / confluent-kafka consumer and producer records/s
2. peers     the activity/DAU job in plain Faust and in Quix Streams (own processes)
3. pulse     `pulse worker`, every feature on, with 1 and 2 worker processes
4. latency   publish → /metrics and publish → PostgreSQL at 50% of Pulse's measured load
5. memory    RSS and serialized state bytes per tracked user
6. sinks     PostgreSQL upsert rows/s and Redis profile writes/s
7. recovery  changelog records/s for a restarted worker to restore N users

Prints rich tables with each target's PASS/FAIL and writes a dated section of
benchmarks/RESULTS.md (replacing that day's section from an earlier run). Not part of
`make test`: the figures are for this class of machine, compared side by side.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import ceiling, peers_bench
from benchmarks.harness import (
    DELETE_CONFIGS,
    Figure,
    MachineInfo,
    Stream,
    create_topics,
    generate_stream,
    machine_info,
)
from benchmarks.results import write_results
from benchmarks.targets import judge
from streams.embedded import EmbeddedServices, ServiceAddresses

SECTIONS = ("ceiling", "peers", "pulse", "latency", "memory", "sinks", "recovery")
# Wide enough for the figures table when the output is a file or a pipe, not a terminal.
console = Console(width=None if sys.stdout.isatty() else 180)


@dataclass(frozen=True)
class Sizes:
    users: int  # per app, for the generated stream
    days: int
    partitions: int
    latency_markers: int
    memory_users: tuple[int, ...]
    sink_rows: int
    recovery_users: int
    peer_timeout: float
    round_trips: int = 50
    pulse_rounds: int = 3  # 1- and 2-worker runs, alternated; their medians are reported

    @staticmethod
    def for_run(quick: bool) -> Sizes:
        if quick:
            return Sizes(users=60, days=14, partitions=4, latency_markers=30,
                         memory_users=(10_000,), sink_rows=5_000, recovery_users=10_000,
                         peer_timeout=120, round_trips=15, pulse_rounds=1)
        # 1M users' recovery took over 5 min on a 2-core VM: run it with --recovery-users.
        return Sizes(users=400, days=30, partitions=4, latency_markers=200,
                     memory_users=(100_000, 1_000_000), sink_rows=50_000,
                     recovery_users=300_000, peer_timeout=600)


@dataclass
class Context:
    svc: ServiceAddresses
    stream: Stream
    sizes: Sizes
    work: Path
    ingest_topic: str
    publish_rate: float
    figures: list[Figure]
    profile: Path | None = None  # py-spy raw output of an extra, profiled 1-worker run
    latency_rate: float | None = None  # --latency-rate: events/s, instead of 50% of max

    def measured(self, name_prefix: str) -> float | None:
        for figure in self.figures:
            if figure.name.startswith(name_prefix) and figure.value is not None:
                return figure.value
        return None


def section_ceiling(ctx: Context) -> list[Figure]:
    create_topics(ctx.svc.kafka_bootstrap,
                  {"bench.scratch": (ctx.sizes.partitions, DELETE_CONFIGS)})
    return ceiling.run(ctx.svc.kafka_bootstrap, ctx.ingest_topic, "bench.scratch", ctx.stream,
                       ctx.publish_rate, round_trips=ctx.sizes.round_trips)


def section_peers(ctx: Context) -> list[Figure]:
    return peers_bench.run(ctx.svc.kafka_bootstrap, ctx.ingest_topic, ctx.sizes.partitions,
                           ctx.stream.count, ctx.work, ctx.sizes.peer_timeout)


def section_pulse(ctx: Context) -> list[Figure]:
    from benchmarks import pulse_bench

    figures = pulse_bench.run_throughput(ctx.svc, ctx.stream, ctx.sizes.partitions, ctx.work,
                                         profile=ctx.profile, rounds=ctx.sizes.pulse_rounds)
    if ctx.profile is not None and ctx.profile.exists():
        from benchmarks import profile

        figures.extend(profile.top_figures(ctx.profile, "profile",
                                           "an extra 1-worker run of the same stream"))
    return figures


def section_latency(ctx: Context) -> list[Figure]:
    from benchmarks import pulse_bench

    rate = 2 * ctx.latency_rate if ctx.latency_rate else ctx.measured("Pulse, 1 worker")
    return pulse_bench.run_latency(ctx.svc, ctx.stream, ctx.sizes.partitions, ctx.work,
                                   max_rate=rate, markers=ctx.sizes.latency_markers)


def section_memory(ctx: Context) -> list[Figure]:
    from benchmarks import memory_bench

    return memory_bench.run(ctx.sizes.memory_users)


def section_sinks(ctx: Context) -> list[Figure]:
    from benchmarks import sinks_bench

    return sinks_bench.run(ctx.svc, ctx.sizes.sink_rows)


def section_recovery(ctx: Context) -> list[Figure]:
    from benchmarks import recovery_bench

    spied = ctx.work / "recovery.pyspy.txt" if ctx.profile is not None else None
    figures = recovery_bench.run(ctx.svc, ctx.sizes.partitions, ctx.sizes.recovery_users,
                                 ctx.work, profile=spied)
    if spied is not None and spied.exists():
        from benchmarks import profile

        figures.extend(profile.top_figures(spied, "recovery profile",
                                           "py-spy of the restoring worker, from its start"))
    return figures


RUNNERS: dict[str, Callable[[Context], list[Figure]]] = {
    "ceiling": section_ceiling, "peers": section_peers, "pulse": section_pulse,
    "latency": section_latency, "memory": section_memory, "sinks": section_sinks,
    "recovery": section_recovery,
}


def print_tables(figures: list[Figure], info: MachineInfo, title: str) -> None:
    console.print(f"[bold]{title}[/bold]")
    for line in info.lines():
        console.print(line, markup=False, highlight=False)
    table = Table(show_lines=False)
    for column, justify in (("section", "left"), ("figure", "left"), ("value", "right"),
                            ("unit", "left"), ("target", "left"), ("", "left"),
                            ("note", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for f in figures:
        verdict = {True: "[green]PASS[/green]", False: "[red]FAIL[/red]", None: ""}[f.passed]
        table.add_row(f.section, f.name, f.shown(), f.unit, f.target, verdict, f.note)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--results", type=Path,
                        default=Path(__file__).resolve().parent / "RESULTS.md",
                        help="the Markdown file to add this run's section to")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--users", type=int, help="override: generated users per app")
    parser.add_argument("--days", type=int, help="override: days of generated history")
    parser.add_argument("--recovery-users", type=int, help="override: users to restore")
    parser.add_argument("--memory-users", help="override: comma-separated user counts")
    parser.add_argument("--latency-rate", type=float,
                        help="override: the latency section's open-loop events/s (default: "
                             "50%% of the 1-worker figure of this run)")
    parser.add_argument("--profile", action="store_true",
                        help="also run one worker under py-spy and list where its time goes")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this directory and keep it (logs of every process)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    sizes = Sizes.for_run(args.quick)
    overrides = {"users": args.users, "days": args.days, "recovery_users": args.recovery_users,
                 "memory_users": tuple(int(n) for n in args.memory_users.split(","))
                 if args.memory_users else None}
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    info = machine_info()
    started = time.monotonic()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
        needs_stream = bool({"ceiling", "peers", "pulse", "latency"} & set(chosen))
        stream = Stream([], sizes.users, sizes.days, 0)
        if needs_stream:
            with console.status("generating the event stream"):
                stream = generate_stream(sizes.users, sizes.days)
            console.print(f"stream: {stream.count:,} events, {stream.apps} apps × "
                          f"{stream.users} users × {stream.days} days")
        with EmbeddedServices(work / ".pulse") as svc:
            ctx = Context(svc, stream, sizes, work, "bench.ingest", 0.0, figures,
                          work / "pulse-worker.pyspy.txt" if args.profile else None,
                          args.latency_rate)
            if needs_stream:
                create_topics(svc.kafka_bootstrap,
                              {ctx.ingest_topic: (sizes.partitions, DELETE_CONFIGS)})
                ctx.publish_rate = ceiling.publish_confluent(svc.kafka_bootstrap,
                                                             ctx.ingest_topic, stream)
            for name in SECTIONS:
                if name not in chosen:
                    continue
                section_started = time.monotonic()
                with console.status(f"section {name}"):
                    try:
                        figures.extend(RUNNERS[name](ctx))
                    except Exception as err:  # report the failure, run the other sections
                        traceback.print_exc()
                        figures.append(Figure(name, f"{name} section failed", None, "",
                                              note=f"{type(err).__name__}: {err}"[:300]))
                console.print(f"section {name}: {time.monotonic() - section_started:.0f} s")
    judge(figures)
    elapsed = time.monotonic() - started
    now = datetime.now(UTC)
    title = (f"Pulse benchmark — {now:%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''}, "
             f"{elapsed / 60:.1f} min")
    print_tables(figures, info, title)
    if not args.no_write:
        given = list(argv if argv is not None else sys.argv[1:])
        if "--keep" in given:  # a local directory: not part of how to reproduce the figures
            at = given.index("--keep")
            del given[at:at + 2]
        command = " ".join([".venv/bin/python -m benchmarks.run", *given]).strip()
        write_results(args.results, figures, info, now, command, stream, sizes.partitions,
                      elapsed, args.quick,
                      only=None if set(chosen) == set(SECTIONS) else chosen)
        console.print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
