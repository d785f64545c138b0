"""Activity agent: apply validated events to per-user state and per-partition day aggregates.

Each record on the events topic is a batch for one partition. Events are grouped by user so each
user's state is decoded once and written to the table once per record, which keeps the costly
per-key table writes off the per-event path (DESIGN decision 4).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from agents.business import BusinessKeeper
from agents.business_gauges import BusinessGauges
from agents.cohort_breakdowns import BreakdownKeeper
from agents.experiments import ExperimentKeeper
from agents.forget import Forgetter
from agents.monthly import MonthlyKeeper
from agents.profiles import ProfileKeeper
from agents.safety import SafetyDesk
from agents.snapshots import SnapshotKeeper
from agents.streaks import StreakKeeper
from agents.triggers import TriggerKeeper
from agents.yielding import Turns, owned_users, pause_collector, resume_collector
from sinks.base import drain_all
from sinks.metrics import observe_all
from streams.changelog import read_latest
from streams.envelope import ValidEvent, decode_batch, split_user_key, user_key
from streams.plan import FORGET_EVENT
from streams.topics import changelog_topic
from streams.validate import utc_now
from tables.activity import UserState, already_applied, apply, decode_state, encode_state
from tables.aggregates import DayAggregates
from tables.day_totals import DayTotals
from tables.funnels import reached as funnel_reached
from tables.residuals import decode_residual, forget_token, split_residual_key
from tables.sessions import closed_length, newest_session
from tables.snapshot import has_crisis, restore_days, restore_revenue

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)
WINDOW_COLUMNS = (("dau", 0), ("wau", 1), ("mau", 2))


def register(p: Pipeline) -> None:
    from streams.app import partition_for

    metrics = p.metrics
    desk = SafetyDesk(p)
    streaks = StreakKeeper(p)
    profiles = ProfileKeeper(p)
    triggers = TriggerKeeper(p)
    residual_changelog = changelog_topic(p.settings, "residuals")
    business = BusinessKeeper(p)  # revenue and derived user properties (issue 9)
    snapshots = SnapshotKeeper(p, business.aggregates)  # aggregates kept across restarts
    BusinessGauges(p)  # funnel-week and crisis-review gauges, on their own timer
    experiments = ExperimentKeeper(p)
    forgetter = Forgetter(p, profiles, triggers, business, experiments)
    monthly = MonthlyKeeper(p)  # monthly report per user (seed 001 API 5)
    breakdowns = BreakdownKeeper(p)  # cohort breakdowns by user property (seed 002 §6)
    producer = p.app.producer
    changelog = changelog_topic(p.settings, "users")

    def partition_of(key: bytes) -> int:
        return partition_for(key, p.settings.partitions)

    def aggregates_for(part: int) -> DayAggregates:
        agg = p.aggregates.get(part)
        if agg is None:
            agg = p.aggregates[part] = DayAggregates()
        return agg

    async def process(part: int, events: list[ValidEvent]) -> None:
        now = utc_now().timestamp()
        agg = aggregates_for(part)
        by_user: dict[bytes, list[ValidEvent]] = defaultdict(list)
        for event in events:
            by_user[user_key(event.app, event.user_id)].append(event)
        written: list[tuple[bytes, bytes | None]] = []
        # Counted per batch, not per event: a labelled child lookup costs more than the event.
        valid: Counter[tuple[str, str]] = Counter()
        duplicates: Counter[str] = Counter()
        beyond_history: Counter[str] = Counter()
        beyond_dedupe: Counter[str] = Counter()
        residuals: list[tuple[bytes, bytes]] = []
        lags: list[float] = []  # observed per batch too (sinks.metrics.observe_all)
        sessions_closed: defaultdict[str, list[float]] = defaultdict(list)
        for key, user_events in by_user.items():
            raw = p.users.get(key)
            state = decode_state(raw) if raw else UserState()
            changed = profiled = forgotten = False
            for event in user_events:
                if event.event == FORGET_EVENT:
                    token = forget_token(key, str(event.id_hash))
                    at = (event.source, event.position)
                    seen_at = forgetter.absorbed_at(event.app, part, token)
                    if already_applied(state, event) or seen_at not in (None, at):
                        # Applied already, or the same deletion delivered again later: it must
                        # not wipe what the user did since.
                        duplicates[event.app] += 1
                        continue
                    # Right to delete: what came before goes; what comes after starts afresh,
                    # knowing which input it has seen (a replay must not bring the past back).
                    residual = forgetter.forget(event.app, event.user_id, part, state, now,
                                                "deleted", token, at)
                    if residual is None:  # folded in before this worker's restart
                        duplicates[event.app] += 1
                    else:
                        residuals.append(residual)
                        valid[(event.app, event.event)] += 1
                    monthly.forget(event.app, event.user_id)
                    positions = dict(state.positions)
                    if event.source >= 0:
                        positions[event.source] = event.position
                    state = UserState(positions=positions)
                    changed, profiled, forgotten = False, False, True
                    continue
                try:
                    if business.on_record(state, event):  # identify/$set, not an event
                        changed = True
                        continue
                    newest = newest_session(state)
                    change = apply(state, event, p.state_configs[event.app])
                    if not change.duplicate:
                        ended = closed_length(newest, state)
                        if ended is not None:
                            sessions_closed[event.app].append(ended)
                        if event.props is not None:
                            desk.on_event(key, part, state, event, now)
                        streaks.on_event(state, event)
                        profiled = profiles.on_event(state, event) or profiled
                        triggers.on_event(state, event)
                        business.on_event(part, state, event)
                        experiments.on_event(state, event, agg)
                        monthly.on_event(state, event)
                except Exception as err:  # a poison event must not stop the partition
                    dead_letter_state_error(event, err, part)
                    continue
                if change.duplicate:
                    duplicates[event.app] += 1
                    continue
                changed = True
                valid[(event.app, event.event)] += 1
                if change.beyond_history:
                    beyond_history[event.app] += 1
                if change.beyond_dedupe:
                    beyond_dedupe[event.app] += 1
                if not event.historical:
                    lags.append(max(0.0, now - event.ts))
                agg.add(event.app, change.deltas)
                if change.counters:
                    agg.add_counters(event.app, change.counters)
                for funnel, steps in change.funnels.items():
                    p.funnel_sink.put((event.app, event.user_id, funnel), (
                        event.app, event.user_id, funnel, len(steps),
                        [datetime.fromtimestamp(ts, UTC) for ts, _ in steps]))
            if breakdowns.after_events(user_events[0].app, state, user_events, agg):
                changed = True
            if changed or not forgotten:  # a forgotten user's rows must not come back
                business.publish(user_events[0].app, user_events[0].user_id, state)
            if profiled:
                profiles.publish(user_events[0].app, user_events[0].user_id, state, now)
            if changed:
                try:
                    triggers.after_events(user_events[0].app, user_events[0].user_id, state,
                                          user_events)
                except Exception:  # the events are applied; the sweep evaluates them again
                    log.exception("trigger evaluation failed for a user of %s",
                                  user_events[0].app)
            if changed:
                value = encode_state(state)
                p.users.data[key] = value
                written.append((key, value))
            elif forgotten:
                p.users.data.pop(key, None)
                written.append((key, None))  # the changelog tombstone
        # One changelog record per changed user, straight to the producer in the table's own
        # format (raw bytes), instead of a table assignment per key (~330 µs each, DESIGN 4).
        # Faust flushes the producer before it commits the input offsets: at least once.
        if residuals:
            await write_residuals(residuals, part)
            # Another task may have changed a user meanwhile: write what the store holds now.
            written = [(key, p.users.data.get(key)) for key, _ in written]
        for key, update in written:
            await producer.send(changelog, key, update, part, None, None)
        # Derived events, triggers, alerts and dead letters this batch queued: with the
        # producer before the input record is acked (streams.outbox).
        await p.outbox.send_all()
        observe_all(metrics.event_lag, lags)
        for app, lengths in sessions_closed.items():
            observe_all(metrics.session_duration.labels(app), lengths)
        for (app, name), count in valid.items():
            metrics.events_valid.labels(app, name).inc(count)
        for counter, counts in ((metrics.events_duplicate, duplicates),
                                (metrics.events_beyond_history, beyond_history),
                                (metrics.events_beyond_dedupe, beyond_dedupe)):
            for app, count in counts.items():
                counter.labels(app).inc(count)
        metrics.last_event_timestamp.set(now)

    async def write_residuals(records: list[tuple[bytes, bytes]], part: int) -> None:
        """Residual records, acknowledged before the states and tombstones that depend on them
        are written: after a crash, a state begun afresh by a deletion or a tombstone implies
        the user's share is in the residual (the other way round is repaired by forget_token)."""
        sent = [await producer.send(residual_changelog, key, value, part, None, None)
                for key, value in records]
        await asyncio.gather(*sent)

    def dead_letter_state_error(event: ValidEvent, err: Exception, part: int) -> None:
        # Queued, not awaited: no other coroutine may run between reading and writing a
        # user's state (the safety timer writes states too). Sent at the end of the batch.
        reason = f"state_error: {type(err).__name__}: {err}"[:300]
        log.error("state transition failed for %s/%s: %s\n%s", event.app, event.event, reason,
                  traceback.format_exc(limit=3))
        metrics.events_rejected.labels(event.app, "state_error").inc()
        p.outbox.put(
            p.settings.deadletter_topic,
            orjson.dumps({"app": event.app, "event": event.event, "ts": event.ts,
                          "day": event.day, "id_hash": event.id_hash}),
            headers=[("pulse.reason", b"state_error"),
                     ("pulse.reasons", orjson.dumps([reason])),
                     ("pulse.source.topic", p.settings.events_topic.encode()),
                     ("pulse.source.partition", str(part).encode()),
                     ("pulse.app", event.app.encode())])

    events_wait = metrics.stage_seconds.labels("events_wait")
    apply_time = metrics.stage_seconds.labels("apply")

    @p.app.agent(p.events_topic, name="pulse.agents.activity")
    async def activity(stream):
        async for record in stream.events():
            message = record.message
            taken = time.time()
            events_wait.observe(max(0.0, taken - message.timestamp))
            try:
                events = decode_batch(record.value)
            except Exception as err:  # e.g. a format change during a rolling upgrade
                log.error("undecodable batch at %s[%d]@%d: %s", message.topic,
                          message.partition, message.offset, err)
                metrics.events_rejected.labels("unknown", "undecodable_batch").inc()
                p.outbox.put(
                    p.settings.deadletter_topic, record.value,
                    headers=[("pulse.reason", b"undecodable_batch"),
                             ("pulse.reasons", orjson.dumps(
                                 [f"undecodable_batch: {type(err).__name__}: {err}"[:300]])),
                             ("pulse.source.topic", message.topic.encode()),
                             ("pulse.source.partition", str(message.partition).encode()),
                             ("pulse.source.offset", str(message.offset).encode())])
                await p.outbox.send_all()
                continue
            await process(message.partition, events)
            apply_time.observe(time.time() - taken)

    async def complete_recovery(owned: set[int], table: Any, name: str,
                                partition_of_key: Callable[[bytes], int]) -> int:
        """Fill the table's store from its changelog: Faust replays nothing (BulkRecoveredTable)
        and its recovery used to stop short anyway (see streams.changelog)."""
        latest = await read_latest(p.connections.kafka_bootstrap,
                                   changelog_topic(p.settings, name), owned)
        store = table.data
        repaired = 0
        turns = Turns()
        # Faust's memory store drops the keys of partitions that moved away only for keys its
        # own replay wrote; it replays nothing now, so drop them here.
        for key in list(store.keys()):
            await turns.maybe()
            if partition_of_key(key) not in owned:
                store.pop(key, None)
        for key, value in latest.items():
            await turns.maybe()
            if value is None:
                if store.get(key) is not None:
                    del store[key]
                    repaired += 1
            elif store.get(key) != value:
                store[key] = value
                repaired += 1
        metrics.recovery_records.inc(len(latest))
        metrics.recovery_repaired.inc(repaired)
        return repaired

    def republish_funnels(app: str, user_id: str, state: UserState) -> None:
        """Queue the user_funnels row of each funnel the user has reached a step of."""
        for name, funnel_state in (state.funnels or {}).items():
            funnel = p.state_configs[app].funnels.get(name)
            steps = funnel_reached(funnel_state, funnel) if funnel is not None else []
            if steps:
                p.funnel_sink.put((app, user_id, name), (
                    app, user_id, name, len(steps),
                    [datetime.fromtimestamp(ts, UTC) for ts, _ in steps]))

    # The sinks a rebuild queues a row per user in (agents.yielding, the garbage collector).
    row_sinks = [p.streak_sink, p.funnel_sink, p.profile_sink,
                 *(sink for sink in (p.trigger_sink, p.redis_profiles) if sink is not None)]

    # Rebuilds begun (the newest one alone may finish) and still running (the lifecycle sweep
    # waits: a user forgotten during the walk would count twice, in the walk and the residual).
    rebuilds = {"started": 0, "running": 0}

    @p.app.on_partitions_revoked.connect
    async def drain_sinks(app: Any, /, *args: Any, **kwargs: Any) -> None:
        """Write what the sinks hold before the partitions go to another worker: a queued row
        written after the new owner's rebuild would overwrite its newer row. Faust sends this
        after the agents finished their current events and before the worker rejoins, so the
        new owner starts only after it (or after `sink_drain_seconds`)."""
        revoked = args[0] if args else kwargs.get("revoked")
        if not revoked:
            return
        started = time.monotonic()
        left = await drain_all(p.sinks, p.settings.sink_drain_seconds)
        took = time.monotonic() - started
        await save_snapshots()
        # Until the next rebuild's swap nothing is whole: Faust may restore the store meanwhile
        # (its own replay when the end offsets cannot be read) while the aggregates stay old.
        # The walks that write states wait for it too (save_snapshots halted them).
        snapshots.whole.clear()
        metrics.handover_drain.observe(took)
        metrics.handover_rows_left.inc(left)
        if left:
            log.warning("partition handover: %d sink rows still unwritten after %.1f s (a "
                        "destination down?); they are written later and may overwrite the "
                        "new owner's rows", left, took)
        else:
            log.info("partition handover: sinks drained in %.2f s", took)

    @p.app.on_before_shutdown.connect
    async def drain_sinks_at_stop(app: Any, /, *args: Any, **kwargs: Any) -> None:
        """A stopping worker writes what its sinks hold (Faust sends this once the consumer
        stopped): PostgreSQL is complete when `pulse worker` exits, and the next start has no
        rows to write again. A destination down gets `sink_drain_seconds`; its rows are then
        lost with the process, as after a kill -9 (the next owner's rebuild writes the
        aggregates, streaks, funnels, profiles and crisis rows again from the states).
        The day and revenue rows changed since the last 0.5 s tick are queued first."""
        queue_day_rows()
        business.flush_rows(utc_now())
        left = await drain_all(p.sinks, p.settings.sink_drain_seconds)
        if left:
            log.warning("stopping with %d sink rows unwritten (a destination down?)", left)
        await save_snapshots()

    async def save_snapshots() -> None:
        """The next owner of these partitions (this worker again, after a restart) skips their
        rebuild if their changelog contents stay as they are now (agents.snapshots)."""
        if rebuilds["running"] or not snapshots.enabled:
            return  # half-built aggregates: nothing to keep
        # The state-writing walks stop at their next user; the events are stopped already
        # (Faust stops the streams before a handover or a stop). Until the next rebuild.
        p.walks_halted = True
        try:
            await snapshots.save(partition_of)
        except Exception:  # a snapshot only saves time: the next owner rebuilds
            log.exception("aggregate snapshots failed")

    @p.users.on_recover
    async def rebuild_aggregates() -> None:
        """Aggregates are derived from user state: rebuild them for the partitions now owned,
        and forget rows of partitions that moved to another worker.

        The walk over the users yields every few milliseconds (agents.yielding) so /metrics,
        the safety timer and the sinks keep running; Faust resumes the streams only after this
        returns, so no event changes a state meanwhile. What the walk builds is kept aside and
        swapped in at the end in one turn: nothing half-built is ever published."""
        rebuilds["started"] += 1
        rebuilds["running"] += 1
        collecting = pause_collector()
        try:
            with metrics.sweep_seconds.labels("rebuild").time():
                await rebuild(rebuilds["started"])
        finally:
            rebuilds["running"] -= 1
            resume_collector(collecting, lambda: sum(len(s.pending) for s in row_sinks),
                             p.settings.sink_batch_rows)

    async def rebuild(generation: int) -> None:
        snapshots.whole.clear()  # until the swap below: nothing here is whole yet
        owned = p.owned_partitions()
        saved = await snapshots.load(owned)
        repaired = await complete_recovery(owned, p.users, "users", partition_of)
        repaired += await complete_recovery(owned, p.residuals, "residuals",
                                            lambda rkey: split_residual_key(rkey)[1])
        # Partitions with the very contents of their snapshot take its aggregates; the others
        # are summed from their states.
        restored = await snapshots.usable(saved, partition_of)
        history = p.settings.history_days
        totals = {part: DayTotals(history) for part in owned - restored}
        # Only the states that these keepers read are held, not the million others.
        revenue_states: dict[int, list[tuple[str, UserState]]] = {part: [] for part in owned}
        experiment_states: dict[int, list[tuple[str, UserState]]] = {part: [] for part in owned}
        crisis_keys: list[tuple[bytes, int, str]] = []
        users = 0
        async for key, part, raw in owned_users(p.users.data, owned, partition_of):
            app, _ = split_user_key(key)
            users += 1
            if part in restored:
                if has_crisis(raw):  # the safety desk's timers come from the states
                    crisis_keys.append((key, part, app))
                continue
            state = decode_state(raw)
            totals[part].add(app, state, p.state_configs.get(app))
            if state.revenue is not None:
                revenue_states[part].append((app, state))
            if state.experiments:
                experiment_states[part].append((app, state))
            if state.crisis is not None:
                crisis_keys.append((key, part, app))
        if generation != rebuilds["started"]:
            log.info("a newer rebalance started: its rebuild replaces this one")
            return
        # The swap, in one turn: no await from here until the sweeps.
        p.aggregates.clear()
        for part in restored:
            restore_days(saved[part], aggregates_for(part))
        for part, part_totals in totals.items():
            part_totals.into(aggregates_for(part))
        residuals = [(app, part, decode_residual(raw))
                     for rkey, raw in p.residuals.data.items() if raw
                     for app, part in [split_residual_key(rkey)]
                     if part in owned and part not in restored]
        for app, part, residual in residuals:  # forgotten users keep their share
            aggregates_for(part).add(app, residual.day_deltas())
            aggregates_for(part).add_counters(app, residual.counter_deltas())
        experiments.rebuild(experiment_states, aggregates_for)
        # Crisis timers from the states as they are now (the safety timer ran during the walk).
        crisis_states = []
        for key, part, app in crisis_keys:
            raw = p.users.data.get(key)
            if raw:
                crisis_states.append((key, part, app, decode_state(raw)))
        desk.rebuild(crisis_states, utc_now().timestamp())
        business.rebuild(revenue_states)
        for part in restored:
            restore_revenue(saved[part], business.aggregates_for(part))
        for app, part, residual in residuals:  # forgotten users keep their share of revenue too
            business.aggregates_for(part).add(app, residual.revenue_deltas())
        for pending in [k for k in p.sink.pending if k[2] not in owned]:
            del p.sink.pending[pending]
        snapshots.whole = set(owned)
        p.walks_halted = False
        metrics.partitions_owned.set(len(owned))
        log.info("rebuilt day aggregates for partitions %s from %d users (%d states repaired "
                 "beyond Faust's recovery; partitions %s from their snapshots)", sorted(owned),
                 users, repaired, sorted(restored))
        # The per-user work that no event needs waits no longer than the aggregates: it runs
        # once the streams resume (they resume when this callback returns).
        task = asyncio.get_running_loop().create_task(catch_up(owned, generation))
        catching_up.add(task)
        task.add_done_callback(catching_up.discard)

    catching_up: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def catch_up(owned: set[int], generation: int) -> None:
        """After a rebuild, beside the events (`catch_up_share` of the loop at most):
        - queue every user's streak and funnel rows again: rows a killed worker had queued but
          not written died with it, and the events it had applied come back as duplicates that
          queue nothing (chaos test: user_streaks rows missing after kill -9). Rows are absolute
          values read from the state as it is now, so an event's newer row is never undone;
        - profiles aged while the worker was away: evaluate them at now, recount the gauges;
        - evaluate the re-engagement triggers (the periodic sweep's work).
        A newer rebalance ends it: its own rebuild starts another."""
        started = time.monotonic()
        now = utc_now().timestamp()
        triggers_now = triggers.clock.now()  # tests may set the triggers' clock
        pending: Counter[tuple[str, str]] = Counter()
        try:
            # One walk and one decode per user for all of it; the trigger evaluation comes
            # last, as it may change the state (and then writes it back, in the same turn).
            async for key, part, raw in owned_users(p.users.data, owned, partition_of,
                                                    share=p.settings.catch_up_share):
                if generation != rebuilds["started"] or p.walks_halted:
                    return  # a newer rebuild catches up again; the periodic sweeps do too
                app, user_id = split_user_key(key)
                if app not in p.plans:
                    continue
                state = decode_state(raw)
                streaks.republish(app, user_id, state)
                republish_funnels(app, user_id, state)
                profiles.reevaluate(app, user_id, state, now)
                triggers.evaluate_stored(key, part, app, user_id, state, triggers_now, pending)
            if generation != rebuilds["started"]:
                return
            await profiles.prune_gauges(owned, partition_of, p.settings.catch_up_share)
            triggers.set_pending(pending)
        except Exception:  # the periodic sweeps and later events repeat this work
            log.exception("catch-up after the rebuild failed")
            return
        took = time.monotonic() - started
        metrics.sweep_seconds.labels("catch_up").observe(took)
        log.info("recovery catch-up done in %.1f s: rows queued again, profiles and triggers "
                 "evaluated", took)

    def queue_day_rows() -> dict[str, int]:
        """Hand the day rows changed since the last call to the sinks; each app's today."""
        today = p.today(utc_now())
        # One MAU window short of the history, plus a day for events just past midnight.
        maintained = p.settings.history_days - 31
        for part, agg in list(p.aggregates.items()):
            for app, day, values in agg.take_dirty(today, maintained):
                p.sink.put((app, day, part), values)
                counts = agg.counters_of(app, day)
                if counts:
                    p.counter_sink.put((app, day, part), counts)
        return today

    @p.app.timer(0.5)
    async def publish_aggregates() -> None:
        """Hand changed rows to the sink and refresh the live gauges."""
        today = queue_day_rows()
        for app, day in today.items():
            totals = [0, 0, 0]
            for agg in p.aggregates.values():
                row = agg.get(app, day)
                for i in range(3):
                    totals[i] += row[i]
            for window, column in WINDOW_COLUMNS:
                metrics.active_users.labels(app, window).set(totals[column])
        metrics.users_tracked.set(len(p.users))

    share = p.settings.sweep_share  # of the event loop, for the periodic sweeps below

    @p.app.timer(p.settings.profile_sweep_seconds)
    async def profile_sweep() -> None:
        """Inactivity changes segments and risk without any event: re-evaluate everyone."""
        with metrics.sweep_seconds.labels("profiles").time():
            await profiles.sweep(utc_now().timestamp(), p.owned_partitions(), partition_of,
                                 share)

    @p.app.timer(p.settings.trigger_sweep_seconds)
    async def trigger_sweep() -> None:
        """Inactivity, 20:00 local and expiry happen with no event: evaluate everyone."""
        with metrics.sweep_seconds.labels("triggers").time():
            await triggers.sweep(p.owned_partitions(), partition_of, share)

    @p.app.timer(p.settings.lifecycle_sweep_seconds)
    async def lifecycle_sweep() -> None:
        """Data lifecycle: forget users inactive past the state TTL; drop old audit rows."""
        if rebuilds["running"]:
            return  # the next sweep forgets them
        with metrics.sweep_seconds.labels("lifecycle").time():
            await forget_expired()

    async def forget_expired() -> None:
        now = utc_now().timestamp()
        residuals: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        forgotten: list[tuple[int, bytes]] = []
        async for key, part, raw in owned_users(p.users.data, p.owned_partitions(),
                                                partition_of, share=share):
            if rebuilds["running"] or p.walks_halted:
                break  # a rebalance or a stop began: the next sweep forgets these users
            app, user_id = split_user_key(key)
            if app not in p.plans:
                continue
            state = decode_state(raw)
            if not forgetter.is_expired(state, now):
                continue
            residual = forgetter.forget(app, user_id, part, state, now, "expired",
                                        forget_token(key, f"expired:{state.last_ts!r}"))
            if residual is not None:
                residuals[part].append(residual)
            p.users.data.pop(key, None)
            forgotten.append((part, key))
        for part, records in residuals.items():
            await write_residuals(records, part)
        # What the store holds now: a user who came back since has a new state, not a tombstone.
        for part, key in forgotten:
            await producer.send(changelog, key, p.users.data.get(key), part, None, None)
        if forgotten:
            log.info("forgot %d users inactive for %d days", len(forgotten),
                     p.settings.user_state_ttl_days)
        await purge_crisis_audit()

    async def purge_crisis_audit() -> None:
        try:
            async with p.pool.connection() as conn:
                cur = await conn.execute(
                    "DELETE FROM crisis_incidents WHERE status <> 'open' AND "
                    "coalesce(closed_at, detected_at) < now() - make_interval(days => %s)",
                    (p.settings.crisis_audit_days,))
                metrics.crisis_audit_purged.inc(cur.rowcount)
        except Exception as err:  # PostgreSQL down: the next sweep tries again
            log.warning("crisis audit retention: %s", err)

    @p.app.timer(0.1)
    async def safety_timer() -> None:
        """Sub-second SLA checks, in processing time."""
        desk.tick(utc_now().timestamp())

    @p.app.task
    async def send_outbox() -> None:
        """Side records queued outside the activity agent (timers, sweeps)."""
        await p.outbox.run()

    @p.app.task
    async def run_sinks() -> None:
        await p.pool.open(wait=True)
        optional = (p.trigger_sink, p.forget_sink, p.redis_profiles, p.alertmanager)
        await p.run_sinks(p.sink, p.crisis_sink, p.streak_sink, p.counter_sink, p.funnel_sink,
                          p.profile_sink, *(sink for sink in optional if sink is not None))
