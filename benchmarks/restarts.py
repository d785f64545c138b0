"""Repeated clean restarts of one worker: how long each restore takes, and its logs at INFO.

    .venv/bin/python -m benchmarks.restarts [--users 300000] [--rounds 5] [--keep DIR]

Writes `--users` states to a fresh changelog (as the recovery section does), starts a worker
until it tracks them all, then stops it with SIGTERM (aggregate snapshots taken) and starts it
again, `--rounds` times. Prints each stop and restore time with the snapshot outcomes. The
worker's log (every start, marked) stays in the run's directory under `--keep`, so a slow
round's group joins can be read (docs/performance.md: some restarts wait ~13 s longer in the
group join on the embedded broker).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import recovery_bench
from benchmarks.harness import python
from benchmarks.pulse_bench import PulseRun
from streams.embedded import EmbeddedServices


class LoggedRun(PulseRun):
    """A PulseRun whose worker logs at INFO, each start marked in the log."""

    def start(self, workers: int) -> None:
        with open(self.state_dir / "worker-0.log", "ab") as log:
            log.write(f"=== start at {time.time():.3f}\n".encode())
        super().start(workers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="work here and keep it (worker logs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.keep or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        with EmbeddedServices(work / ".pulse") as svc:
            run = LoggedRun("restarts", svc, args.partitions, work, loglevel="INFO")
            try:
                subprocess.run([python(), "-m", "streams.cli", "topics", "create"],
                               env=run.env, check=True, capture_output=True, timeout=120)
                recovery_bench.write_changelog(
                    svc.kafka_bootstrap, f"{run.env['PULSE_APP_ID']}-users-changelog",
                    args.partitions, args.users)
                first = recovery_bench.time_start(run, args.users, 1800)
                print(f"first start (rebuild): {first:.1f} s", flush=True)
                for n in range(args.rounds):
                    clean = recovery_bench.restart_after_clean_stop(run, args.users, 1800)
                    print(f"round {n + 1}: stop {clean.stop_seconds:.1f} s, start "
                          f"{clean.start_seconds:.1f} s, snapshots: "
                          f"{recovery_bench.outcomes_text(clean.snapshots)}", flush=True)
            finally:
                run.stop()
            if args.keep:
                print(f"worker log: {run.state_dir / 'worker-0.log'}")


if __name__ == "__main__":
    main()
