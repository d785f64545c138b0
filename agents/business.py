"""Issue 9 for one worker: subscription revenue and derived user properties.

The activity agent calls this keeper for every applied event (`on_event`), for user-properties
records (`on_record`), after a user's events (`publish`) and after recovery (`rebuild`); the
keeper owns its sinks, timer and the agent on the user-properties topic.

Partitions. User state lives in the `users` table, co-partitioned with the events topic, where
the ingest stage places a user at `partition_for(user_key)` (crc32). The gateway keys
user-properties records by the same user key but leaves the partition to its producer's
partitioner (librdkafka's consistent-random hashes crc32 too, a Java or Go client would use
murmur2 or fnv), so a record's partition is not guaranteed to be the one holding the user's
state. The agent below therefore re-partitions: it turns each record into a one-event batch
on the events topic at `partition_for(user_key)`, where the activity agent applies it to the
same state, in order with that user's events, inside the same changelog write.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from sinks.metrics import RevenueMetrics
from sinks.postgres import date_to_day, day_to_date
from sinks.revenue import (
    RedisPropertiesSink,
    RevenueSink,
    properties_row,
    redis_fields,
    user_properties_sink,
)
from streams.envelope import ValidEvent, encode_batch, id_hash, user_key
from streams.validate import local_day, utc_now
from tables.activity import UserState
from tables.counters import SCALE
from tables.revenue import (
    COLUMNS,
    RevenueAggregates,
    RevenueConfig,
    contribution,
    diff,
    observe,
    replay,
)
from tables.user_props import iso, observe_event, observe_record, served

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)
RECORD_EVENT = "$user_properties"  # a user-properties record riding on the events topic
_PARTS = ("set", "set_once", "unset", "add")
_FLOW_MEASURES = [c for c in COLUMNS if c not in ("mrr_delta", "users_delta")]


def tier_of(cfg: RevenueConfig, plan: str) -> str:
    if plan in cfg.b2b_plans:
        return "b2b"
    return "paid" if plan in cfg.paid_plans else "free"


def record_event(raw: bytes, plans: dict[str, Any]) -> ValidEvent:
    """A gateway user-properties record as an event for the user's partition; raises
    ValueError when it is not one."""
    doc = orjson.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("a user-properties record is a JSON object")
    app, user_id, event_id = doc.get("app"), doc.get("user_id"), doc.get("event_id")
    if app not in plans or not isinstance(user_id, str) or not user_id:
        raise ValueError("unknown app or missing user_id")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("missing event_id")
    stamp = doc.get("timestamp")
    when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    if when is None or when.tzinfo is None:
        raise ValueError("timestamp must be ISO 8601 with an offset")
    props = {k: doc[k] for k in _PARTS if doc.get(k)}
    if any(not isinstance(props.get(k, {}), dict) for k in ("set", "set_once", "add")):
        raise ValueError("set, set_once and add must be objects")
    if not isinstance(props.get("unset", []), list):
        raise ValueError("unset must be a list")
    return ValidEvent(app=app, user_id=user_id, event=RECORD_EVENT, ts=when.timestamp(),
                      day=local_day(when, plans[app]), id_hash=id_hash(app, event_id),
                      activity=False, registration=False, props=props)


class BusinessKeeper:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.revenue = {app: plan.revenue for app, plan in p.plans.items()
                        if plan.revenue is not None}
        self.rules = {app: plan.user_properties for app, plan in p.plans.items()}
        self.aggregates: dict[int, RevenueAggregates] = {}
        self.touched: dict[tuple[int, str], int] = {}  # (partition, app) → day last touched
        self.rebuilt: set[int] = set()  # partitions whose rows come from recovered state
        self.pending_publish = False
        self.gauges = RevenueMetrics(p.metrics.registry)
        s = p.settings
        batching = {"flush_seconds": s.sink_flush_seconds, "max_rows": s.sink_batch_rows,
                    "max_retry_seconds": s.sink_max_retry_seconds}
        self.revenue_sink = RevenueSink(p.pool, p.metrics, **batching)
        self.props_sink = user_properties_sink(p.pool, p.metrics, **batching)
        self.redis = (RedisPropertiesSink(p.connections.redis_url, p.metrics,
                                          ttl_seconds=s.profile_ttl_seconds, **batching)
                      if p.connections.redis_url else None)
        self._register()

    # ---- per event ------------------------------------------------------------------------

    def aggregates_for(self, part: int) -> RevenueAggregates:
        agg = self.aggregates.get(part)
        if agg is None:
            agg = self.aggregates[part] = RevenueAggregates()
        return agg

    def on_record(self, state: UserState, event: ValidEvent) -> bool:
        """Apply a user-properties record; True if it was one (the caller skips `apply`)."""
        if event.event != RECORD_EVENT:
            return False
        state.props, changed = observe_record(state.props, self.rules.get(event.app, {}),
                                              event.props or {}, event.ts, event.day,
                                              event.id_hash, self.p.settings.dedupe_days)
        self.pending_publish = self.pending_publish or changed
        return True

    def on_event(self, part: int, state: UserState, event: ValidEvent) -> None:
        """Fold an applied (not duplicate) event into the subscription and the properties."""
        rules = self.rules.get(event.app)
        if rules:
            state.props, changed = observe_event(state.props, rules, event.event, event.ts,
                                                 event.day, event.activity, event.platform,
                                                 event.props)
            self.pending_publish = self.pending_publish or changed
        cfg = self.revenue.get(event.app)
        if cfg is None:
            return
        known = state.revenue
        if (known is not None and event.event not in cfg.events
                and event.day >= known.first_day):
            return  # nothing this event could change: skip the replay
        before = contribution(known, cfg) if known is not None else {}
        state.revenue, _ = observe(known, cfg, event.event, event.ts, event.day,
                                   event.id_hash, event.props)
        delta = diff(before, contribution(state.revenue, cfg))
        if delta:
            self.aggregates_for(part).add(event.app, delta)
        if event.event in cfg.events:
            self.pending_publish = True

    def publish(self, app: str, user_id: str, state: UserState, force: bool = False) -> None:
        """Write the user's properties and subscription if they changed."""
        if not (self.pending_publish or force):
            return
        self.pending_publish = False
        cfg = self.revenue.get(app)
        if state.props is None and (cfg is None or state.revenue is None):
            return
        props = served(state.props, self.rules.get(app, {})) if state.props else {}
        subscription = None
        if cfg is not None and state.revenue is not None:
            fields = replay(state.revenue, cfg).as_fields()
            subscription = {k: iso(v) if k.endswith("_at") and isinstance(v, float) else v
                            for k, v in fields.items()}
        self.props_sink.put((app, user_id), properties_row(app, user_id, props, subscription))
        if self.redis is not None:
            self.redis.put((app, user_id), redis_fields(props, subscription))

    # ---- recovery, timer, sinks -----------------------------------------------------------

    def revenue_of(self, app: str, state: UserState) -> dict[tuple[int, str], list[int]]:
        """The user's share of the revenue rows (what a forgotten user leaves behind)."""
        cfg = self.revenue.get(app)
        if cfg is None or state.revenue is None:
            return {}
        return contribution(state.revenue, cfg)

    def rebuild(self, buckets: dict[int, list[tuple[str, UserState]]]) -> None:
        """Recompute the revenue rows of the partitions now owned from the restored states."""
        self.aggregates.clear()
        self.touched.clear()
        self.rebuilt = set(buckets)
        for part, users in buckets.items():
            agg = self.aggregates_for(part)
            for app, state in users:
                cfg = self.revenue.get(app)
                if cfg is not None and state.revenue is not None:
                    agg.add(app, contribution(state.revenue, cfg))
        owned = set(buckets)
        for key in [k for k in self.revenue_sink.pending if k[3] not in owned]:
            del self.revenue_sink.pending[key]

    def flush_rows(self, now: datetime) -> None:
        """Hand changed rows to the sink (today's rows too, so the totals reach today) and
        refresh the gauges."""
        today = self.p.today(now)
        # Only partitions rebuilt from their recovered states: touching today's rows of one
        # still recovering would write zeros over its totals until the rebuild.
        owned = self.p.owned_partitions() & self.rebuilt
        for part in owned:
            agg = self.aggregates_for(part)
            for app, cfg in self.revenue.items():
                if self.touched.get((part, app)) != today[app]:
                    for plan in [cfg.free_plan, *cfg.paid_plans]:
                        agg.touch(app, today[app], plan)
                    self.touched[(part, app)] = today[app]
        for part, agg in self.aggregates.items():
            for app, day, plan, values in agg.take_dirty():
                found = self.revenue.get(app)
                if found is not None:
                    self.revenue_sink.put((app, day, plan, part), (tier_of(found, plan), values))
        self.update_gauges(today)

    def update_gauges(self, today: dict[str, int]) -> None:
        g = self.gauges
        for app, cfg in self.revenue.items():
            day = today[app]
            month_start = date_to_day(day_to_date(day).replace(day=1))
            stock: dict[str, list[int]] = {}
            flows: dict[str, list[int]] = {}
            for agg in self.aggregates.values():
                for plan, (mrr, users) in agg.stock(app, day).items():
                    totals = stock.setdefault(plan, [0, 0])
                    totals[0] += mrr
                    totals[1] += users
                for plan, row in agg.flows(app, month_start, day).items():
                    sums = flows.setdefault(plan, [0] * len(COLUMNS))
                    for i, amount in enumerate(row):
                        sums[i] += amount
            b2b = 0
            for plan in dict.fromkeys([cfg.free_plan, *cfg.paid_plans, *stock]):
                mrr, users = stock.get(plan, [0, 0])
                g.mrr.labels(app, plan).set(mrr / SCALE)
                g.users.labels(app, plan).set(users)
                if plan in cfg.b2b_plans:
                    b2b += mrr
                row = flows.get(plan, [0] * len(COLUMNS))
                for measure in _FLOW_MEASURES:
                    value = row[COLUMNS.index(measure)]
                    g.month.labels(app, plan, measure).set(
                        value / SCALE if measure == "revenue" else value)
            if cfg.b2b_plans:
                g.b2b_arr.labels(app).set(12 * b2b / SCALE)

    def _register(self) -> None:
        p = self.p
        topic = p.app.topic(p.settings.user_properties_topic, partitions=p.settings.partitions)

        @p.app.agent(topic, name="pulse.agents.user_properties")
        async def repartition(stream: Any) -> None:
            from streams.app import partition_for

            async for record in stream.events():
                message = record.message
                try:
                    event = record_event(record.value or b"", p.plans)
                except Exception as err:  # a bad record costs itself, not the partition
                    reason = f"bad_user_properties: {type(err).__name__}: {err}"[:300]
                    p.metrics.events_rejected.labels("unknown", "bad_user_properties").inc()
                    p.outbox.put(p.settings.deadletter_topic, record.value, headers=[
                        ("pulse.reason", b"bad_user_properties"),
                        ("pulse.reasons", orjson.dumps([reason])),
                        ("pulse.source.topic", message.topic.encode()),
                        ("pulse.source.partition", str(message.partition).encode()),
                        ("pulse.source.offset", str(message.offset).encode())])
                    await p.outbox.send_all()  # before this record is acked
                    continue
                part = partition_for(user_key(event.app, event.user_id), p.settings.partitions)
                await p.events_topic.send(value=encode_batch([event]), partition=part)

        @p.app.timer(1.0)
        async def revenue_rows() -> None:
            self.flush_rows(utc_now())

        @p.app.task
        async def business_sinks() -> None:
            # The activity agent's run_sinks opens the shared pool (two concurrent open(wait)
            # calls trip psycopg_pool's assertion): wait for it instead.
            while p.pool.closed:  # noqa: ASYNC110 - the pool offers no open event
                await asyncio.sleep(0.1)
            await p.run_sinks(self.revenue_sink, self.props_sink,
                              *([self.redis] if self.redis is not None else []))

