"""The Faust app of a worker: topics, the per-user table, shared pipeline state, and the agents.

`build_worker` wires everything for one process. Agents stay thin (`agents/`); the pure logic
lives in `tables/`, the writes in `sinks/`.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import faust
import faust.transport.drivers.aiokafka
from psycopg_pool import AsyncConnectionPool

from sinks.alertmanager import AlertmanagerSink
from sinks.base import BatchingSink
from sinks.metrics import Metrics
from sinks.postgres import (
    AppCounterSink,
    DailyMetricsSink,
    ForgetSink,
    RowUpsertSink,
    crisis_incident_sink,
    user_funnel_sink,
    user_profile_sink,
    user_streak_sink,
    user_trigger_sink,
)
from sinks.redis import RedisProfileSink
from streams.bulk_recovery import bulk_table
from streams.connections import Connections
from streams.outbox import Outbox
from streams.plan import Plan, load_plans
from streams.privacy import pseudonymizer_for
from streams.settings import Settings
from streams.validate import Limits, local_day
from tables.activity import StateConfig
from tables.aggregates import DayAggregates

log = logging.getLogger(__name__)


def partition_for(key: bytes, partitions: int) -> int:
    """The events-topic (and table) partition of a user key: stable across processes."""
    return zlib.crc32(key) % partitions


@dataclass
class Pipeline:
    """Everything the agents of one worker share."""

    settings: Settings
    connections: Connections
    plans: dict[str, Plan]
    metrics: Metrics
    app: faust.App
    ingest_topic: Any
    events_topic: Any
    deadletter_topic: Any
    users: Any  # faust.Table[bytes, bytes]: user key → msgpack UserState
    pool: AsyncConnectionPool
    sink: DailyMetricsSink
    limits: Limits
    state_configs: dict[str, StateConfig]
    alerts_topic: Any
    derived_topic: Any
    crisis_sink: RowUpsertSink
    streak_sink: RowUpsertSink
    counter_sink: AppCounterSink
    funnel_sink: RowUpsertSink
    profile_sink: RowUpsertSink
    redis_profiles: RedisProfileSink | None
    alertmanager: AlertmanagerSink | None
    aggregates: dict[int, DayAggregates] = field(default_factory=dict)
    triggers_topic: Any = None  # re-engagement triggers for the bots (JSON)
    trigger_sink: RowUpsertSink | None = None  # user_triggers
    # Forgotten users' anonymous share of the day aggregates: (app, partition) → Residual.
    residuals: Any = None
    forget_sink: ForgetSink | None = None
    # Side records (derived events, triggers, alerts, dead letters): not Faust's send_soon.
    outbox: Outbox = field(init=False)
    # Every running sink (run_sinks): a partition handover drains them all.
    sinks: list[BatchingSink[Any]] = field(default_factory=list)
    # Set while aggregate snapshots are taken and until the next rebuild (agents.snapshots):
    # the walks that write states (trigger sweep, catch-up, lifecycle) stop at the next user,
    # so the snapshot's contents are still the changelog's when the next owner reads it.
    walks_halted: bool = False

    def __post_init__(self) -> None:
        failed = self.metrics.side_records_failed
        self.outbox = Outbox(lambda: self.app.producer, self.settings.deadletter_topic,
                             lambda topic, outcome: failed.labels(topic, outcome).inc())

    async def run_sinks(self, *sinks: BatchingSink[Any]) -> None:
        """Run the sinks' flush loops, registered for the drain at a partition handover."""
        self.sinks.extend(sinks)
        await asyncio.gather(*(sink.run() for sink in sinks))

    def today(self, now: datetime) -> dict[str, int]:
        return {app: local_day(now, plan) for app, plan in self.plans.items()}

    def owned_partitions(self) -> set[int]:
        assigned = self.app.assignor.assigned_actives()
        return {tp.partition for tp in assigned if tp.topic == self.settings.events_topic}


def _consumer_fetch_wait(fetch_wait_ms: int) -> None:
    """Faust creates its consumer with a fixed 1,500 ms fetch wait. Kafka answers a fetch as
    soon as records exist, but the embedded broker holds it for the whole wait: every event
    spent up to 1.5 s on the events topic (benchmarks/RESULTS.md, latency). There is no
    setting for it, so the created consumer gets the configured wait before it starts."""
    thread = faust.transport.drivers.aiokafka.AIOKafkaConsumerThread
    create = thread.__dict__.get("_pulse_original_create", thread._create_worker_consumer)

    def create_with_wait(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = fetch_wait_ms  # read when its fetcher starts
        return consumer

    setattr(thread, "_pulse_original_create", create)  # noqa: B010 - idempotent re-wrapping
    setattr(thread, "_create_worker_consumer", create_with_wait)  # noqa: B010


def build_worker(settings: Settings, connections: Connections,
                 metrics: Metrics | None = None) -> Pipeline:
    plans = load_plans(directory=settings.plans_dir)
    metrics = metrics or Metrics()
    _consumer_fetch_wait(settings.fetch_wait_ms)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{connections.kafka_bootstrap}",
        store="memory://",
        # Tables live in memory, but Faust still creates a data folder; keep it under the
        # state folder instead of a `<app_id>-data` folder in whatever directory we run from.
        datadir=str(settings.state_dir / "faust-{conf.name}"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=False,  # topics are created with explicit configs (streams.topics)
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        # Short session and rebalance timeouts: the embedded broker settles groups slowly after
        # a member leaves, and tests restart workers.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        producer_linger_ms=5,
        # aiokafka keeps one produce request in flight per broker, and a send into a full
        # batch waits until that batch has left. With Faust's 16 KB batches (~20 user states)
        # the activity agent waited on the broker every few users: at half load 30-45% of its
        # time went to changelog sends of 15-30 ms per record, and the events topic queued
        # behind it (issue 6, latency). 1 MiB, as the ingest loop's producer uses.
        producer_max_batch_size=1024 * 1024,
    )
    ingest_topic = app.topic(settings.ingest_topic, partitions=settings.partitions)
    events_topic = app.topic(settings.events_topic, partitions=settings.partitions)
    deadletter_topic = app.topic(settings.deadletter_topic, partitions=settings.partitions)
    alerts_topic = app.topic(settings.alerts_topic, partitions=1)
    derived_topic = app.topic(settings.derived_topic, partitions=settings.partitions)
    # Keys and values are bytes; the app-wide raw serializers apply to the changelog too.
    # Restored in bulk by the activity agent's on_recover, not replayed by Faust (bulk_recovery).
    users = bulk_table(app, "users", connections.kafka_bootstrap, default=None,
                       partitions=settings.partitions, key_type=bytes, value_type=bytes)
    pool = AsyncConnectionPool(connections.database_url, min_size=1, max_size=4, open=False)
    sink = DailyMetricsSink(pool, metrics, flush_seconds=settings.sink_flush_seconds,
                            max_rows=settings.sink_batch_rows,
                            max_retry_seconds=settings.sink_max_retry_seconds)
    limits = Limits(
        max_record_bytes=settings.max_record_bytes,
        lateness=timedelta(days=settings.lateness_days),
        future_tolerance=timedelta(seconds=settings.future_tolerance_seconds),
        ids=pseudonymizer_for(plans, settings.user_id_key()),
    )
    state_configs = {
        name: StateConfig(session_gap=float(plan.session_gap_seconds),
                          history_days=settings.history_days, dedupe_days=settings.dedupe_days,
                          counters=plan.counters, funnels=plan.funnels, groups=plan.groups,
                          breakdowns=plan.cohorts.breakdowns if plan.cohorts else {})
        for name, plan in plans.items()
    }
    # The audit log is written promptly: on-call may look an incident up while it is open.
    crisis_sink = crisis_incident_sink(pool, metrics, flush_seconds=0.2,
                                     max_rows=settings.sink_batch_rows,
                                     max_retry_seconds=settings.sink_max_retry_seconds)
    batching = {"flush_seconds": settings.sink_flush_seconds,
                "max_rows": settings.sink_batch_rows,
                "max_retry_seconds": settings.sink_max_retry_seconds}
    streak_sink = user_streak_sink(pool, metrics, **batching)
    counter_sink = AppCounterSink(pool, metrics, **batching)
    funnel_sink = user_funnel_sink(pool, metrics, **batching)
    profile_sink = user_profile_sink(pool, metrics, **batching)
    redis_profiles = RedisProfileSink(connections.redis_url, metrics,
                                      ttl_seconds=settings.profile_ttl_seconds, **batching)
    alertmanager = (AlertmanagerSink(settings.alertmanager_url, metrics)
                    if settings.alertmanager_url else None)
    pipeline = Pipeline(settings, connections, plans, metrics, app, ingest_topic, events_topic,
                        deadletter_topic, users, pool, sink, limits, state_configs,
                        alerts_topic, derived_topic, crisis_sink, streak_sink, counter_sink,
                        funnel_sink, profile_sink, redis_profiles, alertmanager,
                        triggers_topic=app.topic(settings.triggers_topic,
                                                 partitions=settings.partitions),
                        trigger_sink=user_trigger_sink(pool, metrics, **batching),
                        residuals=bulk_table(app, "residuals", connections.kafka_bootstrap,
                                             default=None, partitions=settings.partitions,
                                             key_type=bytes, value_type=bytes),
                        forget_sink=ForgetSink(
                            pool, metrics, **batching,
                            recheck_seconds=2 * settings.sink_max_retry_seconds))

    from agents import activity, ingest  # agents register on the app they are given

    ingest.register(pipeline)
    activity.register(pipeline)
    from agents import lag

    lag.register(pipeline)
    from agents import loop_probe

    loop_probe.register(pipeline)
    return pipeline
