"""Section 2, the peers: the per-user activity/DAU job in plain Faust and in Quix Streams.

Each peer runs as its own process in its own consumer group on the shared ingest topic and
reports its first and latest processed record (benchmarks/peers/progress.py): start-up and
group joins are not timed.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import orjson

from benchmarks.harness import COMPACT_CONFIGS, Figure, create_topics, python, running
from benchmarks.peers.quix_activity import changelog_topic as quix_changelog


def _wait_progress(path: Path, expect: int, timeout: float, proc_alive: object) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        if path.exists():
            last = orjson.loads(path.read_bytes())
            if last["count"] >= expect:
                return last
        if proc_alive is not None and proc_alive.poll() is not None:  # type: ignore[attr-defined]
            raise RuntimeError(f"peer exited with {proc_alive.returncode}; "  # type: ignore[attr-defined]
                               f"progress {last}")
        time.sleep(0.1)
    raise TimeoutError(f"peer processed {last.get('count', 0)} of {expect} in {timeout:.0f} s")


def _rate(progress: dict) -> float:
    return float(progress["count"]) / max(progress["last"] - progress["first"], 1e-9)


def run_faust(bootstrap: str, topic: str, partitions: int, expect: int, work: Path,
              timeout: float) -> Figure:
    group = f"bench-faust-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, {f"{group}-activity-changelog": (partitions, COMPACT_CONFIGS)})
    progress = work / f"{group}.json"
    env = {**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": topic,
           "BENCH_GROUP": group, "BENCH_PARTITIONS": str(partitions),
           "BENCH_EXPECT": str(expect), "BENCH_PROGRESS": str(progress)}
    argv = [python(), "-m", "benchmarks.peers.faust_activity", "worker", "-l", "warn"]
    with running(argv, env, work, work / f"{group}.log") as proc:
        done = _wait_progress(progress, expect, timeout, proc)
    return Figure("peers", "Faust agent, one record at a time, Table", _rate(done),
                  "records/s", note=f"{expect:,} records; faust-streaming, memory store")


def run_quix(bootstrap: str, topic: str, partitions: int, expect: int, work: Path,
             timeout: float) -> Figure:
    group = f"bench-quix-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, {quix_changelog(group, topic): (partitions, COMPACT_CONFIGS)})
    progress = work / f"{group}.json"
    argv = [python(), "-m", "benchmarks.peers.quix_activity", "--bootstrap", bootstrap,
            "--topic", topic, "--group", group, "--expect", str(expect),
            "--progress", str(progress), "--state-dir", str(work / f"{group}-state")]
    with running(argv, dict(os.environ), work, work / f"{group}.log") as proc:
        done = _wait_progress(progress, expect, timeout, proc)
    return Figure("peers", "Quix Streams, RocksDB state + changelog", _rate(done),
                  "records/s", note=f"{expect:,} records; one state update per record")


def run(bootstrap: str, topic: str, partitions: int, expect: int, work: Path,
        timeout: float) -> list[Figure]:
    figures = []
    for runner in (run_quix, run_faust):
        try:
            figures.append(runner(bootstrap, topic, partitions, expect, work, timeout))
        except Exception as err:  # one failing peer must not hide the other's figure
            name = "Quix Streams" if runner is run_quix else "Faust agent"
            figures.append(Figure("peers", name, None, "records/s",
                                  note=f"failed: {type(err).__name__}: {err}"[:300]))
    return figures
