"""Every Prometheus metric Pulse exports, in one place, on an injectable registry.

Labels are bounded by the tracking plans (app, event, reason code, window, sink) — never a user
id (DESIGN decision 5). Buckets are explicit and in the unit observed.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

# No `<name>_created` series beside each counter and histogram child: nothing reads them, they
# doubled what a scrape renders (a full /metrics took ~88 ms of a busy worker's time, in a
# thread that holds the GIL against the event loop: benchmarks/RESULTS.md, latency).
disable_created_metrics()


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe` of each amount, as one increment per bucket hit and one of the sum.

    Per event, `observe` walks the buckets and takes a lock per increment (~2.4 µs; ~2% of a
    worker under live traffic, where the activity agent observes every event's lag). This
    reads the histogram's bucket bounds and values, which prometheus_client keeps in
    `_upper_bounds`, `_buckets` and `_sum`; without them it observes one by one
    (tests/unit/sinks/test_metrics_observe_all.py compares the two expositions)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    if not amounts:
        return
    hits = collections.Counter(bisect.bisect_left(bounds, amount) for amount in amounts)
    for index, count in hits.items():
        buckets[index].inc(count)
    total.inc(sum(amounts))

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400, 604800)
# Around the 60 s crisis SLA (seed 000): fine below it, coarse above.
CRISIS_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 300, 600)
# Stages of the path publish → applied, for a latency budget of a few hundred milliseconds.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 60)
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# HTTP gateway request latency: the target is p99 ≤ 50 ms.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5,
                   5, 10)
# Session length (seed 000 targets 8–15 min; seed 004 closes a session after a 30 min gap).
SESSION_BUCKETS = (0, 30, 60, 120, 300, 480, 900, 1800, 3600, 7200, 14400)
# Event-loop stalls (issue 6): the publish → /metrics target is 250 ms.
STALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SWEEP_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "pulse_events_consumed", "Events read from the ingest topic (array elements count "
            "one each; an undecodable record counts one)", registry=r)
        self.events_valid = Counter(
            "pulse_events_valid", "Valid, deduplicated events applied to state",
            ["app", "event"], registry=r)
        self.events_rejected = Counter(
            "pulse_events_rejected", "Events sent to the dead-letter topic, by first reason",
            ["app", "reason"], registry=r)
        self.events_duplicate = Counter(
            "pulse_events_duplicate", "Events dropped as duplicates of an event id already seen",
            ["app"], registry=r)
        self.events_beyond_history = Counter(
            "pulse_events_beyond_history", "Valid events older than the per-user history; "
            "counted but they change no maintained day", ["app"], registry=r)
        self.events_beyond_dedupe = Counter(
            "pulse_events_beyond_dedupe_window", "Valid events that arrived more than the "
            "dedupe window after the user's newest event: not checked for duplicates",
            ["app"], registry=r)
        self.ingest_lag = Gauge(
            "pulse_ingest_lag_records", "Ingest records published but not yet read by this "
            "worker (its ingest partitions; sum over workers)", registry=r)
        self.users_forgotten = Counter(
            "pulse_users_forgotten", "Users whose state and rows were removed: deleted on "
            "request (user_deleted) or expired after the state TTL", ["app", "reason"],
            registry=r)
        self.users_forgotten_replayed = Counter(
            "pulse_users_forgotten_replayed", "Forgettings seen again (a deletion delivered "
            "twice, or replayed after a worker died before writing the user's tombstone): the "
            "user's share is not kept twice", ["app"],
            registry=r)
        self.crisis_audit_purged = Counter(
            "pulse_crisis_audit_purged", "Closed crisis-incident audit rows deleted after the "
            "retention period", registry=r)
        self.active_users = Gauge(
            "pulse_active_users", "Active users on the current local day of the app "
            "(this worker's partitions; sum over workers)", ["app", "window"], registry=r)
        self.event_lag = Histogram(
            "pulse_event_lag_seconds", "Event time to processing time, for live events",
            buckets=LAG_BUCKETS, registry=r)
        # Where the time from publish to applied goes (issue 6, latency): `ingest_wait` is a
        # record's broker timestamp to the ingest stage reading it (per record), `events_wait`
        # an events-topic batch's timestamp to the activity agent taking it, `apply` the
        # agent's work on one batch (both per batch).
        self.stage_seconds = Histogram(
            "pulse_stage_seconds", "Time events spend in each stage between publish and "
            "applied: ingest_wait, events_wait, apply", ["stage"], buckets=STAGE_BUCKETS,
            registry=r)
        self.sink_flush_seconds = Histogram(
            "pulse_sink_flush_seconds", "Time to write one batch", ["sink"],
            buckets=FLUSH_BUCKETS, registry=r)
        self.sink_rows = Counter(
            "pulse_sink_rows", "Rows written by sinks", ["sink"], registry=r)
        self.sink_errors = Counter(
            "pulse_sink_errors", "Failed sink writes (retried with backoff)", ["sink"], registry=r)
        self.side_records_failed = Counter(
            "pulse_side_records_failed", "Derived events, triggers, alerts or dead letters the "
            "broker refused for good: sent to the dead-letter topic, or dropped if that failed "
            "too (streams.outbox)", ["topic", "outcome"], registry=r)
        self.sink_pending = Gauge(
            "pulse_sink_pending_rows", "Rows waiting to be written", ["sink"], registry=r)
        self.handover_drain = Histogram(
            "pulse_sink_handover_drain_seconds", "Time a worker handing partitions over in a "
            "rebalance spent writing its sinks' queued rows (the rebalance waits as long)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.handover_rows_left = Counter(
            "pulse_sink_handover_rows_left", "Queued rows still unwritten when a partition "
            "handover stopped waiting for the sinks (they may overwrite the new owner's)",
            registry=r)
        self.alerts_rejected = Counter(
            "pulse_alerts_rejected", "Alerts a receiver refused as invalid (dropped, logged)",
            ["receiver"], registry=r)
        self.alerts_sent = Counter(
            "pulse_alerts_sent", "Alerts delivered to a receiver",
            ["receiver", "kind", "status"], registry=r)
        self.recovery_records = Counter(
            "pulse_recovery_changelog_records", "Per-user states read from the changelog after "
            "a rebalance or restart", registry=r)
        self.recovery_repaired = Counter(
            "pulse_recovery_repaired_states", "States the table's own recovery missed and Pulse "
            "restored from the changelog's true end", registry=r)
        self.aggregate_snapshots = Counter(
            "pulse_aggregate_snapshots", "Partition aggregate snapshots (tables.snapshot), by "
            "outcome: taken at stop or handover; at recovery used, stale (contents or rules "
            "changed: rebuilt), absent, or failed (PostgreSQL unreachable: rebuilt)",
            ["outcome"], registry=r)
        self.last_event_timestamp = Gauge(
            "pulse_last_event_timestamp_seconds", "Processing time of the last applied event "
            "(unix seconds): a stalled pipeline stops moving it", registry=r)
        # Safety (seed 000): crisis incidents of this worker's partitions.
        self.crisis_detected = Counter(
            "pulse_crisis_detected", "Crisis incidents opened, by level at opening",
            ["app", "level"], registry=r)
        self.crisis_open = Gauge(
            "pulse_crisis_open", "Crisis incidents open now", ["app", "level"], registry=r)
        self.crisis_open_oldest = Gauge(
            "pulse_crisis_open_oldest_seconds", "Age of the oldest open incident (processing "
            "time since detection), 0 when none", ["app"], registry=r)
        self.crisis_breaches = Counter(
            "pulse_crisis_sla_breaches", "Incidents still open at their SLA deadline",
            ["app", "level"], registry=r)
        self.crisis_response = Histogram(
            "pulse_crisis_response_seconds", "Detection to escalation, event time",
            ["app", "level"], buckets=CRISIS_BUCKETS, registry=r)
        self.crisis_escalations = Counter(
            "pulse_crisis_escalations", "Incidents closed by escalation, by action",
            ["app", "action"], registry=r)
        self.crisis_declines = Counter(
            "pulse_crisis_declines", "Escalations the user declined", ["app"], registry=r)
        self.crisis_anomalies = Counter(
            "pulse_crisis_anomalies", "Crisis events that did not fit the incident flow "
            "(escalation without detection, clock skew, out of order)", ["app", "kind"],
            registry=r)
        self.streak_events = Counter(
            "pulse_streak_events", "Derived streak events emitted", ["app", "type", "kind"],
            registry=r)
        self.users_by_segment = Gauge(
            "pulse_users_by_segment", "Users per retention segment (seed 001), as of their last "
            "evaluation (an event or a sweep)", ["app", "segment"], registry=r)
        self.users_by_churn_risk = Gauge(
            "pulse_users_by_churn_risk", "Users per churn-risk level (seed 001), as of their last "
            "evaluation (an event or a sweep)", ["app", "level"], registry=r)
        self.triggers_created = Counter(
            "pulse_triggers_created", "Re-engagement triggers created (seed 001)",
            ["app", "type"], registry=r)
        self.triggers_capped = Counter(
            "pulse_triggers_capped", "Due triggers not created at an evaluation because the "
            "user's daily cap was reached", ["app", "type"], registry=r)
        self.triggers_closed = Counter(
            "pulse_triggers_closed", "Trigger status changes from pending or sent",
            ["app", "type", "status"], registry=r)
        self.triggers_pending = Gauge(
            "pulse_triggers_pending", "Triggers pending now (this worker's partitions)",
            ["app", "type"], registry=r)
        self.partitions_owned = Gauge(
            "pulse_partitions_owned", "Event partitions this worker owns", registry=r)
        # The ingest loop's consumer is in a group of its own (`<app_id>-ingest`), which
        # settles apart from Faust's: a worker that owns event partitions may not read ingest yet.
        self.ingest_partitions_owned = Gauge(
            "pulse_ingest_partitions_owned", "Ingest partitions this worker's ingest loop reads",
            registry=r)
        self.users_tracked = Gauge(
            "pulse_users_tracked", "Per-user states held by this worker", registry=r)

        # ---- HTTP gateway (`pulse gateway`, streams/gateway/) --------------------------------
        # `api` is one of batch, segment, posthog, amplitude; `app` comes from the write key
        # ("unknown" before authentication); `reason` is a validation reason code or a
        # request-level one (unauthorized, too_large, invalid_body, rate_limited, unavailable).
        self.gateway_requests = Counter(
            "pulse_gateway_requests", "HTTP requests answered, by API and status code",
            ["api", "status"], registry=r)
        self.gateway_events = Counter(
            "pulse_gateway_events", "Events received, by outcome: accepted (to the ingest "
            "topic), deadlettered (accepted by the API's convention but invalid), rejected "
            "(refused to the client)", ["api", "app", "outcome"], registry=r)
        self.gateway_rejections = Counter(
            "pulse_gateway_rejections", "Rejected or dead-lettered events and refused requests, "
            "by first reason", ["api", "app", "reason"], registry=r)
        self.gateway_user_properties = Counter(
            "pulse_gateway_user_properties", "User-property records published",
            ["api", "app"], registry=r)
        self.gateway_request_seconds = Histogram(
            "pulse_gateway_request_seconds", "Request latency, body read to response, "
            "broker acknowledgement included", ["api"], buckets=REQUEST_BUCKETS, registry=r)
        self.gateway_broker_ready = Gauge(
            "pulse_gateway_broker_ready", "1 while the broker answers metadata requests",
            registry=r)

        # ---- dashboards (deploy/grafana/dashboards) ------------------------------------------
        self.consumer_lag = Gauge(
            "pulse_consumer_lag_records", "Records of an owned input partition not yet "
            "committed by this worker's consumer group (log end offset − committed offset)",
            ["topic", "partition"], registry=r)
        self.session_duration = Histogram(
            "pulse_session_duration_seconds", "Length (last − first event) of sessions closed "
            "by the user's next session, in arrival order", ["app"], buckets=SESSION_BUCKETS,
            registry=r)
        # process_* (CPU, resident memory, open fds, start time) for the worker-health panels.
        ProcessCollector(registry=r)
        # ---- business metrics (issue 9) -------------------------------------------------------
        # Funnel cohorts of the settled week (tables.cohort_week): with step 0 this gives weekly
        # activation = step 1 / step 0 (seed 003: ton18's onboarding within 7 days of signup).
        self.funnel_week_users = Gauge(
            "pulse_funnel_week_cohort_users", "Users of the latest seven cohort days whose "
            "funnel windows have elapsed who reached the step (this worker's partitions; sum "
            "over workers)", ["app", "funnel", "step", "event"], registry=r)
        # Crisis reviews (tables.detection_quality) on the current local day (1d) and the last
        # seven (7d); precision/recall/FNR are ratios of sums over workers (rules/safety.yml).
        self.crisis_reviews = Gauge(
            "pulse_crisis_reviews", "Crisis reviews by verdict over the local days of the window "
            "(this worker's partitions; sum over workers)", ["app", "verdict", "window"],
            registry=r)
        # A/B experiments declared in the plans (tables.experiments), all exposure days summed.
        # Per-worker sums: means, variances and p-values are computed from the sums over
        # workers (`pulse report --section experiments` does the tests).
        self.experiment_users = Gauge(
            "pulse_experiment_users", "Users per experiment variant: exposed, converted "
            "(conversion metrics) or with_metric (mean metrics) (this worker's partitions)",
            ["app", "experiment", "variant", "measure"], registry=r)
        self.experiment_metric_sum = Gauge(
            "pulse_experiment_metric_sum", "Σ of the per-user metric means of a mean-metric "
            "experiment variant (this worker's partitions)",
            ["app", "experiment", "variant"], registry=r)
        self.experiment_metric_sum_squares = Gauge(
            "pulse_experiment_metric_sum_squares", "Σ of the squared per-user metric means "
            "(variance = (Σx² − (Σx)²/n) / (n − 1) over workers)",
            ["app", "experiment", "variant"], registry=r)
        self.experiment_target_users = Gauge(
            "pulse_experiment_target_users", "The plan's target sample size per variant",
            ["app", "experiment"], registry=r)
        self.monthly_too_late = Counter(
            "pulse_monthly_too_late", "Events for a month before the user's previous month: "
            "the monthly report keeps two months, so they change no user_monthly row",
            ["app"], registry=r)
        # Issue 6: how late the event loop runs a 20 ms tick (agents.loop_probe): a long
        # synchronous loop (a rebuild, a sweep) delays every timer, the gauges and the fetches.
        self.loop_stall = Histogram(
            "pulse_event_loop_stall_seconds", "Delay of the event loop's 20 ms probe tick "
            "beyond its due time", buckets=STALL_BUCKETS, registry=r)
        self.loop_stall_max = Gauge(
            "pulse_event_loop_stall_max_seconds", "Longest delay of the probe tick since the "
            "worker started", registry=r)
        # How long each walk over every user takes at this worker's user count: a sweep longer
        # than its interval never rests (settings.sweep_share sets how much of the loop it has).
        self.sweep_seconds = Histogram(
            "pulse_sweep_seconds", "Wall time of one periodic sweep over every user, by sweep",
            ["sweep"], buckets=SWEEP_BUCKETS, registry=r)


class RevenueMetrics:
    """Issue 9's gauges, per app and plan (bounded by the plans), for this worker's partitions:
    sum over workers. On the registry of the worker's Metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.mrr = Gauge(
            "pulse_revenue_mrr", "Monthly recurring revenue at the end of the app's current "
            "local day, in the plan's currency", ["app", "plan"], registry=r)
        self.users = Gauge(
            "pulse_revenue_users", "Users in each plan now (the free plan: known users not "
            "paying)", ["app", "plan"], registry=r)
        self.b2b_arr = Gauge(
            "pulse_revenue_b2b_arr", "B2B annual recurring revenue: 12 x the b2b plans' MRR",
            ["app"], registry=r)
        self.month = Gauge(
            "pulse_revenue_month_to_date", "This local month so far, per plan: joined, "
            "new_paid, churned_paid, trial_started, trial_converted, trial_ended, revenue, "
            "payments_failed", ["app", "plan", "measure"], registry=r)
