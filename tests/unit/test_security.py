"""Secure defaults, read off the committed files: no secrets, loopback ports, narrow hosts, non-root images."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mlflowkit.topology import TOPOLOGIES
from tests.unit.test_topology import effective, example, required_values

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|ACCESS_KEY|TOKEN)", re.I)


def tracked_files(*, new: bool = False) -> list[Path]:
    """The files git tracks; with ``new``, also those not yet added (never git-ignored ones)."""
    extra = ["--others", "--exclude-standard"] if new else []
    out = subprocess.run(["git", "ls-files", "--cached", *extra], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return [ROOT / line for line in out.splitlines()]


def walk(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    else:
        yield path, node


def test_no_env_file_is_tracked():
    assert not [f for f in tracked_files() if f.name == ".env" or f.name.endswith(".env")]


def test_compose_files_take_every_secret_from_the_environment():
    checked = 0
    for file in tracked_files(new=True):
        if file.suffix != ".yaml" or "stacks" not in file.parts:
            continue
        for path, value in walk(yaml.safe_load(file.read_text())):
            key = path.rsplit(".", 1)[-1]
            if re.fullmatch(r"[A-Z0-9_]+", key) and SECRET_NAME.search(key) and isinstance(value, str):
                assert value.startswith("${"), f"{file.relative_to(ROOT)}{path} holds a literal value"
                checked += 1
    assert checked >= 6, "the scan found the secret-bearing keys (POSTGRES_PASSWORD, AWS_SECRET_ACCESS_KEY, …)"


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_every_secret_a_service_gets_comes_from_the_environment(name):
    """In the model Compose runs (include and extends resolved): each secret-named variable of a service
    holds a value the environment gave, or nothing (the --auth ones, unset)."""
    given = set(dict(required_values(name)).values())
    checked = 0
    for service, spec in effective(name)["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert value in given or value == "", f"{name}: {service}.environment.{key} is not from .env"
                checked += 1
    assert checked, "the stack's services were scanned"


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_env_examples_hold_no_secret(name):
    secrets = {variable: value for variable, value in example(name).items() if SECRET_NAME.search(variable)}
    assert secrets and not any(secrets.values()), f"stacks/{name}/.env.example: placeholders only, {secrets}"


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_only_what_clients_need_is_published(name):
    services = effective(name)["services"]
    assert "ports" not in services.get("postgres", {}), "PostgreSQL is for the tracking server only"
    s3_published = "ports" in services.get("s3", {})
    assert s3_published == TOPOLOGIES[name].client_needs_s3_credentials


def allowed_hosts(model: dict) -> dict[str, list[str]]:
    """Per `mlflow server` service: the Host headers it accepts (--allowed-hosts, or the variable it reads)."""
    lists = {}
    for service, spec in model["services"].items():
        command = spec.get("command") or []
        if command[:2] == ["python", "-m"] and command[2].startswith("mlflowkit_server."):  # the image's launcher
            command = command[3:]
        if command[:2] != ["mlflow", "server"]:
            continue
        if "--allowed-hosts" in command:
            lists[service] = command[command.index("--allowed-hosts") + 1].split(",")
        else:
            hosts = (spec.get("environment") or {}).get("MLFLOW_SERVER_ALLOWED_HOSTS")
            assert hosts, f"{service} sets no allowed hosts: MLflow's default refuses the compose service names"
            lists[service] = hosts.split(",")
    return lists


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_allowed_hosts_are_listed_never_a_wildcard(name):
    lists = allowed_hosts(effective(name))
    assert lists, "the stack runs an MLflow server"
    for service, hosts in lists.items():
        assert "*" not in hosts, f"{service} accepts any Host header"
        assert "127.0.0.1:*" in hosts, service
    # ... and a user widens each list through .env (MLFLOW_ALLOWED_HOSTS, or the artifacts server's own).
    widened = {variable: "mlflow.example.org" for variable in example(name) if variable.endswith("ALLOWED_HOSTS")}
    assert widened, f"stacks/{name}/.env.example lists MLFLOW_ALLOWED_HOSTS"
    for service, hosts in allowed_hosts(effective(name, **widened)).items():
        assert hosts == ["mlflow.example.org"], f"{service} ignores the .env's allowed hosts"


@pytest.mark.parametrize("image", ["mlflow", "postgres", "s3"])
def test_images_run_as_a_non_root_user(image):
    dockerfile = (ROOT / "stacks" / "images" / image / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[-1]
    users = re.findall(r"^USER (\S+)", final_stage, flags=re.M)
    assert users and users[-1] not in ("root", "0"), f"{image} runs as root"


def test_the_ca_bundle_reaches_builds_only_as_a_secret():
    for image in ("mlflow", "postgres", "s3"):
        dockerfile = re.sub(r"^#.*$", "", (ROOT / "stacks" / "images" / image / "Dockerfile").read_text(), flags=re.M)
        assert "host_ca" not in re.sub(r"--mount=type=secret,id=host_ca|/run/secrets/host_ca", "", dockerfile)
        assert not re.search(r"^(COPY|ADD) .*(\.crt|\.pem)", dockerfile, flags=re.M)


def test_no_usage_telemetry_leaves_a_stack():
    """MLflow 3 servers, clients and UI send usage telemetry unless told not to: every MLflow container is told by
    its image, every client of a stack by the environment the kit gives it."""
    from mlflowkit.client import Connection

    dockerfile = (ROOT / "stacks" / "images" / "mlflow" / "Dockerfile").read_text()
    env_block = dockerfile[dockerfile.rindex("\nENV "):]
    assert "MLFLOW_DISABLE_TELEMETRY=true" in env_block and "DO_NOT_TRACK=true" in env_block
    environ = Connection("http://127.0.0.1:5040").environ()
    assert environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and environ["DO_NOT_TRACK"] == "true"
