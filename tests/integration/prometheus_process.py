"""A real Prometheus (Debian's `prometheus` package) for the deploy and dashboard tests, and the
helpers that read Grafana dashboards and run their queries the way Grafana would.

No Docker and no Grafana: a dashboard's PromQL goes to a real server's HTTP API after the
template variables are expanded with test values.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import free_port, stop_process

# Grafana's global macros as it would expand them for a 1 h range.
GRAFANA_MACROS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if path is None:
        pytest.fail(f"`{name}` not found: run `make system-deps` or "
                    "`apt-get install prometheus prometheus-alertmanager`")
    return path


def http_json(url: str, data: Mapping[str, str] | None = None) -> tuple[int, Any]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, data=body, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:  # 400/422 carry Prometheus' JSON error
        return error.code, json.loads(error.read() or b"{}")


@contextmanager
def running_prometheus(tmp: Path, config: dict[str, Any]) -> Iterator[str]:
    """Start Prometheus with `config` on a free loopback port; yield its base URL once ready."""
    binary = tool("prometheus")
    config_file = tmp / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config_file}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready after 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        stop_process(proc, timeout=15)


def instant_query(prometheus: str, query: str) -> tuple[int, Any]:
    return http_json(f"{prometheus}/api/v1/query",
                     {"query": query, "time": f"{time.time():.3f}"})


# ---- Grafana dashboards -------------------------------------------------------------------

def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every PromQL panel target and annotation query."""
    found = [(f"panel {p['title']!r} target {t.get('refId')}", t["expr"])
             for p in panels(board["panels"]) for t in p.get("targets", []) if "expr" in t]
    found += [(f"annotation {a['name']!r}", a["expr"])
              for a in board["annotations"]["list"] if "expr" in a]
    return found


def render(expr: str, values: Mapping[str, str]) -> str:
    """Expand $var, ${var} and ${var:format} as Grafana would for the given values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"unknown template variable ${name} in {expr!r}"
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)
