"""Where the broker, PostgreSQL and Redis are: settings first, else the embedded services that a
running `pulse dev` recorded under the state directory."""

from __future__ import annotations

from dataclasses import dataclass

from streams.embedded import read_addresses
from streams.errors import ConfigError
from streams.settings import Settings


@dataclass(frozen=True)
class Connections:
    kafka_bootstrap: str
    database_url: str
    redis_url: str


def resolve(settings: Settings) -> Connections:
    kafka, db, redis = settings.kafka_bootstrap, settings.database_url, settings.redis_url
    if not (kafka and db and redis):
        recorded = read_addresses(settings.state_dir)
        if recorded is not None:
            kafka = kafka or recorded.kafka_bootstrap
            db = db or recorded.database_url
            redis = redis or recorded.redis_url
    missing = [name for name, value in
               (("PULSE_KAFKA_BOOTSTRAP", kafka), ("PULSE_DATABASE_URL", db),
                ("PULSE_REDIS_URL", redis)) if not value]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set and no running `pulse dev` found under "
            f"{settings.state_dir}/: start `pulse dev` (or `make run`) in another terminal, "
            "or set the variables")
    assert kafka and db and redis
    return Connections(kafka, db, redis)
