"""Fixtures of the fault-injection tests: their own embedded services (a test stops PostgreSQL
or freezes the broker, which must not disturb the other test suites), and the integration
suite's per-test environment and Alertmanager built on them.

The scenarios that take minutes (repeated kill -9, rebalance, 30 s outages) run only when
`tests/chaos` is named on the command line (`make chaos`); a plain `pytest` (`make test`)
deselects them and keeps the fast ones, so the whole suite stays within its time budget.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.embedded import EmbeddedServices, ServiceAddresses
from tests.integration.conftest import alertmanager, pulse_env  # noqa: F401 - fixtures

SLOW = "chaos_slow"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: a fault-injection scenario (make chaos)")
    config.addinivalue_line("markers", f"{SLOW}: a chaos scenario of minutes; only in make chaos")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    named = any("tests/chaos" in str(arg) for arg in config.args)
    if named:
        return
    slow = [item for item in items if item.get_closest_marker(SLOW)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker(SLOW)]


@pytest.fixture(scope="session")
def embedded() -> Iterator[EmbeddedServices]:
    # Not under pytest's temporary root: as root, PostgreSQL runs as another user that must
    # traverse the path, and every new pytest run (any session on this machine) resets
    # /tmp/pytest-of-root to 0700; a restarted or checkpointing PostgreSQL then fails with
    # "Permission denied" on its own data directory.
    root = Path(tempfile.mkdtemp(prefix="pulse-chaos-"))
    services = EmbeddedServices(root / ".pulse")
    services.start(timeout=120)
    try:
        yield services
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def services(embedded: EmbeddedServices) -> ServiceAddresses:
    return embedded.start()  # already running: the same addresses
