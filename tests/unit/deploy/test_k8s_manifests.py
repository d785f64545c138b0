"""deploy/k8s: every manifest passes the Kubernetes JSON schema of a pinned version (strict: no
unknown fields), and what the manifests say agrees with the code: probe paths the gateway
really serves, ports and variables Settings really reads, commands the CLI really has."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy_checks import REPO, cli_command_exists, gateway_get_paths, settings_env_names

K8S = REPO / "deploy/k8s"
KUBERNETES_VERSION = "1.31.0"  # schemas bundled by kubernetes-validate (dev extra)
NAMESPACE = "pulse"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = [(path.name, doc) for path in sorted(K8S.glob("*.yaml"))
             if path.name != "kustomization.yaml" for doc in documents(path)]
    assert found, "no manifests in deploy/k8s"
    return found


def resource(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for _, doc in manifests()
               if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload, pod template metadata, pod spec) of every Deployment, StatefulSet and Job."""
    for _, doc in manifests():
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            template = doc["spec"]["template"]
            yield f"{doc['kind']}/{doc['metadata']['name']}", template["metadata"], template["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def config_map() -> dict[str, str]:
    return dict(resource("ConfigMap", "pulse-config")["data"])


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"{container['name']}: no port named {port}"
    return int(named[port])


def only_container(workload: str) -> dict[str, Any]:
    spec = next(spec for name, _, spec in pod_specs() if name == workload)
    [container] = spec["containers"]
    return dict(container)


@pytest.mark.parametrize("name,doc", manifests(),
                         ids=[f"{n}:{d['kind']}" for n, d in manifests()])
def test_manifest_passes_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert version == "1.31"
    if doc["kind"] != "Namespace":
        assert doc["metadata"]["namespace"] == NAMESPACE, name


def test_schema_check_catches_a_typo() -> None:
    """The validator is strict: a misspelt field fails, so the test above means something."""
    deployment = resource("Deployment", "pulse-gateway")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == NAMESPACE
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}


def test_hpa_scales_the_gateway_deployment_on_cpu() -> None:
    hpa = resource("HorizontalPodAutoscaler", "pulse-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    deployment = resource(target["kind"], target["name"])
    assert (target["kind"], target["apiVersion"]) == ("Deployment", deployment["apiVersion"])
    assert deployment["metadata"]["name"] == "pulse-gateway"
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # CPU utilisation is measured against the request: without one the HPA never acts.
    gateway = only_container("Deployment/pulse-gateway")
    assert gateway["resources"]["requests"]["cpu"]


def test_gateway_probes_and_service_use_paths_and_ports_the_gateway_serves() -> None:
    served = gateway_get_paths()
    gateway = only_container("Deployment/pulse-gateway")
    env = {e["name"]: e.get("value") for e in gateway.get("env", [])}
    assert env["PULSE_GATEWAY_HOST"] == "0.0.0.0"  # the default 127.0.0.1 is unreachable
    port = int(config_map()["PULSE_GATEWAY_PORT"])
    assert {(probe, gateway[probe]["httpGet"]["path"]) for probe in
            ("readinessProbe", "livenessProbe")} == {("readinessProbe", "/readyz"),
                                                    ("livenessProbe", "/healthz")}
    for probe in ("readinessProbe", "livenessProbe"):
        get = gateway[probe]["httpGet"]
        assert get["path"] in served
        assert container_port(gateway, get["port"]) == port
    service = resource("Service", "pulse-gateway")
    pod_labels = resource("Deployment", "pulse-gateway")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [service_port] = service["spec"]["ports"]
    assert container_port(gateway, service_port["targetPort"]) == port


def test_worker_probes_its_metrics_port() -> None:
    worker = only_container("Deployment/pulse-worker")
    port = int(config_map()["PULSE_METRICS_PORT"])
    for probe in ("readinessProbe", "livenessProbe"):
        get = worker[probe]["httpGet"]
        assert get["path"] == "/metrics"
        assert container_port(worker, get["port"]) == port


def test_pods_carry_prometheus_scrape_annotations_that_match_their_ports() -> None:
    served = gateway_get_paths()
    expected = {"Deployment/pulse-worker": int(config_map()["PULSE_METRICS_PORT"]),
                "Deployment/pulse-gateway": int(config_map()["PULSE_GATEWAY_PORT"])}
    for workload, metadata, spec in pod_specs():
        if workload not in expected:
            continue
        annotations = metadata["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        port = int(annotations["prometheus.io/port"])
        assert port == expected[workload]
        assert port in {p["containerPort"] for p in spec["containers"][0]["ports"]}
        assert annotations["prometheus.io/path"] == "/metrics"
    assert "/metrics" in served


def test_every_pulse_variable_is_a_setting() -> None:
    known = settings_env_names()
    names = set(config_map())
    names |= set(resource("Secret", "pulse-secrets")["stringData"])
    for _, _, spec in pod_specs():
        for container in containers(spec):
            names |= {e["name"] for e in container.get("env", [])}
            refs = {ref.get("configMapRef", ref.get("secretRef"))["name"]
                    for ref in container["envFrom"]}
            assert refs == {"pulse-config", "pulse-secrets"}, container["name"]
    pulse = {name for name in names if name.startswith("PULSE_")}
    assert pulse == names, f"not PULSE_ settings: {names - pulse}"
    assert not pulse - known, f"Settings has no {pulse - known}"
    # Connection URLs carry passwords: the Secret has them, never the ConfigMap.
    assert {"PULSE_DATABASE_URL", "PULSE_REDIS_URL"} <= set(
        resource("Secret", "pulse-secrets")["stringData"])
    assert not {"PULSE_DATABASE_URL", "PULSE_REDIS_URL", "PULSE_GATEWAY_KEYS"} & set(config_map())


def test_the_secret_example_holds_no_real_secret() -> None:
    values = resource("Secret", "pulse-secrets")["stringData"]
    assert values["PULSE_GATEWAY_KEYS"] == "{}"
    for key in ("PULSE_DATABASE_URL", "PULSE_REDIS_URL"):
        assert ":CHANGE-ME@" in values[key], key


def dockerfile_value(instruction: str) -> str:
    lines = [line for line in (REPO / "Dockerfile").read_text().splitlines()
             if line.startswith(f"{instruction} ")]
    return lines[-1].split(" ", 1)[1]


def test_containers_run_real_commands_with_resources_as_the_image_user() -> None:
    uid = int(dockerfile_value("USER"))
    state_dir = re.search(r"PULSE_STATE_DIR=(\S+)", (REPO / "Dockerfile").read_text())
    assert state_dir
    commands = {}
    for workload, _, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, workload
        assert spec["securityContext"]["runAsUser"] == uid, workload
        for container in containers(spec):
            where = f"{workload}/{container['name']}"
            assert cli_command_exists(container["args"]), f"{where}: pulse {container['args']}"
            commands[where] = container["args"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
                # Faust writes its data dir under PULSE_STATE_DIR.
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                volume = mounts[state_dir.group(1)]
                assert {"name": volume, "emptyDir": {}} in spec["volumes"], where
    assert commands["Job/pulse-topic-init/create"] == ["topics", "create"]
    assert commands["Job/pulse-topic-init/verify"] == ["topics", "describe"]
    assert commands["Deployment/pulse-worker/worker"][0] == "worker"
    assert commands["Deployment/pulse-gateway/gateway"] == ["gateway"]


def test_worker_replicas_fit_the_partitions() -> None:
    worker = resource("Deployment", "pulse-worker")
    replicas = worker["spec"]["replicas"]
    assert 1 < replicas <= int(config_map()["PULSE_PARTITIONS"])
    # No surge: an extra consumer-group member during a rollout only adds a rebalance.
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
