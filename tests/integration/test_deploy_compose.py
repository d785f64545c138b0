"""docker-compose.yml and every file it points at, checked without a Docker engine.

Debian's docker-compose 1.29 parses, interpolates and validates the compose file (`config`);
the tests assert on its resolved output. Prometheus and Alertmanager configs are checked with
promtool/amtool in test_deploy_safety.py; here: what ties them to the compose services, the
Grafana provisioning files, the Dockerfile and .env.example. `make system-deps` installs the
tools.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy_checks import REPO, cli_command_exists, gateway_get_paths, settings_env_names

pytestmark = pytest.mark.timeout(120)

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
PROVISIONING = REPO / "deploy/grafana/provisioning"
DASHBOARDS = REPO / "deploy/grafana/dashboards"
PULSE_SERVICES = ("topic-init", "worker", "gateway")
LONG_RUNNING = ("kafka", "postgres", "redis", "worker", "gateway", "prometheus", "alertmanager",
                "grafana")


def docker_compose(*args: str) -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("`docker-compose` not found: run `make system-deps` "
                    "(apt-get install docker-compose)")
    # Only the variables given here: a developer's own POSTGRES_PASSWORD etc. must not leak in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    result = subprocess.run([binary, "-f", str(COMPOSE), *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"docker-compose {' '.join(args)}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The resolved compose file with every variable at its default (an empty .env file)."""
    empty = tmp_path_factory.mktemp("compose") / "empty.env"
    empty.write_text("")
    return dict(yaml.safe_load(docker_compose("--env-file", str(empty), "config")))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of each volume entry as `docker-compose config` prints them."""
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            yield entry["source"], entry["target"]
        else:
            source, target = entry.split(":")[:2]
            yield source, target


def bind_target(service: dict[str, Any], repo_path: str) -> str:
    """Where the repository path `repo_path` is mounted in the container."""
    wanted = (REPO / repo_path).resolve()
    found = [target for source, target in mounts(service)
             if source.startswith("/") and Path(source).resolve() == wanted]
    assert len(found) == 1, f"{repo_path} mounted {len(found)} times: {service.get('volumes')}"
    return found[0]


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


def health_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ---- compose services ---------------------------------------------------------------------

def test_compose_has_every_service_and_named_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(LONG_RUNNING) | {"topic-init"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    declared = set(compose["volumes"])
    named = {source for service in services.values() for source, _ in mounts(service)
             if not source.startswith("/")}
    assert named == declared, "named volumes used and declared differ"
    for name in ("kafka-data", "postgres-data", "prometheus-data", "grafana-data"):
        assert name in declared


def test_every_bind_mount_exists_in_the_repo(services: dict[str, Any]) -> None:
    binds = [(name, source) for name, service in services.items()
             for source, _ in mounts(service) if source.startswith("/")]
    assert len(binds) >= 5
    for name, source in binds:
        path = Path(source)
        assert path.is_relative_to(REPO), f"{name} mounts {source} from outside the repo"
        assert path.exists(), f"{name} mounts {source}, which does not exist"


def test_every_long_running_service_has_a_health_check(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name}: no health check"
    assert services["topic-init"]["restart"] == "no"


def test_worker_scales_and_is_checked_on_its_metrics_port(services: dict[str, Any]) -> None:
    worker = services["worker"]
    # `--scale worker=3` fails with a fixed name or host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    port = int(worker["environment"]["PULSE_METRICS_PORT"])
    assert [str(port)] == worker["expose"]
    assert f"127.0.0.1:{port}/metrics" in health_command(worker)
    assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    for dependency in ("postgres", "redis"):
        assert worker["depends_on"][dependency]["condition"] == "service_healthy"


def test_gateway_listens_on_all_addresses_and_is_checked_on_a_real_path(
        services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    env = gateway["environment"]
    assert env["PULSE_GATEWAY_HOST"] == "0.0.0.0"
    port = int(env["PULSE_GATEWAY_PORT"])
    assert [p["target"] for p in gateway["ports"]] == [port]
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", health_command(gateway))
    assert match, health_command(gateway)
    assert int(match.group(1)) == port
    served = gateway_get_paths()
    assert {"/healthz", "/readyz", "/metrics"} <= served
    assert match.group(2) in served
    # Keys come from the environment, unset by default (the gateway then refuses every request).
    assert env["PULSE_GATEWAY_KEYS"] == ""


def test_pulse_services_run_real_commands_with_real_settings(services: dict[str, Any]) -> None:
    known = settings_env_names()
    commands = {}
    for name in PULSE_SERVICES:
        service = services[name]
        assert service["build"]["context"] == str(REPO)
        commands[name] = service["command"]
        assert cli_command_exists(service["command"]), f"{name}: no `pulse {service['command']}`"
        unknown = {k for k in service["environment"] if k.startswith("PULSE_")} - known
        assert not unknown, f"{name} sets variables Settings does not read: {unknown}"
        host, port = host_port(service["environment"]["PULSE_KAFKA_BOOTSTRAP"])
        assert (host, port) == ("kafka", 9092)
    assert commands["topic-init"] == ["topics", "create"]
    assert commands["worker"][0] == "worker"
    assert commands["gateway"] == ["gateway"]
    env = services["worker"]["environment"]
    database = urlsplit(env["PULSE_DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert (database.hostname, database.username, database.password, database.path) == (
        "postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"],
        "/" + postgres["POSTGRES_DB"])
    assert urlsplit(env["PULSE_REDIS_URL"]).hostname == "redis"
    assert host_port(env["PULSE_ALERTMANAGER_URL"]) == ("alertmanager", 9093)


def test_dockerfile_copies_every_package_and_runs_pulse() -> None:
    lines = [line.split() for line in (REPO / "Dockerfile").read_text().splitlines()
             if line and not line.startswith("#")]
    copied = {source for words in lines if words[0] == "COPY" for source in words[1:-1]}
    for source in copied:
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    pyproject = (REPO / "pyproject.toml").read_text()
    listed = re.search(r"^packages = (\[.*\])$", pyproject, re.M)
    assert listed, "pyproject.toml: no [tool.setuptools] packages list"
    packages = json.loads(listed.group(1))
    assert {p.split(".")[0] for p in packages} <= copied
    assert "deploy/sql" in copied  # migrations are read from the source tree
    entrypoint = next(words for words in lines if words[0] == "ENTRYPOINT")
    assert " ".join(entrypoint[1:]) == '["pulse"]'
    workdirs = [words[1] for words in lines if words[0] == "WORKDIR"]
    state = next(w for words in lines for w in words if w.startswith("PULSE_STATE_DIR="))
    # Faust writes its data directory into the working directory: it must be the state dir
    # the unprivileged user owns, not the root-owned source tree.
    assert workdirs[-1] == state.split("=", 1)[1] != "/app"


# ---- Prometheus and Alertmanager as the compose file runs them ----------------------------

def test_prometheus_scrapes_every_worker_replica_and_the_gateway(
        services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    config_target = bind_target(prometheus, "deploy/prometheus/prometheus.yml")
    assert f"--config.file={config_target}" in prometheus["command"]
    rules_target = bind_target(prometheus, "deploy/prometheus/rules")
    assert Path(config_target).parent / "rules" == Path(rules_target)
    config = load(REPO / "deploy/prometheus/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    expected = {"pulse-worker": ("worker", int(
                    services["worker"]["environment"]["PULSE_METRICS_PORT"])),
                "pulse-gateway": ("gateway", int(
                    services["gateway"]["environment"]["PULSE_GATEWAY_PORT"]))}
    for job_name, (service, port) in expected.items():
        job = jobs[job_name]
        # DNS service discovery: one target per replica; static targets would see only one.
        assert "static_configs" not in job, job_name
        [sd] = job["dns_sd_configs"]
        assert (sd["names"], sd["type"], sd["port"]) == ([service], "A", port)
        assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "/metrics" in gateway_get_paths()
    alertmanager = services["alertmanager"]
    am_target = bind_target(alertmanager, "deploy/alertmanager/alertmanager.yml")
    assert f"--config.file={am_target}" in alertmanager["command"]
    targets = [t for am in config["alerting"]["alertmanagers"]
               for sc in am["static_configs"] for t in sc["targets"]]
    assert [host_port(t) for t in targets] == [("alertmanager", 9093)]


# ---- Grafana provisioning -----------------------------------------------------------------

def datasources() -> dict[str, dict[str, Any]]:
    files = sorted((PROVISIONING / "datasources").glob("*.yml"))
    assert files, "no datasource provisioning file"
    found: dict[str, dict[str, Any]] = {}
    for path in files:
        doc = load(path)
        assert doc["apiVersion"] == 1, path
        for source in doc["datasources"]:
            found[source["uid"]] = source
    return found


def test_grafana_mounts_provisioning_and_dashboards(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    assert bind_target(grafana, "deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_target = bind_target(grafana, "deploy/grafana/dashboards")
    providers = [p for path in sorted((PROVISIONING / "dashboards").glob("*.yml"))
                 for p in load(path)["providers"]]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == dashboards_target
    assert provider["folder"] == "Pulse"
    # Dashboards are files in git: UI edits would be lost on the next provisioning pass.
    assert provider["allowUiUpdates"] is False


def test_grafana_datasources_point_at_the_compose_services(services: dict[str, Any]) -> None:
    sources = datasources()
    assert set(sources) == {"prometheus", "postgres"}
    prometheus = sources["prometheus"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["isDefault"] is True
    assert host_port(prometheus["url"]) == ("prometheus", 9090)
    assert "9090" in [str(p["target"]) for p in services["prometheus"]["ports"]]
    # $__rate_interval is only right when Grafana knows the scrape interval.
    scrape = load(REPO / "deploy/prometheus/prometheus.yml")["global"]["scrape_interval"]
    assert prometheus["jsonData"]["timeInterval"] == scrape

    postgres = sources["postgres"]
    # The dashboards' datasource variables ask for this plugin id (Grafana 11).
    assert postgres["type"] == "grafana-postgresql-datasource"
    assert int(services["grafana"]["image"].split(":")[1].split(".")[0]) >= 11
    assert host_port(postgres["url"]) == ("postgres", 5432)
    db_env = services["postgres"]["environment"]
    assert postgres["user"] == db_env["POSTGRES_USER"]
    assert postgres["jsonData"]["database"] == db_env["POSTGRES_DB"]
    # Grafana expands $VAR in provisioning files from its own environment.
    password = postgres["secureJsonData"]["password"]
    match = re.fullmatch(r"\$\{?(\w+)\}?", password)
    assert match, "the datasource password must come from the environment"
    assert services["grafana"]["environment"][match.group(1)] == db_env["POSTGRES_PASSWORD"]
    assert {"prometheus", "postgres"} <= set(services["grafana"]["depends_on"])


def datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        if "datasource" in node:
            yield node["datasource"]
        for value in node.values():
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_refs(value)


def test_every_dashboard_uses_a_provisioned_datasource() -> None:
    sources = datasources()
    types = {source["type"] for source in sources.values()}
    boards = sorted(DASHBOARDS.glob("*.json"))
    assert boards, "no dashboards to provision"
    uids: set[str] = set()
    for path in boards:
        board = json.loads(path.read_text())
        assert board.get("uid"), f"{path.name}: a provisioned dashboard needs a fixed uid"
        assert board["uid"] not in uids, f"{path.name}: uid {board['uid']} used twice"
        uids.add(board["uid"])
        variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        for variable in variables.values():
            if variable["type"] == "datasource":
                # A datasource variable picks any datasource of its plugin type.
                assert variable["query"] in types, (path.name, variable["name"])
        for ref in datasource_refs(board):
            uid = ref.get("uid") if isinstance(ref, dict) else ref
            if uid is None or uid in {"-- Grafana --", "grafana"}:
                continue
            variable = re.fullmatch(r"\$\{?(\w+)\}?", uid)
            if variable:
                assert variable.group(1) in variables, f"{path.name}: unknown {uid}"
            else:
                assert uid in sources, f"{path.name}: datasource uid {uid!r} not provisioned"


# ---- .env.example -------------------------------------------------------------------------

def compose_variables() -> dict[str, str]:
    """{name: default} of every ${NAME:-default} / ${NAME} in the compose file."""
    found: dict[str, str] = {}
    for name, default in re.findall(r"\$\{(\w+)(?::?-([^}]*))?\}", COMPOSE.read_text()):
        assert found.get(name, default) == default, f"{name} has two defaults"
        found[name] = default
    return found


def test_env_example_documents_every_variable_with_its_default() -> None:
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            example[name] = value
    variables = compose_variables()
    assert {"POSTGRES_PASSWORD", "PULSE_PARTITIONS", "PULSE_GATEWAY_KEYS",
            "GRAFANA_ADMIN_PASSWORD"} <= set(variables)
    assert set(example) == set(variables)
    for name, default in variables.items():
        assert example[name] == default, f"{name}: .env.example {example[name]!r} != {default!r}"
    # The example parses and resolves like the defaults do.
    resolved = yaml.safe_load(docker_compose("--env-file", str(ENV_EXAMPLE), "config"))
    assert resolved["services"]["worker"]["environment"]["PULSE_PARTITIONS"] == (
        example["PULSE_PARTITIONS"])
