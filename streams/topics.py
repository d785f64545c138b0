"""Pulse's topics, created explicitly with their configs.

The embedded broker (Tansu) reports topic configs only when they were set at creation and has
no compaction, and Faust would otherwise auto-create topics with broker defaults; so every
topic is declared here and created up front, idempotently, on Kafka and Tansu alike.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]
    purpose: str


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


def replayed_topic(deadletter_topic: str) -> str:
    """The topic of `pulse deadletters replay`'s markers for a dead-letter topic."""
    return f"{deadletter_topic}.replayed"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.partitions
    return [
        TopicSpec(settings.ingest_topic, n,
                  {"retention.ms": str(WEEK_MS), "cleanup.policy": "delete"},
                  "events as published by services (JSON; one event or an array per record)"),
        TopicSpec(settings.events_topic, n,
                  {"retention.ms": str(WEEK_MS), "cleanup.policy": "delete"},
                  "validated events, msgpack batches, partitioned by (app, user)"),
        TopicSpec(settings.deadletter_topic, n,
                  {"retention.ms": str(4 * WEEK_MS), "cleanup.policy": "delete"},
                  "rejected records: original bytes, reasons and source in headers"),
        TopicSpec(settings.user_properties_topic, n,
                  {"retention.ms": str(4 * WEEK_MS), "cleanup.policy": "delete"},
                  "user-property updates from the HTTP gateway (JSON), keyed by (app, user)"),
        TopicSpec(settings.alerts_topic, 1,
                  {"retention.ms": str(4 * WEEK_MS), "cleanup.policy": "delete"},
                  "safety alerts (JSON), firing and resolved, keyed by incident id"),
        TopicSpec(settings.derived_topic, n,
                  {"retention.ms": str(4 * WEEK_MS), "cleanup.policy": "delete"},
                  "derived events (JSON envelopes: streak_updated, streak_broken, …)"),
        TopicSpec(replayed_topic(settings.deadletter_topic), n,
                  {"retention.ms": str(4 * WEEK_MS), "cleanup.policy": "delete"},
                  "replay markers of `pulse deadletters replay`, keyed partition:offset of the "
                  "dead letter (kept as long as the dead letters)"),
        TopicSpec(changelog_topic(settings, "users"), n,
                  {"cleanup.policy": "compact", "retention.ms": "-1"},
                  "per-user state changelog (Faust table `users`)"),
    ]


async def create_topics(bootstrap: str, settings: Settings, wait: float = 30.0) -> list[str]:
    """Create every missing topic; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(wait * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        created: list[str] = []
        for spec in topic_specs(settings):
            if spec.name in existing:
                continue
            try:
                await admin.create_topics([NewTopic(
                    spec.name, num_partitions=spec.partitions, replication_factor=1,
                    topic_configs=spec.configs)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another worker created it between list and create
        # Metadata of new topics can take a moment to show on every broker connection.
        deadline = asyncio.get_running_loop().time() + wait
        while created and not set(created) <= set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        return created
    finally:
        await admin.close()
