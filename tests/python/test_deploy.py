"""The deployment files say what the server does: the Kubernetes manifests, the Dockerfile and the systemd
unit are parsed and checked against the binary's real behaviour (its health route, its probe command, its
drain timeout, and the ConfigMap's config, which the real binary must accept)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import DEFAULT_BIN, REPO, Server

K8S = REPO / "deploy" / "k8s" / "standin.yaml"
DOCKERFILE = REPO / "Dockerfile"
UNIT = REPO / "deploy" / "systemd" / "standin.service"
#: The server's default --shutdown-timeout-ms, in seconds (src/config.rs DEFAULT_SHUTDOWN_TIMEOUT).
SHUTDOWN_TIMEOUT_S = 25


def manifests() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_manifests_have_every_piece():
    kinds = manifests()
    assert {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler"} <= set(kinds)
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
    assert hpa["minReplicas"] >= 1 and hpa["maxReplicas"] >= hpa["minReplicas"]


def test_deployment_probes_health_and_drains_in_its_grace_period():
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert container[probe]["httpGet"]["port"] == "http"
    # Liveness must tolerate a whole drain (503 while draining) before restarting the pod.
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > SHUTDOWN_TIMEOUT_S
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_TIMEOUT_S
    env = {e["name"]: e for e in container["env"]}
    port = container["ports"][0]["containerPort"]
    assert env["STANDIN_LISTEN"]["value"] == f"0.0.0.0:{port}"
    assert env["STANDIN_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == manifests()["Secret"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_configmap_config_is_accepted_by_the_real_binary(tmp_path):
    config = manifests()["ConfigMap"]["data"]["config.json"]
    json.loads(config)
    path = tmp_path / "config.json"
    path.write_text(config)
    server = Server(DEFAULT_BIN, ("--config", str(path)), None)
    try:
        import urllib.request

        with urllib.request.urlopen(server.base_url + "/v1/models") as resp:
            ids = [m["id"] for m in json.load(resp)["data"]]
        assert "synthetic" in ids and "gpt-4o-mini" in ids
    finally:
        server.stop()


def test_dockerfile_runs_unprivileged_with_the_probe_as_healthcheck():
    text = DOCKERFILE.read_text()
    assert "FROM scratch" in text
    assert "USER 65532" in text
    assert 'HEALTHCHECK' in text and '"/standin", "probe"' in text
    assert "STANDIN_LISTEN=0.0.0.0:8000" in text
    assert "EXPOSE 8000" in text


def test_probe_command_reports_health(base_url):
    addr = base_url.removeprefix("http://")
    ok = subprocess.run([str(DEFAULT_BIN), "probe", addr], capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    # The probe reads STANDIN_LISTEN when given no address, as in the image (0.0.0.0 means loopback).
    port = addr.rsplit(":", 1)[1]
    env = {"STANDIN_LISTEN": f"0.0.0.0:{port}", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([str(DEFAULT_BIN), "probe"], capture_output=True, text=True, timeout=10, env=env)
    assert ok.returncode == 0, ok.stderr
    dead = subprocess.run([str(DEFAULT_BIN), "probe", "127.0.0.1:9"], capture_output=True, text=True, timeout=10)
    assert dead.returncode == 1 and "cannot connect" in dead.stderr


def test_systemd_unit_stops_with_a_drain():
    lines = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    assert lines["KillSignal"] == "SIGTERM"
    assert int(lines["TimeoutStopSec"]) > SHUTDOWN_TIMEOUT_S
    assert lines["ExecStart"].startswith("/usr/local/bin/standin")
    assert lines["DynamicUser"] == "yes" and lines["NoNewPrivileges"] == "yes"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    # Point ExecStart at the real binary so verify can check it exists and is executable.
    unit = tmp_path / "standin.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/standin", str(DEFAULT_BIN)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "standin.service" not in done.stderr, done.stderr
