"""The embedded broker, PostgreSQL and Redis start, serve real clients and stop cleanly."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.embedded import EmbeddedServices, ServiceAddresses, read_addresses

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def dead(pid: int) -> bool:
    return not alive(pid)


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by init) counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def kafka_round_trip(bootstrap: str) -> tuple[bytes | None, bytes | None]:
    topic = f"embedded-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "delete", "retention.ms": "3600000"},
                )
            ]
        )
        assert all(error == 0 for _topic, error, *_ in response.topic_errors), response
        deadline = time.monotonic() + 10
        while topic not in await admin.list_topics():
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"value-1", key=b"key-1")
        assert sent.offset == 0
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        record = await asyncio.wait_for(consumer.getone(), timeout=15)
    finally:
        await consumer.stop()
    return record.key, record.value


def test_services_serve_clients_and_stop_cleanly(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    services = EmbeddedServices(state_dir)
    addresses = services.start(timeout=90)
    try:
        assert addresses.kafka_bootstrap.startswith("127.0.0.1:")
        assert addresses.database_url.startswith("postgresql://")
        assert addresses.database_url.endswith("/pulse")
        assert addresses.redis_url.startswith("redis://127.0.0.1:")
        assert set(addresses.pids) == {"broker", "postgres", "redis"}
        assert (state_dir / "services.json").is_file()
        for name in addresses.pids:
            assert (state_dir / "logs" / f"{name}.log").is_file()

        assert asyncio.run(kafka_round_trip(addresses.kafka_bootstrap)) == (b"key-1", b"value-1")

        with psycopg.connect(addresses.database_url, connect_timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("select current_database()").fetchone() == ("pulse",)

        client = redis.Redis.from_url(addresses.redis_url, socket_timeout=10)
        try:
            assert client.set("embedded-test", "ok")
            assert client.get("embedded-test") == b"ok"
        finally:
            client.close()

        assert read_addresses(state_dir) == addresses
        assert services.start() == addresses  # a second start() is a no-op
    finally:
        services.stop()

    assert read_addresses(state_dir) is None
    assert not (state_dir / "services.json").exists()
    for name, pid in addresses.pids.items():
        wait_until(functools.partial(dead, pid), 10, f"{name} (pid {pid}) to exit")
    services.stop()  # idempotent


_ORPHANING_PARENT = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    import psycopg
    from streams.embedded import EmbeddedServices

    state_dir = Path(sys.argv[1])
    box = {}
    # Started from a worker thread, the children get no parent-death signal: a SIGKILL of
    # this process leaves them running, as after a crash on a platform without one.
    worker = threading.Thread(target=lambda: box.update(a=EmbeddedServices(state_dir).start()))
    worker.start()
    worker.join()
    with psycopg.connect(box["a"].database_url) as conn:
        conn.execute("create table survives_restart (id int)")
    (state_dir / "parent-ready").touch()
    time.sleep(600)
    """
)


def test_leftovers_of_a_killed_parent_are_stopped_and_data_is_kept(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHANING_PARENT, str(state_dir)],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
    )
    try:
        wait_until(
            lambda: (state_dir / "parent-ready").exists() or parent.poll() is not None,
            90,
            "the first parent to start its services",
        )
        assert parent.poll() is None, "the first parent failed to start its services"
        old: ServiceAddresses | None = read_addresses(state_dir)
        assert old is not None
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    assert all(alive(pid) for pid in old.pids.values()), "leftovers should survive SIGKILL"
    assert read_addresses(state_dir) == old  # still alive, so still readable

    services = EmbeddedServices(state_dir)
    try:
        new = services.start(timeout=90)
        for name, pid in old.pids.items():
            assert not alive(pid), f"leftover {name} (pid {pid}) was not stopped"
        assert "initdb" not in services.startup_seconds  # the data directory was reused
        with psycopg.connect(new.database_url, connect_timeout=10) as conn:
            assert conn.execute("select count(*) from survives_restart").fetchone() == (0,)
    finally:
        services.stop()
    for name, pid in new.pids.items():
        wait_until(functools.partial(dead, pid), 10, f"{name} (pid {pid}) to exit")
