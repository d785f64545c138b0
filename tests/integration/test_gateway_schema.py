"""schemathesis against a real `pulse gateway` process: for every operation of its own
`/openapi.json`, generated requests (valid and invalid by the schema) never get a 5xx, and
every answer conforms to the document (status codes, content type, body schema, headers)."""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from streams.embedded import ServiceAddresses
from streams.gateway.openapi import document
from tests.integration.gateway_process import GatewayProcess, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]


@pytest.fixture(scope="module")
def gateway(services: ServiceAddresses, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    with running_gateway(services, tmp_path_factory.mktemp("schema"),
                         PULSE_GATEWAY_RATE_LIMIT="0") as gw:
        yield gw


def credentials(path: str, body: Any) -> dict[str, str]:
    """A valid write key in the place each API expects it, so generated requests reach
    validation and delivery instead of stopping at 401."""
    if path.startswith("/v1/"):
        return {"Authorization": "Basic " + base64.b64encode(b"ton-key-1:").decode()}
    if path == "/2/httpapi":
        if isinstance(body, dict):
            body["api_key"] = "cr-key-1"
        return {}
    if path.startswith(("/capture", "/batch", "/e/", "/i/")):
        return {"Authorization": "Bearer ton-key-1"}
    return {"X-Pulse-Key": "op-key-1", "X-Pulse-User-Id": "schema-user"}


def test_gateway_conforms_to_its_openapi(gateway: GatewayProcess) -> None:
    # Driven by hand, not by schemathesis' pytest plugin: its lazy fixture schemas use a
    # private pytest attribute that pytest 9 removed.
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the document's own path when it loads it from a URL.
    assert {op.path for op in operations} == set(document()["paths"]) - {"/openapi.json"}
    failures: dict[str, str] = {}
    statuses: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for operation in operations:
        # The GET operations take no input, so nothing can be generated against their schema.
        modes = [GenerationMode.POSITIVE] + (
            [GenerationMode.NEGATIVE] if operation.method.lower() == "post" else [])
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=30, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                headers = credentials(case.path, case.body)
                response = case.call_and_validate(base_url=gateway.url, headers=headers,
                                                  checks=CHECKS)
                statuses[(case.path, case.meta.generation.mode.value)][response.status_code] += 1

            try:
                run()
            except Exception as err:  # collect every operation's failure, then report them all
                failures[f"{operation.label} ({mode.value})"] = str(err)[:1500]
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
    print(dict(statuses))
    # Generated requests reached every operation, and the ingest APIs accepted some.
    assert {path for path, _ in statuses} == {op.path for op in operations}
    for path in ("/api/rest/front/analytics/events/batch/", "/v1/track", "/capture/",
                 "/2/httpapi"):
        assert statuses[(path, "positive")][200] > 0, (path, statuses[(path, "positive")])
    assert gateway.metric("pulse_gateway_requests_total", status="500") == 0
