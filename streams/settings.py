"""The one settings object. Every option can be set by a `PULSE_*` environment variable and is
shown, with that variable, in the CLI's `--help`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PULSE_", extra="ignore")

    def user_id_key(self) -> str | None:
        """The pseudonymization key: set, or the one `pulse dev` keeps in the state folder, so
        commands run beside a dev stack (e.g. `pulse deadletters replay`) find it too."""
        if self.user_id_secret:
            return self.user_id_secret.get_secret_value()
        kept = self.state_dir / "user_id_secret"
        return kept.read_text().strip() if kept.is_file() else None

    # Connections. Unset: use the embedded services a running `pulse dev` recorded in state_dir.
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers host:port")
    database_url: str | None = Field(None, description="PostgreSQL DSN postgresql://…")
    redis_url: str | None = Field(None, description="Redis URL redis://…")
    state_dir: Path = Field(Path(".pulse"), description="where embedded services keep state")
    plans_dir: Path | None = Field(None, description="tracking plans folder (default: bundled)")

    # Topics.
    app_id: str = Field("pulse", description="Faust app id: consumer group and table prefix")
    ingest_topic: str = Field("pulse.ingest", description="topic services publish events to")
    events_topic: str = Field("pulse.events", description="validated events, batched by user")
    deadletter_topic: str = Field("pulse.deadletters", description="rejected records + reasons")
    user_properties_topic: str = Field(
        "pulse.user_properties", description="user-property updates (identify, $set, "
        "user_properties) from the HTTP gateway, JSON, keyed by app and user")
    alerts_topic: str = Field("alerts.safety", description="safety alerts for on-call")
    derived_topic: str = Field("pulse.derived", description="derived events (streaks)")
    triggers_topic: str = Field("pulse.triggers", description="re-engagement triggers (JSON) "
                                "for the bots, keyed by app and user")
    partitions: int = Field(4, ge=1, description="partitions of the internal topics and tables")

    # Validation.
    max_record_bytes: int = Field(64 * 1024, description="largest accepted ingest record")
    lateness_days: int = Field(7, description="oldest accepted event age unless historical")
    future_tolerance_seconds: int = Field(3600, description="how far ahead a timestamp may be")
    user_id_secret: SecretStr | None = Field(
        None, description="HMAC key that replaces raw user ids with pseudonyms (plans with "
        "privacy.user_id: raw); 16+ characters, stable, from a secret store, never on a "
        "command line")

    # Per-user state.
    dedupe_days: int = Field(8, description="days of event ids kept per user for dedupe")
    history_days: int = Field(128, description="days of activity history kept per user")
    user_state_ttl_days: int = Field(
        365, ge=1, description="a user with no event for this long is forgotten: state, "
        "profile and per-user rows removed, day aggregates kept (seed 004: 12 months)")
    crisis_audit_days: int = Field(
        90, ge=1, description="closed crisis-incident audit rows are kept this long (seed 000)")
    lifecycle_sweep_seconds: float = Field(
        3600.0, description="how often expired users and old audit rows are looked for")

    # Worker.
    metrics_port: int = Field(9464, description="Prometheus /metrics port (0 = any free port)")
    ingest_batch: int = Field(2000, description="most ingest records validated per batch")
    ingest_batch_seconds: float = Field(0.1, description="longest wait to fill an ingest batch")
    fetch_wait_ms: int = Field(
        50, ge=1, description="longest time a consumer's fetch waits at the broker; brokers "
        "that hold every fetch for the whole wait (the embedded one) add it to latency")
    sink_flush_seconds: float = Field(1.0, description="PostgreSQL sink flush interval")
    sink_batch_rows: int = Field(1000, description="PostgreSQL sink rows per flush")
    sink_max_retry_seconds: float = Field(30.0, description="backoff ceiling of sink retries")
    sink_drain_seconds: float = Field(
        10.0, ge=0.0, description="how long a worker that stops, or hands partitions over in "
        "a rebalance, waits for its sinks to write their queued rows (a handover: so that none "
        "lands after the new owner's; the rebalance waits as long)")
    profile_sweep_seconds: float = Field(
        3600.0, description="how often every retention profile is re-evaluated (inactivity)")
    profile_ttl_seconds: int = Field(90 * 86400, description="TTL of profiles in Redis")
    trigger_sweep_seconds: float = Field(
        300.0, description="how often every user's re-engagement triggers are evaluated "
        "(inactivity, streak at risk at 20:00 local, expiry)")
    sweep_share: float = Field(
        0.3, gt=0.0, le=1.0, description="most of the worker's event loop a periodic sweep "
        "(profiles, triggers, lifecycle) takes while it walks every user; events get the rest")
    catch_up_share: float = Field(
        0.5, gt=0.0, le=1.0, description="most of the worker's event loop the catch-up after a "
        "rebuild takes (streak and funnel rows queued again, profiles and triggers evaluated) "
        "while events are applied beside it")
    aggregate_snapshots: bool = Field(
        True, description="keep each partition's aggregates in PostgreSQL when the worker stops "
        "or hands partitions over; the next owner skips the per-user rebuild of a partition "
        "whose changelog contents are unchanged (tables.snapshot)")
    clock_file: Path | None = Field(
        None, description="tests and replays only: a file holding an ISO-8601 instant that "
        "trigger evaluation takes as now instead of the wall clock (re-read when it changes)")
    alertmanager_url: str | None = Field(
        None, description="Alertmanager base URL, e.g. http://127.0.0.1:9093; unset: alerts go "
        "to the alerts topic only")

    # HTTP gateway (`pulse gateway`): the products' analytics SDKs send here.
    gateway_host: str = Field("127.0.0.1", description="gateway listen address (0.0.0.0: all)")
    gateway_port: int = Field(8088, description="gateway listen port (0 = any free port)")
    gateway_keys: str = Field(
        "{}", description='write keys as JSON {"app": ["<sha256 hex of a key>", …]}; '
        "`pulse gateway hash-key KEY` prints a digest")
    gateway_aliases: str = Field(
        "{}", description='event-name aliases as JSON {"app" or "*": {"Sent Name": '
        '"plan_event"}}, applied before snake_case mapping')
    gateway_idempotent: bool = Field(
        False, description="idempotent Kafka producer (needs broker support; Tansu has none)")
    gateway_delivery_timeout_seconds: float = Field(
        10.0, description="longest wait for the broker's acknowledgement before a 503")
    gateway_linger_ms: float = Field(2.0, description="producer linger before sending a batch")
    gateway_rate_limit: float = Field(
        10000.0, description="events per second per write key (0 = unlimited)")
    gateway_rate_burst: float = Field(20000.0, description="events a write key may burst")
    gateway_max_body_bytes: int = Field(
        8 * 1024 * 1024, description="largest request body after decompression")
