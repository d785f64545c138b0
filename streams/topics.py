"""Pulse's topics, created explicitly with their configs.

The embedded broker (Tansu) reports topic configs only when they were set at creation and has
no compaction, and Faust would otherwise auto-create topics with broker defaults; so every
topic is declared here and created up front, idempotently, on Kafka and Tansu alike.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

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
        TopicSpec(settings.triggers_topic, n,
                  {"retention.ms": str(4 * WEEK_MS), "cleanup.policy": "delete"},
                  "re-engagement triggers (JSON) for the bots, keyed by (app, user)"),
        TopicSpec(replayed_topic(settings.deadletter_topic), n,
                  {"retention.ms": str(4 * WEEK_MS), "cleanup.policy": "delete"},
                  "replay markers of `pulse deadletters replay`, keyed partition:offset of the "
                  "dead letter (kept as long as the dead letters)"),
        TopicSpec(changelog_topic(settings, "users"), n,
                  {"cleanup.policy": "compact", "retention.ms": "-1"},
                  "per-user state changelog (Faust table `users`)"),
        TopicSpec(changelog_topic(settings, "residuals"), n,
                  {"cleanup.policy": "compact", "retention.ms": "-1"},
                  "forgotten users' anonymous share of the day aggregates (Faust table "
                  "`residuals`)"),
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


# ---- `pulse topics describe`: read every topic back from the broker -------------------------

# Configs shown besides those Pulse sets: they decide how long and how safely data is kept.
SHOWN_CONFIGS = ("cleanup.policy", "retention.ms", "retention.bytes", "min.insync.replicas")
_UNKNOWN_TOPIC = 3  # Kafka error code UNKNOWN_TOPIC_OR_PARTITION


@dataclass(frozen=True)
class TopicState:
    """One Pulse topic as the broker reports it, next to what `topics create` asks for."""

    spec: TopicSpec
    exists: bool
    partitions: int | None
    replication_factor: int | None
    configs: dict[str, str]  # only what the broker reported (SHOWN_CONFIGS and spec keys)
    configs_note: str | None  # why configs are missing, when the broker did not say

    def problems(self) -> list[str]:
        """Differences from the spec; a config the broker does not report is not a problem
        (Tansu reports only configs set at creation, and has no compaction)."""
        if not self.exists:
            return ["missing: run `pulse topics create`"]
        found = []
        if self.partitions != self.spec.partitions:
            found.append(f"partitions {self.partitions}, expected {self.spec.partitions}")
        for key, wanted in self.spec.configs.items():
            got = self.configs.get(key)
            if got is not None and got != wanted:
                found.append(f"{key} {got}, expected {wanted}")
        return found

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.spec.name, "purpose": self.spec.purpose, "exists": self.exists,
            "partitions": self.partitions, "replication_factor": self.replication_factor,
            "configs": self.configs, "configs_note": self.configs_note,
            "expected": {"partitions": self.spec.partitions, "configs": self.spec.configs},
            "problems": self.problems(),
        }


def human_ms(value: str | None) -> str:
    """retention.ms as people read it: 604800000 → 7d, -1 → forever."""
    if value is None:
        return "not reported"
    try:
        ms = int(value)
    except ValueError:
        return value
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _config_entries(resource: dict[str, Any]) -> dict[str, str]:
    out = {}
    for entry in resource.get("config_entries", []):
        # aiokafka's DescribeConfigs schema names the field `config_names` (one name each).
        name = entry.get("config_names", entry.get("config_name"))
        if name is not None and entry.get("config_value") is not None:
            out[str(name)] = str(entry["config_value"])
    return out


async def describe_topics(bootstrap: str, settings: Settings,
                          wait: float = 30.0) -> list[TopicState]:
    """Partitions (Metadata) and configs (DescribeConfigs) of every Pulse topic."""
    specs = topic_specs(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(wait * 1000))
    await admin.start()
    try:
        # Every topic, not the names: a Metadata request naming a missing topic would create
        # it with broker defaults where auto-creation is on (aiokafka asks for it).
        metadata = {t["topic"]: t for t in await admin.describe_topics()}
        existing = [s.name for s in specs
                    if s.name in metadata and metadata[s.name]["error_code"] != _UNKNOWN_TOPIC]
        configs: dict[str, dict[str, str]] = {}
        notes: dict[str, str] = {}
        if existing:
            try:
                # All configs (no key filter): Tansu drops the connection on a filtered request.
                responses = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name) for name in existing])
                for response in responses:
                    for resource in response.to_object()["resources"]:
                        name = resource["resource_name"]
                        if resource["error_code"]:
                            notes[name] = (f"DescribeConfigs error {resource['error_code']}: "
                                           f"{resource.get('error_message')}")
                        else:
                            configs[name] = _config_entries(resource)
            except KafkaError as err:
                for name in existing:
                    notes[name] = f"the broker did not answer DescribeConfigs ({err})"
    finally:
        await admin.close()
    states = []
    for spec in specs:
        topic = metadata.get(spec.name)
        exists = spec.name in existing
        partitions = topic["partitions"] if exists and topic else []
        wanted = set(SHOWN_CONFIGS) | set(spec.configs)
        reported = {k: v for k, v in configs.get(spec.name, {}).items() if k in wanted}
        states.append(TopicState(
            spec=spec, exists=exists,
            partitions=len(partitions) if exists else None,
            replication_factor=(max((len(p["replicas"]) for p in partitions), default=0)
                                if exists else None),
            configs=dict(sorted(reported.items())),
            configs_note=notes.get(spec.name)))
    return states
