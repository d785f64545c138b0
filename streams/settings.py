"""The one settings object. Every option can be set by a `PULSE_*` environment variable and is
shown, with that variable, in the CLI's `--help`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PULSE_", extra="ignore")

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
    alerts_topic: str = Field("alerts.safety", description="safety alerts for on-call")
    partitions: int = Field(4, ge=1, description="partitions of the internal topics and tables")

    # Validation.
    max_record_bytes: int = Field(64 * 1024, description="largest accepted ingest record")
    lateness_days: int = Field(7, description="oldest accepted event age unless historical")
    future_tolerance_seconds: int = Field(3600, description="how far ahead a timestamp may be")

    # Per-user state.
    dedupe_days: int = Field(8, description="days of event ids kept per user for dedupe")
    history_days: int = Field(128, description="days of activity history kept per user")

    # Worker.
    metrics_port: int = Field(9464, description="Prometheus /metrics port (0 = any free port)")
    ingest_batch: int = Field(2000, description="most ingest records validated per batch")
    ingest_batch_seconds: float = Field(0.1, description="longest wait to fill an ingest batch")
    sink_flush_seconds: float = Field(1.0, description="PostgreSQL sink flush interval")
    sink_batch_rows: int = Field(1000, description="PostgreSQL sink rows per flush")
    sink_max_retry_seconds: float = Field(30.0, description="backoff ceiling of sink retries")
    alertmanager_url: str | None = Field(
        None, description="Alertmanager base URL, e.g. http://127.0.0.1:9093; unset: alerts go "
        "to the alerts topic only")

