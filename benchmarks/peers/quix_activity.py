"""The per-user activity/DAU job in Quix Streams: RocksDB state per message key, one state
update per record, changelog on (Quix's defaults).

Run by benchmarks/run.py as a subprocess:

    python -m benchmarks.peers.quix_activity --bootstrap 127.0.0.1:9092 --topic bench.ingest \
        --group bench-quix --expect 90000 --progress /tmp/quix.json --state-dir /tmp/quix

Its topics (input and `changelog__<group>--<topic>--default`) must exist with explicit
`retention.ms`/`cleanup.policy` configs on the embedded broker: Quix reads them back with
DescribeConfigs, and Tansu reports only configs set at creation.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from quixstreams import Application, State

from benchmarks.peers.progress import Progress


def changelog_topic(group: str, topic: str) -> str:
    """Quix's name for the default store's changelog of `topic` in consumer group `group`."""
    return f"changelog__{group}--{topic}--default"


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--bootstrap", "--topic", "--group", "--progress", "--state-dir"):
        parser.add_argument(name, required=True)
    parser.add_argument("--expect", type=int, required=True)
    args = parser.parse_args()

    app = Application(broker_address=args.bootstrap, consumer_group=args.group,
                      auto_offset_reset="earliest", state_dir=args.state_dir,
                      auto_create_topics=False, loglevel="WARNING")
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="bytes")
    progress = Progress(args.progress, args.expect)
    dau: Counter[tuple[str, str]] = Counter()

    def track(event: dict[str, Any], state: State) -> None:
        day = event["timestamp"][:10]  # the local date: timestamps carry the app's offset
        entry = state.get("activity") or {"last": day, "days": []}
        if day not in entry["days"]:
            entry["days"].append(day)
            dau[(event["app"], day)] += 1
        entry["last"] = max(entry["last"], day)
        state.set("activity", entry)
        if progress.tick():
            app.stop()

    app.dataframe(topic).update(track, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
