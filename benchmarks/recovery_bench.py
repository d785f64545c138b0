"""Section 7: how fast a restarted worker restores per-user state from its changelog.

N user states are written straight into `<app_id>-users-changelog` as the activity agent
writes them (raw user key → msgpack `encode_state`, partition = the user's partition);
the states are realistic ones (generated history of every app, replicated under distinct
user keys). Then one `pulse worker` starts and the time is taken until its /metrics shows
`pulse_partitions_owned` > 0 and `pulse_users_tracked` == N. The same worker start with an
empty changelog is timed too; restore time = the difference, records/s = N / restore time.

Then two restarts of the same worker, each timed by the worker's own timing of its restore
(`pulse_sweep_seconds{sweep="rebuild"}`), since their wall clocks hold a group join of the
broker's making: after a clean stop (SIGTERM, aggregate snapshots kept) and after a crash
(kill -9 once new users' events have made those snapshots stale).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Producer

from benchmarks.harness import Figure, python, scrape, scrape_labelled, wait_for
from benchmarks.memory_bench import states_after_history
from benchmarks.pulse_bench import PulseRun, publish_records, spy_on, stop_spy
from benchmarks.targets import RECOVERY_RATE
from streams.app import partition_for
from streams.embedded import ServiceAddresses
from streams.envelope import user_key
from streams.generate import GenOptions, generate
from streams.plan import load_plans
from tables.activity import encode_state

# What the restore loop polls: only these samples are rendered by the worker (harness.scrape).
RESTORE_PROGRESS = ("pulse_partitions_owned", "pulse_users_tracked")


def _templates() -> list[tuple[str, bytes]]:
    return [(app, encode_state(state))
            for app, states in states_after_history(60, 30).items() for state in states]


def write_changelog(bootstrap: str, topic: str, partitions: int, users: int) -> float:
    """Produce `users` states; the mean value size in bytes."""
    templates = _templates()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "acks": "all",
                         "batch.num.messages": 10_000, "enable.idempotence": False,
                         "queue.buffering.max.messages": 500_000})
    total = 0
    for i in range(users):
        app, value = templates[i % len(templates)]
        key = user_key(app, f"restore-{i}")
        total += len(value)
        while True:
            try:
                producer.produce(topic, value, key, partition=partition_for(key, partitions))
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(300):
        raise RuntimeError("changelog records were not all acknowledged")
    return total / max(users, 1)


def time_start(run: PulseRun, users: int, timeout: float, profile: Path | None = None,
               ) -> float:
    """Seconds from spawning one worker to owning partitions with `users` users tracked."""
    started = time.perf_counter()
    run.start(1)
    spy = None if profile is None else spy_on(run.procs[0].pid, profile)
    try:
        return _wait_restored(run, users, timeout, started)
    finally:
        if spy is not None:
            stop_spy(spy)


def _wait_restored(run: PulseRun, users: int, timeout: float, started: float) -> float:
    port = run.ports()[0]
    deadline = time.monotonic() + timeout
    answered = time.monotonic()
    run.longest_silence = 0.0
    while time.monotonic() < deadline:
        try:
            metrics = scrape(port, *RESTORE_PROGRESS)
        except OSError:  # includes timeouts: a busy worker may not answer /metrics for a while
            run.longest_silence = max(run.longest_silence, time.monotonic() - answered)
            continue
        answered = time.monotonic()
        if metrics.get("pulse_partitions_owned", 0) > 0 and \
                metrics.get("pulse_users_tracked", -1) == users:
            restored = time.perf_counter() - started
            # A whole page, once: name[] never renders the process collector's samples.
            run.cpu_seconds = scrape(port).get("process_cpu_seconds_total")
            run.rebuild_seconds = scrape_labelled(port, "pulse_sweep_seconds_sum").get(
                (("sweep", "rebuild"),))
            # Then the catch-up beside the events (rows queued again, profiles and triggers
            # evaluated: agents.activity), to its end.
            wait_for(lambda: _caught_up(port), max(deadline - time.monotonic(), 1.0),
                     "the recovery catch-up", 0.1)
            run.caught_up = time.perf_counter() - started - restored
            # The worker's own probe of its event loop (agents.loop_probe), over the restore
            # and the catch-up; read a second later: a stall that just ended is recorded by
            # the probe's next tick.
            time.sleep(1.0)
            run.longest_stall = scrape(port, "pulse_event_loop_stall_max_seconds").get(
                "pulse_event_loop_stall_max_seconds")
            return restored
        if run.procs[0].poll() is not None:
            raise RuntimeError(f"worker exited with {run.procs[0].returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"worker did not restore {users:,} users in {timeout:.0f} s")


def _caught_up(port: int) -> bool:
    try:
        counts = scrape_labelled(port, "pulse_sweep_seconds_count")
    except OSError:
        return False
    return counts.get((("sweep", "catch_up"),), 0.0) >= 1


def run(svc: ServiceAddresses, partitions: int, users: int, work: Path, timeout: float = 1800,
        profile: Path | None = None) -> list[Figure]:
    timings = {}
    mean_bytes = 0.0
    silence = 0.0
    stall: float | None = None
    caught_up: float | None = None
    cpu: dict[int, float | None] = {}
    rebuilds: dict[int, float | None] = {}  # the worker's own timing of its rebuild, by n
    clean: CleanRestart | None = None
    crash: Crash | None = None
    for n in (0, users):
        recovery = PulseRun(f"restore{n}", svc, partitions, work)
        try:
            subprocess.run([python(), "-m", "streams.cli", "topics", "create"], env=recovery.env,
                           check=True, capture_output=True, timeout=120)
            topic = f"{recovery.env['PULSE_APP_ID']}-users-changelog"
            produced = time.perf_counter()
            if n:
                mean_bytes = write_changelog(recovery.svc.kafka_bootstrap, topic, partitions, n)
            produce_seconds = time.perf_counter() - produced
            timings[n] = (time_start(recovery, n, timeout, profile if n else None),
                          produce_seconds)
            silence = recovery.longest_silence
            stall = recovery.longest_stall
            caught_up = recovery.caught_up
            cpu[n] = recovery.cpu_seconds
            rebuilds[n] = recovery.rebuild_seconds
            if n:
                clean = restart_after_clean_stop(recovery, n, timeout)
                crash = crash_after_clean_restart(recovery, n, timeout)
        finally:
            recovery.stop()
    empty, _ = timings[0]
    full, produce_seconds = timings[users]
    restore = max(full - empty, 1e-9)
    return [
        Figure("recovery", f"recovery time, {users:,} users", restore, "s",
               note=f"worker start to all users tracked {full:.1f} s, minus {empty:.1f} s for "
                    "the same start with an empty changelog; /metrics did not answer for up "
                    f"to {silence:.0f} s meanwhile (5 s scrape timeout). No snapshot: the "
                    "first start rebuilds every user; the worker's own timing of that rebuild "
                    f"{_seconds(rebuilds.get(users))} (empty changelog: "
                    f"{_seconds(rebuilds.get(0))})"),
        Figure("recovery", f"{RECOVERY_RATE}, rebuild", users / restore, "records/s",
               note=f"{users:,} states of {mean_bytes:.0f} B mean; {partitions} partitions; "
                    f"written in {produce_seconds:.1f} s "
                    f"({users / max(produce_seconds, 1e-9):,.0f} records/s)"),
        Figure("recovery", "recovery, changelog records per worker CPU-second",
               None if cpu.get(0) is None or cpu.get(users) is None
               else users / max(cpu[users] - cpu[0], 1e-9),  # type: ignore[operator]
               "records/s",
               note="the same restore over the worker's own CPU time (process_cpu_seconds_"
                    "total, minus the empty start's): what the restore costs on a machine "
                    "that others share"),
        Figure("recovery", "recovery catch-up, after the worker resumed", caught_up, "s",
               note="streak and funnel rows queued again, profiles and triggers evaluated, "
                    "beside the events (catch_up_share of the loop); not part of the restore "
                    "time above"),
        Figure("recovery", "recovery, longest event-loop stall",
               None if stall is None else stall * 1000, "ms",
               note="pulse_event_loop_stall_max_seconds of the restoring worker (a 20 ms tick's "
                    "delay, agents.loop_probe) from its start to the catch-up's end"),
        *(clean_restart_figures(clean, users, empty, rebuilds.get(0), partitions)
          if clean else []),
        *(crash_figures(crash, rebuilds.get(0), partitions) if crash else []),
    ]


@dataclass
class CleanRestart:
    stop_seconds: float  # SIGTERM to exit: sinks drained, snapshots taken
    start_seconds: float  # the next start to all users tracked
    rebuild_seconds: float | None  # the worker's own timing of that restore (sweep="rebuild")
    snapshots: dict[str, float]  # pulse_aggregate_snapshots_total of the restart, by outcome
    caught_up: float | None
    stall: float | None


def snapshot_outcomes(run: PulseRun) -> dict[str, float]:
    """pulse_aggregate_snapshots_total of the run's (restarted) worker, by outcome."""
    return {dict(labels).get("outcome", "?"): value for labels, value in scrape_labelled(
        run.ports()[0], "pulse_aggregate_snapshots_total").items() if value}


def outcomes_text(outcomes: dict[str, float]) -> str:
    return ", ".join(f"{n:.0f} {outcome}" for outcome, n in sorted(outcomes.items()))


def restart_after_clean_stop(run: PulseRun, users: int, timeout: float) -> CleanRestart:
    """Stop the restored worker as a deploy does (SIGTERM: it keeps aggregate snapshots,
    agents.snapshots), start it again and time the restore of the same users."""
    stopping = time.perf_counter()
    run.stop()
    stop_seconds = time.perf_counter() - stopping
    run.procs.clear()
    start_seconds = time_start(run, users, timeout)
    return CleanRestart(stop_seconds, start_seconds, run.rebuild_seconds,
                        snapshot_outcomes(run), run.caught_up, run.longest_stall)


def clean_restart_figures(clean: CleanRestart, users: int, empty: float,
                          empty_rebuild: float | None, partitions: int) -> list[Figure]:
    """Timed as the crash is: by the worker's own timing of its restore, fixed costs included.
    The wall clock also holds the group join, and on the embedded broker a stop in a group's
    first generation does not leave the group, so the next join waits ~8 s for the departed
    member in about half the runs (docs/performance.md, Recovery)."""
    restore = clean.rebuild_seconds
    wall = max(clean.start_seconds - empty, 1e-9)
    outcomes = outcomes_text(clean.snapshots)
    return [
        Figure("recovery", f"recovery time after a clean stop, {users:,} users", restore, "s",
               note=f"the same worker stopped with SIGTERM ({clean.stop_seconds:.1f} s, "
                    f"snapshots taken) and started again. The worker's own timing of its "
                    f"restore (pulse_sweep_seconds{{sweep=\"rebuild\"}}: snapshots read, "
                    f"changelogs read, digests), fixed costs included: "
                    f"{_seconds(empty_rebuild)} with an empty changelog. {partitions} "
                    f"partitions, snapshots: {outcomes or 'none'}"),
        Figure("recovery", f"{RECOVERY_RATE}, after a clean stop",
               None if restore is None else users / max(restore, 1e-9),
               "records/s", note="a restart for a deploy or a rebalance: the changelog is read "
               "and digested, the aggregates come from the snapshots (agents.snapshots)"),
        Figure("recovery", "recovery after a clean stop, wall clock", wall, "s",
               note=f"start to all users tracked {clean.start_seconds:.1f} s, minus {empty:.1f} "
                    f"s for the empty start: the restore, plus the group join. When this is "
                    f"~8 s above the restore, the stopped worker of a group's first generation "
                    f"did not leave it (embedded broker; docs/performance.md)"),
        Figure("recovery", "recovery catch-up after a clean stop", clean.caught_up, "s",
               note=f"longest event-loop stall from the start to its end: "
                    f"{'?' if clean.stall is None else f'{clean.stall * 1000:.0f} ms'}"),
    ]


# New users whose events, applied after the clean restart, make the stop's snapshots stale.
CRASH_APP = "onepercent"
# Generated; those with an event on the generated day become tracked users: enough for every
# partition to get some (a partition without a change keeps its snapshot, which a crash after
# hours of traffic would not).
CRASH_USERS = 200


@dataclass
class Crash:
    users: int  # tracked when killed: the restored ones and the new ones
    start_seconds: float  # the start after the kill to all of them tracked
    rebuild_seconds: float | None  # the worker's own timing of its rebuild (sweep="rebuild")
    snapshots: dict[str, float]  # pulse_aggregate_snapshots_total of that start, by outcome


def crash_after_clean_restart(run: PulseRun, users: int, timeout: float) -> Crash:
    """The crash that production sees: snapshots of the last clean stop are in PostgreSQL, the
    worker applied events since (new users in every partition), and is killed. Its next start
    digests every user, finds every snapshot stale and rebuilds. (The first start of this
    section had no snapshot at all.)"""
    port = run.ports()[0]
    events = list(generate(load_plans()[CRASH_APP],
                           GenOptions(users=CRASH_USERS, days=1, seed=9)))
    records = [(orjson.dumps(event), user_key(event["app"], event["user_id"]))
               for event in events]
    new_users = {key for _, key in records}
    untouched = set(range(run.partitions)) - {partition_for(key, run.partitions)
                                              for key in new_users}
    if untouched:  # the figure would be part rebuild, part snapshot
        raise RuntimeError(f"no new user in partitions {sorted(untouched)}: raise CRASH_USERS")
    publish_records(run.svc.kafka_bootstrap, run.ingest_topic, records)
    tracked = users + len(new_users)
    wait_for(lambda: scrape(port, "pulse_users_tracked").get("pulse_users_tracked") == tracked,
             120, "the new users' states", 0.1)
    time.sleep(1.0)  # their changelog records leave the producer (linger), as they would
    run.procs[0].kill()
    run.procs[0].wait(30)
    run.procs.clear()
    start_seconds = time_start(run, tracked, timeout)
    return Crash(tracked, start_seconds, run.rebuild_seconds, snapshot_outcomes(run))


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} s"


def crash_figures(crash: Crash, empty: float | None, partitions: int) -> list[Figure]:
    """`empty`: the worker's own rebuild timing of its start with an empty changelog, shown
    for scale and not taken off: that start reads two empty changelogs where a restart reads
    one (residuals), so it is no measure of a restart's fixed costs (session 10)."""
    outcomes = outcomes_text(crash.snapshots)
    restore = crash.rebuild_seconds
    return [
        Figure("recovery", f"recovery time after a crash, {crash.users:,} users", restore, "s",
               note=f"kill -9 after new users' events that followed the clean restart, then a "
                    f"start. The worker's own timing of its rebuild (pulse_sweep_seconds"
                    f"{{sweep=\"rebuild\"}}: snapshots read, changelog read, digests, sums), "
                    f"fixed costs included ({_seconds(empty)} with an empty changelog). The "
                    f"wall clock adds the group join waiting out the killed member's session: "
                    f"start to all users tracked {crash.start_seconds:.1f} s. {partitions} "
                    f"partitions, snapshots: {outcomes or 'none'}"),
        Figure("recovery", f"{RECOVERY_RATE}, after a crash",
               None if restore is None else crash.users / max(restore, 1e-9), "records/s",
               note="new users in every partition, so no snapshot of the stop matches: every "
                    "user digested, then rebuilt from every state (a kill in production)"),
    ]
