"""The Alertmanager sink against a REAL Alertmanager (Debian's `prometheus-alertmanager`).

Each test starts its own Alertmanager on a free loopback port (clustering off, state in a temp
dir), routing every alert to a webhook receiver this test runs. Everything is polled with
deadlines, never slept on blindly.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sinks.alertmanager import AlertmanagerSink
from sinks.metrics import Metrics
from tables.crisis import SafetyAlert

BINARY = Path("/usr/bin/prometheus-alertmanager")
DEADLINE = 5.0  # seconds for an alert to become visible
pytestmark = [pytest.mark.timeout(120)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[Any]], what: str,
                     within: float = DEADLINE, interval: float = 0.02) -> Any:
    """Poll the async `check` until it returns something truthy; fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)


class Webhook:
    """A webhook receiver: records every notification Alertmanager posts."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _hook(self, request: web.Request) -> web.Response:
        self.notifications.append(await request.json())
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def alerts(self, incident: str, status: str) -> list[dict[str, Any]]:
        return [a for n in self.notifications for a in n["alerts"]
                if a["labels"].get("incident") == incident and a["status"] == status]


CONFIG = """\
route:
  receiver: hook
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1m
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


class Alertmanager:
    """One `prometheus-alertmanager` process on 127.0.0.1:`port`."""

    def __init__(self, workdir: Path, port: int, webhook_url: str,
                 http: aiohttp.ClientSession) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.webhook_url = webhook_url
        self.http = http
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "alertmanager.log"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def launch(self) -> None:
        """Start the process (not waiting for it to be ready)."""
        if not BINARY.exists():
            pytest.fail(f"{BINARY} is missing: these tests need a real Alertmanager; install it "
                        "with `apt-get install prometheus-alertmanager`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        config.write_text(CONFIG.format(url=self.webhook_url))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BINARY), f"--config.file={config}",
                 f"--storage.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--cluster.listen-address="],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

    async def start(self) -> Alertmanager:
        self.launch()

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                async with self.http.get(f"{self.url}/-/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, f"alertmanager ready on port {self.port}", within=15)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    async def active(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the alerts Alertmanager holds as not resolved."""
        async with self.http.get(f"{self.url}/api/v2/alerts") as resp:
            assert resp.status == 200, await resp.text()
            alerts: list[dict[str, Any]] = await resp.json()
            return alerts

    async def find(self, incident: str) -> list[dict[str, Any]]:
        return [a for a in await self.active() if a["labels"].get("incident") == incident]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield session


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    await hook.start()
    try:
        yield hook
    finally:
        await hook.stop()


@pytest.fixture
def alertmanagers(tmp_path: Path, webhook: Webhook, http: aiohttp.ClientSession,
                  ) -> Iterator[Callable[..., Alertmanager]]:
    """Makes Alertmanager processes (not started); stops every one at the end."""
    made: list[Alertmanager] = []

    def make(port: int | None = None) -> Alertmanager:
        am = Alertmanager(tmp_path / f"am{len(made)}", port or free_port(), webhook.url, http)
        made.append(am)
        return am

    try:
        yield make
    finally:
        for am in made:
            am.stop()


@asynccontextmanager
async def running(sink: AlertmanagerSink) -> AsyncIterator[AlertmanagerSink]:
    task = asyncio.create_task(sink.run())
    try:
        yield sink
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sink.close()


def alert(incident: str, status: str = "firing", kind: str = "breach", level: str = "high",
          app: str = "emotional_balance") -> SafetyAlert:
    now = time.time()
    detected = now - 75
    return SafetyAlert(
        incident_id=incident, app=app, level=level, kind=kind,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        detected_at=detected, deadline=detected + 60,
        starts_at=detected + 60 if kind == "breach" else detected,
        ends_at=now if status == "resolved" else None,
        response_seconds=75.0 if status == "resolved" else None,
        summary=f"{app}: not escalated within SLA (incident {incident})")


def sent(metrics: Metrics, kind: str, status: str) -> float:
    return metrics.registry.get_sample_value(
        "pulse_alerts_sent_total",
        {"receiver": "alertmanager", "kind": kind, "status": status}) or 0.0


def errors(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value(
        "pulse_sink_errors_total", {"sink": "alertmanager"}) or 0.0


async def test_firing_alert_reaches_alertmanager_and_webhook(
        alertmanagers: Callable[..., Alertmanager], webhook: Webhook) -> None:
    am = await alertmanagers().start()
    metrics = Metrics()
    # flush_seconds far above the deadline: only push()'s wake-up can deliver in time.
    sink = AlertmanagerSink(am.url, metrics, flush_seconds=30.0)
    firing = alert("0a1b2c3d4e5f60718293")
    async with running(sink):
        await asyncio.sleep(0)  # the loop is now waiting on its timer
        pushed = time.monotonic()
        sink.push(firing)
        [got] = await eventually(lambda: am.find(firing.incident_id), "the alert in Alertmanager",
                                 interval=0.005)
        latency = time.monotonic() - pushed
        print(f"\npush → visible in Alertmanager: {latency * 1000:.1f} ms")
        assert latency < 2.0
        assert got["labels"] == {
            "alertname": "CrisisSlaBreach", "app": "emotional_balance", "level": "high",
            "severity": "critical", "incident": firing.incident_id}
        assert got["annotations"]["runbook"] == "docs/runbook.md#crisis"
        assert got["annotations"]["incident_id"] == firing.incident_id
        assert got["status"]["state"] == "active"

        async def notified() -> list[dict[str, Any]]:
            return webhook.alerts(firing.incident_id, "firing")

        [hooked] = (await eventually(notified, "the webhook notification"))[:1]
        assert hooked["labels"] == got["labels"]
        assert sent(metrics, "breach", "firing") >= 1
        assert errors(metrics) == 0
        assert not sink.pending


async def test_resolved_alert_leaves_active_alerts(
        alertmanagers: Callable[..., Alertmanager], webhook: Webhook) -> None:
    am = await alertmanagers().start()
    metrics = Metrics()
    sink = AlertmanagerSink(am.url, metrics)
    incident = "1b2c3d4e5f6071829304"
    async with running(sink):
        sink.push(alert(incident, kind="severe", level="critical"))
        [got] = await eventually(lambda: am.find(incident), "the firing alert")
        assert got["labels"]["alertname"] == "CrisisSevereDetection"
        assert got["labels"]["severity"] == "critical"
        assert sink.firing

        sink.push(alert(incident, status="resolved", kind="severe", level="critical"))
        assert not sink.firing

        async def gone() -> bool:
            return not await am.find(incident)

        await eventually(gone, "the alert to leave the active alerts")

        async def resolved() -> list[dict[str, Any]]:
            return webhook.alerts(incident, "resolved")

        await eventually(resolved, "the resolved webhook notification")
        assert sent(metrics, "severe", "resolved") == 1


async def test_alertmanager_down_then_up_loses_nothing(
        alertmanagers: Callable[..., Alertmanager], webhook: Webhook) -> None:
    am = alertmanagers()  # a port with nothing listening yet
    metrics = Metrics()
    sink = AlertmanagerSink(am.url, metrics, max_retry_seconds=1.0)
    firing = alert("2c3d4e5f607182930415")
    async with running(sink):
        sink.push(firing)

        async def failing() -> bool:
            return errors(metrics) > 0 and firing.key in sink.pending

        await eventually(failing, "a failed write with the alert still pending")
        assert sink.last_error is not None
        assert sent(metrics, "breach", "firing") == 0

        await am.start()
        [got] = await eventually(lambda: am.find(firing.incident_id),
                                 "the alert after Alertmanager came up")
        assert got["labels"]["incident"] == firing.incident_id
        assert sent(metrics, "breach", "firing") >= 1
        assert firing.key not in sink.pending
        assert sink.last_error is None


async def test_concurrent_incidents_stay_distinct(
        alertmanagers: Callable[..., Alertmanager], webhook: Webhook) -> None:
    am = await alertmanagers().start()
    sink = AlertmanagerSink(am.url, Metrics())
    first, second = alert("3d4e5f60718293041526"), alert("4e5f6071829304152637")
    async with running(sink):
        sink.push(first)
        sink.push(second)

        async def both() -> list[dict[str, Any]]:
            found = await am.find(first.incident_id) + await am.find(second.incident_id)
            return found if len(found) == 2 else []

        found = await eventually(both, "two distinct alerts")
        assert len({a["fingerprint"] for a in found}) == 2
        assert {a["labels"]["app"] for a in found} == {"emotional_balance"}
        assert {a["labels"]["level"] for a in found} == {"high"}

        # Resolving one leaves the other firing.
        sink.push(alert(first.incident_id, status="resolved"))

        async def first_gone() -> bool:
            return not await am.find(first.incident_id)

        await eventually(first_gone, "the first incident resolved")
        assert len(await am.find(second.incident_id)) == 1


async def test_firing_alert_is_resent_while_firing(
        alertmanagers: Callable[..., Alertmanager], webhook: Webhook) -> None:
    am = await alertmanagers().start()
    metrics = Metrics()
    sink = AlertmanagerSink(am.url, metrics, resend_seconds=0.5)
    firing = alert("5f607182930415263748")
    async with running(sink):
        sink.push(firing)
        [before] = await eventually(lambda: am.find(firing.incident_id), "the alert")

        async def extended() -> bool:
            [now] = await am.find(firing.incident_id)
            return sent(metrics, "breach", "firing") >= 3 and now["endsAt"] > before["endsAt"]

        await eventually(extended, "re-sends pushing endsAt forward")


class OneBadPayloadSink(AlertmanagerSink):
    """Posts one alert with an annotation Alertmanager refuses (not a string), as a bug in a
    future payload field would."""

    bad_incident = ""

    async def _post(self, alerts: list[SafetyAlert]) -> tuple[int, str]:
        if any(a.incident_id == self.bad_incident for a in alerts):
            import orjson

            now = time.time()
            payload = [self.to_payload(a, now) for a in alerts]
            for item in payload:
                if item["labels"]["incident"] == self.bad_incident:
                    item["annotations"]["summary"] = 42
            async with self._client().post(self.endpoint, data=orjson.dumps(payload),
                                           headers={"Content-Type": "application/json"}) as r:
                return r.status, await r.text()
        return await super()._post(alerts)


async def test_an_invalid_alert_does_not_block_the_others(
        alertmanagers: Callable[..., Alertmanager], webhook: Webhook) -> None:
    am = await alertmanagers().start()
    metrics = Metrics()
    sink = OneBadPayloadSink(am.url, metrics)
    sink.bad_incident = "5f60718293041526374a"
    good = alert("60718293041526374a5b")
    async with running(sink):
        sink.push(alert(sink.bad_incident))
        sink.push(good)

        async def delivered() -> list[dict[str, Any]]:
            return await am.find(good.incident_id)

        await eventually(delivered, "the valid alert despite the invalid one")
        assert await am.find(sink.bad_incident) == []
        assert metrics.registry.get_sample_value(
            "pulse_alerts_rejected_total", {"receiver": "alertmanager"}) == 1
        assert sink.bad_incident + ":breach" not in sink.firing
