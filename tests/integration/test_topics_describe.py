"""`pulse topics describe` reads Pulse's topics back from the real (embedded) broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.conftest import REPO, PulseEnv

WEEK_MS = 7 * 24 * 3600 * 1000


def describe(env: PulseEnv, *args: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "streams.cli", "topics", "describe", *args],
                            env={**env.env, "COLUMNS": "200"}, cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result.returncode, result.stdout


def by_name(output: str) -> dict[str, dict[str, Any]]:
    return {topic["name"]: topic for topic in orjson.loads(output)}


def own_topics(env: PulseEnv) -> PulseEnv:
    # conftest leaves the user-properties topic shared; this test needs all of its own.
    env.env["PULSE_USER_PROPERTIES_TOPIC"] = f"user-properties-{env.suffix}"
    return env


def test_describe_shows_every_topic_as_created(pulse_env: PulseEnv) -> None:
    env = own_topics(pulse_env)
    status, output = describe(env, "--format", "json")
    before = by_name(output)
    assert status == 1
    assert len(before) == 10
    assert all(not t["exists"] and t["partitions"] is None for t in before.values())
    assert all(t["problems"] == ["missing: run `pulse topics create`"] for t in before.values())

    env.cli("topics", "create")
    status, output = describe(env, "--format", "json")
    topics = by_name(output)
    assert status == 0, output
    suffix = env.suffix
    ingest = topics[f"ingest-{suffix}"]
    assert (ingest["exists"], ingest["partitions"], ingest["replication_factor"]) == (True, 4, 1)
    assert ingest["configs"] == {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)}
    assert topics[f"deadletters-{suffix}"]["configs"]["retention.ms"] == str(4 * WEEK_MS)
    assert topics[f"alerts-{suffix}"]["partitions"] == 1
    changelog = topics[f"pulse-{suffix}-users-changelog"]
    assert changelog["configs"] == {"cleanup.policy": "compact", "retention.ms": "-1"}
    assert changelog["expected"]["configs"] == changelog["configs"]
    assert all(t["problems"] == [] for t in topics.values())

    status, table = describe(env)
    assert status == 0
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in table.splitlines() if line.startswith("│")}
    assert rows[f"ingest-{suffix}"] == ["4", "1", "7d", "delete", "ok"]
    assert rows[f"deadletters-{suffix}"] == ["4", "1", "28d", "delete", "ok"]
    assert rows[f"alerts-{suffix}"] == ["1", "1", "28d", "delete", "ok"]
    assert rows[f"pulse-{suffix}-users-changelog"] == ["4", "1", "forever", "compact", "ok"]


def test_describe_reports_a_topic_created_differently(pulse_env: PulseEnv) -> None:
    env = own_topics(pulse_env)
    derived = f"derived-{env.suffix}"

    async def create_wrong() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=env.addresses.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(derived, num_partitions=2, replication_factor=1,
                                                topic_configs={"retention.ms": "60000"})])
        finally:
            await admin.close()

    asyncio.run(create_wrong())
    env.cli("topics", "create")  # idempotent: leaves the existing topic as it is
    status, output = describe(env, "--format", "json")
    topics = by_name(output)
    assert status == 1
    assert topics[derived]["partitions"] == 2
    assert topics[derived]["configs"] == {"retention.ms": "60000"}
    assert topics[derived]["problems"] == ["partitions 2, expected 4",
                                           f"retention.ms 60000, expected {4 * WEEK_MS}"]
    assert [name for name, t in topics.items() if t["problems"]] == [derived]

    status, table = describe(env)
    assert status == 1
    row = next(line for line in table.splitlines() if f" {derived} " in line)
    assert "1m" in row and "not reported" in row and "partitions 2, expected 4" in row
    assert f"does not report every config of {derived}" in " ".join(table.split())
