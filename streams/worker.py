"""`pulse worker`: prepare topics and schema, serve /metrics, run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import faust
import orjson
from prometheus_client import start_http_server

from sinks.metrics import Metrics
from sinks.postgres import migrate, sync_group_settings
from streams.app import build_worker
from streams.connections import Connections, resolve
from streams.plan import load_plans
from streams.settings import Settings
from streams.topics import create_topics

log = logging.getLogger(__name__)


def prepare(settings: Settings, connections: Connections) -> None:
    """Idempotent start-up work shared by `pulse dev` and `pulse worker`."""
    migrate(connections.database_url)
    sync_group_settings(connections.database_url, load_plans(directory=settings.plans_dir))
    asyncio.run(create_topics(connections.kafka_bootstrap, settings))


def worker_file(state_dir: Path, pid: int) -> Path:
    return state_dir / "workers" / f"{pid}.json"


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    connections = resolve(settings)
    prepare(settings, connections)
    metrics = Metrics()
    server, _thread = start_http_server(settings.metrics_port, addr="0.0.0.0",
                                        registry=metrics.registry)
    port = server.server_port
    # Tests and `pulse dev` find each worker's /metrics here (PULSE_METRICS_PORT=0 picks any port).
    record = worker_file(settings.state_dir, os.getpid())
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_bytes(orjson.dumps({"pid": os.getpid(), "metrics_port": port}))
    print(f"metrics: http://127.0.0.1:{port}/metrics", flush=True)
    # asyncio.run() above left no current loop; Faust needs one before the app is built.
    asyncio.set_event_loop(asyncio.new_event_loop())
    pipeline = build_worker(settings, connections, metrics)
    try:
        worker = faust.Worker(pipeline.app, loglevel=loglevel, quiet=True,
                              redirect_stdouts=False)
        # Faust's start-up spinner puts the root logger at DEBUG for good, so every debug call
        # in aiokafka built a log record on the hot path (~5% of a worker's CPU, py-spy).
        worker.spinner = None
        worker.execute_from_commandline()
    finally:
        record.unlink(missing_ok=True)
        server.shutdown()
