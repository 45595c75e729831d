"""Secure defaults, read off the committed files: no secrets, loopback ports, narrow hosts, non-root images."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mlflowkit.topology import TOPOLOGIES

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|ACCESS_KEY|TOKEN)", re.I)


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
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
    for file in tracked_files():
        if file.suffix != ".yaml" or "stacks" not in file.parts:
            continue
        for path, value in walk(yaml.safe_load(file.read_text())):
            key = path.rsplit(".", 1)[-1]
            if re.fullmatch(r"[A-Z0-9_]+", key) and SECRET_NAME.search(key) and isinstance(value, str):
                assert value.startswith("${"), f"{file.relative_to(ROOT)}{path} holds a literal value"
                checked += 1
    assert checked >= 6, "the scan found the secret-bearing keys (POSTGRES_PASSWORD, AWS_SECRET_ACCESS_KEY, …)"


def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / name / "compose.yaml").read_text())


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_only_what_clients_need_is_published(name):
    services = compose(name)["services"]
    assert "ports" not in services.get("postgres", {}), "PostgreSQL is for the tracking server only"
    s3_published = "ports" in services.get("s3", {})
    assert s3_published == TOPOLOGIES[name].client_needs_s3_credentials


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_allowed_hosts_are_listed_never_a_wildcard(name):
    text = (ROOT / "stacks" / name / "compose.yaml").read_text()
    lists = re.findall(r"--allowed-hosts \$\{\w+:-([^}]*)\}", text)
    assert lists, "every server sets --allowed-hosts"
    for hosts in lists:
        assert "*" not in hosts.split(","), hosts
        assert "127.0.0.1:*" in hosts.split(",")


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
