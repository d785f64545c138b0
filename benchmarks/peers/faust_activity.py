"""The per-user activity/DAU job as a plain Faust app: one record at a time, one table write.

Run by benchmarks/run.py as a subprocess (configured by BENCH_* environment variables):

    BENCH_BOOTSTRAP=127.0.0.1:9092 BENCH_TOPIC=bench.ingest BENCH_GROUP=bench-faust \
    BENCH_PARTITIONS=4 BENCH_EXPECT=90000 BENCH_PROGRESS=/tmp/faust.json \
    python -m benchmarks.peers.faust_activity worker -l warn

Per record: decode the JSON event, read the user's entry in the `activity` table (last active
day and the set of active days), update it, write it back, and count DAU per (app, day) when
the day is new for the user. This is how a Faust user would write it, following the Faust
examples; the harness times from the first to the last processed record.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import faust

from benchmarks.peers.progress import Progress

app = faust.App(
    os.environ["BENCH_GROUP"],
    broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}",
    store="memory://",
    topic_partitions=int(os.environ["BENCH_PARTITIONS"]),
    topic_replication_factor=1,
    topic_allow_declare=False,  # created up front with explicit configs (Tansu)
    web_enabled=False,
    key_serializer="raw",
    value_serializer="json",
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=0,
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    broker_rebalance_timeout=20.0,
)
events = app.topic(os.environ["BENCH_TOPIC"], key_type=bytes, value_type=bytes,
                   value_serializer="raw")
activity = app.Table("activity", default=None, partitions=int(os.environ["BENCH_PARTITIONS"]))
dau: Counter[tuple[str, str]] = Counter()
progress = Progress(os.environ["BENCH_PROGRESS"], int(os.environ["BENCH_EXPECT"]))


@app.agent(events)
async def track(stream: faust.StreamT) -> None:
    async for key, value in stream.items():
        event = json.loads(value)
        day = event["timestamp"][:10]  # the local date: timestamps carry the app's offset
        entry = activity.get(key) or {"last": day, "days": []}
        if day not in entry["days"]:
            entry["days"].append(day)
            dau[(event["app"], day)] += 1
        entry["last"] = max(entry["last"], day)
        activity[key] = entry
        progress.tick()


if __name__ == "__main__":
    app.main()
