"""A `pulse gateway` process for the integration tests, on a free loopback port, with its own
topics on the session's embedded broker; and a small HTTP client (urllib, no SDK)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.embedded import ServiceAddresses
from streams.gateway.auth import hash_key
from tests.integration.conftest import REPO, _read_topic, free_port, stop_process, wait_for

# Write keys of the tests: one app each, two for onepercent.
KEYS = {"onepercent": ["op-key-1", "op-key-2"], "ton18": ["ton-key-1"],
        "cryptorebate": ["cr-key-1"]}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class GatewayProcess:
    addresses: ServiceAddresses
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PULSE_GATEWAY_PORT']}"

    def topic(self, kind: str) -> str:
        return self.env[f"PULSE_{kind.upper()}_TOPIC"]

    def start(self, wait_ready: bool = True) -> GatewayProcess:
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "gateway"],
                                     env=self.env, cwd=REPO, stdout=out,
                                     stderr=subprocess.STDOUT)
        wait_for(self._answers, 30, "the gateway to listen")
        if wait_ready:
            wait_for(lambda: self.get("/readyz").status == 200, 60, "the gateway to be ready")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"gateway exited: {self.log.read_text()[-3000:]}")
        try:
            return self.get("/healthz").status == 200
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read())

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, doc: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        body = raw if raw is not None else orjson.dumps(doc)
        return self.request("POST", path, body,
                            {"Content-Type": "application/json", **(headers or {})})

    def read(self, kind: str, expected: int, timeout: float = 30) -> list[Any]:
        """Records of the gateway's `ingest`, `deadletter` or `user_properties` topic."""
        import asyncio

        return asyncio.run(_read_topic(self.addresses.kafka_bootstrap, self.topic(kind),
                                       expected, timeout))

    def ingested(self, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Every event on the ingest topic (records are arrays of events). The gateway answers
        only after the broker acknowledged, so what a 200 covered is already there."""
        events: list[dict[str, Any]] = []
        for record in self.read("ingest", min(expected, 1), timeout):
            doc = orjson.loads(record.value)
            events.extend(doc if isinstance(doc, list) else [doc])
        return events

    def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.get("/metrics").body.decode()):
            for sample in family.samples:
                if sample.name == name and set(labels.items()) <= set(sample.labels.items()):
                    total += sample.value
        return total


def gateway_env(addresses: ServiceAddresses, tmp: Path, **overrides: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    keys = {app: [hash_key(k) for k in keys] for app, keys in KEYS.items()}
    return {
        **os.environ,
        "PULSE_KAFKA_BOOTSTRAP": addresses.kafka_bootstrap,
        "PULSE_STATE_DIR": str(tmp / f"state-{suffix}"),
        "PULSE_INGEST_TOPIC": f"ingest-{suffix}",
        "PULSE_EVENTS_TOPIC": f"events-{suffix}",
        "PULSE_DEADLETTER_TOPIC": f"deadletters-{suffix}",
        "PULSE_USER_PROPERTIES_TOPIC": f"userprops-{suffix}",
        "PULSE_DERIVED_TOPIC": f"derived-{suffix}",
        "PULSE_ALERTS_TOPIC": f"alerts-{suffix}",
        "PULSE_APP_ID": f"pulse-{suffix}",
        "PULSE_PARTITIONS": "2",
        "PULSE_GATEWAY_PORT": str(free_port()),
        "PULSE_GATEWAY_KEYS": orjson.dumps(keys).decode(),
        **overrides,
    }


@contextmanager
def running_gateway(addresses: ServiceAddresses, tmp: Path, wait_ready: bool = True,
                    **overrides: str) -> Iterator[GatewayProcess]:
    env = gateway_env(addresses, tmp, **overrides)
    gateway = GatewayProcess(addresses, tmp / f"gateway-{env['PULSE_GATEWAY_PORT']}.log", env)
    try:
        yield gateway.start(wait_ready)
    finally:
        gateway.stop()
