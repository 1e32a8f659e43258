"""docker-compose.yml and the Dockerfiles, checked without a Docker engine (none runs here)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from core.connection import connect
from core.embedded_redis import free_port
from core.launcher import COMMANDS, local
from core.settings import Settings
from tests import procs

ROOT = procs.ROOT
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SETTING_NAMES = {f.name.upper() for f in dataclasses.fields(Settings)}


def test_services_health_checks_and_restart_policies():
    assert set(SERVICES) >= {"redis", "api", "worker", "stream"}
    for name in ("redis", "api", "worker", "stream"):
        assert SERVICES[name]["healthcheck"]["test"], name
        assert SERVICES[name]["restart"] in ("unless-stopped", "always"), name
    assert SERVICES["api"]["ports"] == ["5000:5000"]
    assert "/readyz" in " ".join(SERVICES["api"]["healthcheck"]["test"])
    # Workers scale with --scale worker=N: no fixed name, no published port.
    for name in ("worker", "stream"):
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]
    for name in ("api", "worker", "stream"):
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_is_durable_private_and_password_protected():
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command and "--maxmemory " in command
    assert "--requirepass ${REDIS_PASSWORD" in command
    assert "ports" not in redis  # no published port
    for name in ("api", "worker", "stream"):
        assert "${REDIS_PASSWORD" in SERVICES[name]["environment"]["REDIS_URL"]


def test_service_environment_matches_the_settings_object():
    for name in ("api", "worker", "stream"):
        unknown = set(SERVICES[name]["environment"]) - SETTING_NAMES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_compose_commands_are_the_launchers():
    for name in ("api", "worker", "stream"):
        assert SERVICES[name]["command"] == COMMANDS[name]


@pytest.mark.parametrize("name", ["Dockerfile.api", "Dockerfile.worker"])
def test_dockerfiles_are_slim_non_root_and_pass_hadolint(name):
    text = (ROOT / name).read_text()
    assert "FROM python:3.11-slim" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    hadolint = Path(procs.PYTHON).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(ROOT / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    service = "api" if name.endswith("api") else "worker"
    assert json.dumps(SERVICES[service]["command"]) in text  # the image runs the same command


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_validates():
    env = {**os.environ, "REDIS_PASSWORD": "test-password", "API_KEYS": "team:test-key"}
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, env={k: v for k, v in env.items() if k != "API_KEYS"},
    )  # fmt: skip
    assert missing.returncode != 0 and "API_KEYS" in missing.stderr


def _compose_env(service: str, settings: Settings, port: int) -> dict[str, str]:
    """The service's compose environment, pointed at the test Redis on loopback."""
    env = {k: str(v) for k, v in SERVICES[service]["environment"].items()}
    prefix = settings.key_prefix + "c"
    if "API_KEYS" in env:
        env["API_KEYS"] = "compose:test-key"
    env.update(REDIS_URL=settings.redis_url, HOST="127.0.0.1", PORT=str(port),
               MODEL_REGISTRY=settings.model_registry, KEY_PREFIX=prefix, HEARTBEAT_SECONDS="0.5",
               STREAM_INPUT=prefix + ":requests", STREAM_OUTPUT=prefix + ":results")  # fmt: skip
    return env


def _call(url: str, data: bytes | None = None, content_type: str = "", raw: bool = False):
    headers = {"X-API-Key": "test-key"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return body if raw else json.loads(body)


def test_compose_services_work_together_locally(settings):
    port = free_port()
    started = []
    try:
        for service in ("worker", "stream", "api"):
            env = _compose_env(service, settings, port)
            started.append(procs.spawn(local(SERVICES[service]["command"]), env=env))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=3) as response:
                    if response.status == 200:
                        break
            except OSError as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()
            logs = [procs.log_of(p) for p in started]
            assert time.monotonic() < deadline, logs
            assert all(p.poll() is None for p in started), logs
            time.sleep(0.3)
        csv = b"id,sepal_length,sepal_width,petal_length,petal_width\nx1,5.1,3.5,1.4,0.2\n"
        csv += b"x2,6.7,3.0,5.2,2.3\n"
        unauthenticated = urllib.request.Request(base + "/v1/jobs", data=csv)
        try:
            urllib.request.urlopen(unauthenticated, timeout=10)
            raise AssertionError("compose's API took a job without a key")
        except urllib.error.HTTPError as exc:
            exc.close()
            assert exc.code == 401
        job = _call(base + "/v1/jobs", data=csv, content_type="text/csv")
        deadline = time.monotonic() + 30
        while True:
            status = _call(base + job["status_url"])
            if status["status"] == "succeeded" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status["status"] == "succeeded", status
        lines = _call(base + status["result_url"], raw=True).decode().splitlines()
        assert [line.split(",")[0] for line in lines] == ["id", "x1", "x2"]
        assert [line.split(",")[5] for line in lines[1:]] == ["setosa", "virginica"]
        # and the stream service answers a record appended by a plain Redis client
        env = _compose_env("stream", settings, port)
        r = connect(settings)
        r.xadd(env["STREAM_INPUT"], {"id": "c-1", "features": "[6.7, 3.0, 5.2, 2.3]"})
        got = r.xread({env["STREAM_OUTPUT"]: "0-0"}, count=1, block=30_000)
        fields = got[0][1][0][1]
        assert fields[b"id"] == b"c-1"
        assert json.loads(fields[b"result"])["prediction"] == "virginica"
    finally:
        for proc in started:
            procs.stop(proc)
