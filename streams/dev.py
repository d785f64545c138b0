"""`pulse dev`: embedded services, a worker and the demo producer, stopped together on Ctrl-C."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from streams.connections import Connections
from streams.embedded import EmbeddedServices
from streams.gateway.auth import hash_key
from streams.plan import load_plans
from streams.settings import Settings
from streams.worker import prepare


def _spawn(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else None  # noqa: SIM115 - handed to the child, closed by GC
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env,
                            stdout=out, stderr=subprocess.STDOUT if out else None)


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def dev_user_id_secret(state_dir: Path) -> str:
    """A random pseudonymization key for this machine's dev state, kept so pseudonyms stay
    stable across restarts (a deployment sets PULSE_USER_ID_SECRET from its secret store)."""
    path = state_dir / "user_id_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def run_dev(settings: Settings, demo: bool = True, backfill_days: int = 30,
            demo_users: int = 200) -> None:
    services = EmbeddedServices(settings.state_dir)
    addresses = services.start()
    children: list[subprocess.Popen] = []
    try:
        connections = Connections(addresses.kafka_bootstrap, addresses.database_url,
                                  addresses.redis_url)
        prepare(settings, connections)
        env = {**os.environ,
               "PULSE_KAFKA_BOOTSTRAP": addresses.kafka_bootstrap,
               "PULSE_DATABASE_URL": addresses.database_url,
               "PULSE_REDIS_URL": addresses.redis_url,
               "PULSE_STATE_DIR": str(settings.state_dir)}
        if not os.environ.get("PULSE_GATEWAY_KEYS"):
            # Dev write keys `dev-<app>` (real deployments configure their own digests).
            env["PULSE_GATEWAY_KEYS"] = orjson.dumps(
                {app: [hash_key(f"dev-{app}")] for app in load_plans(
                    directory=settings.plans_dir)}).decode()
        if not settings.user_id_secret:
            env["PULSE_USER_ID_SECRET"] = dev_user_id_secret(settings.state_dir)
        logs = settings.state_dir / "logs"
        print(f"broker:     {addresses.kafka_bootstrap}")
        print(f"postgres:   {addresses.database_url}")
        print(f"redis:      {addresses.redis_url}")
        print(f"metrics:    http://127.0.0.1:{settings.metrics_port}/metrics")
        print(f"worker log: {logs / 'worker.log'}")
        children.append(_spawn(["worker"], env, logs / "worker.log"))
        children.append(_spawn(["gateway"], env, logs / "gateway.log"))
        print(f"gateway:    http://{settings.gateway_host}:{settings.gateway_port} "
              "(write keys dev-<app>, e.g. dev-onepercent; log: gateway.log)")
        if demo:
            print(f"demo:       {backfill_days} days of history for {demo_users} users per app, "
                  "then live traffic (log: demo.log)")
            children.append(_spawn(["demo", "--users", str(demo_users),
                                    "--backfill-days", str(backfill_days)], env,
                                   logs / "demo.log"))
        print("report:     .venv/bin/pulse report --app vkusvill_bot --week")
        print("Ctrl-C stops everything.", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [c for c in children if c.poll() not in (None, 0)]
        if failed:
            print(f"a child exited with {failed[0].returncode}; see {logs}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        for child in reversed(children):
            _stop(child)
        services.stop()
