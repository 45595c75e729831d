"""Contract: the topology declarations and every file derived from them agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mlflowkit import envfile
from mlflowkit.errors import UnknownTopology
from mlflowkit.settings import Settings
from mlflowkit.topology import TOPOLOGIES, get, markdown_table

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(TOPOLOGIES)


def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / name / "compose.yaml").read_text())


def test_get_unknown_names_the_valid_ones():
    with pytest.raises(UnknownTopology) as info:
        get("mysql")
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_compose_project_name_is_the_topologys(name):
    assert compose(name)["name"] == TOPOLOGIES[name].project


@pytest.mark.parametrize("name", NAMES)
def test_compose_services_are_the_declared_ones(name):
    t = TOPOLOGIES[name]
    declared = set(t.services) | set(t.one_shots) | {t.serve_service}
    assert set(compose(name)["services"]) == declared


@pytest.mark.parametrize("name", NAMES)
def test_published_ports_match_the_declaration_and_bind_loopback_by_default(name):
    t = TOPOLOGIES[name]
    services = compose(name)["services"]
    published = {}
    for service, spec in services.items():
        for mapping in spec.get("ports", []):
            match = re.fullmatch(r"\$\{BIND_ADDRESS:-127\.0\.0\.1\}:\$\{(\w+):-(\d+)\}:(\d+|\$\{\w+:-\d+\})",
                                 mapping)
            assert match, f"{service}: port {mapping!r} must be ${{BIND_ADDRESS:-127.0.0.1}}:${{VAR:-default}}:port"
            variable, default, target = match[1], int(match[2]), match[3]
            if target.startswith("$"):  # the same number inside: only as the very same variable and default
                assert target == f"${{{variable}:-{default}}}", mapping
                published[variable] = (default, service, None)
            else:
                published[variable] = (default, service, int(target))
    assert published == {p.variable: (p.default, p.service, p.container_port) for p in t.ports}


@pytest.mark.parametrize("name", NAMES)
def test_one_shots_never_restart_and_long_running_services_have_healthchecks(name):
    t = TOPOLOGIES[name]
    for service, chain in extended_specs(name).items():
        merged = {k: v for spec in reversed(chain) for k, v in spec.items()}
        if service in t.one_shots:
            assert merged.get("restart") == "no", service
        else:
            assert "healthcheck" in merged, f"{service} has no healthcheck"
            assert merged.get("restart") == "unless-stopped", f"{service} does not come back after a crash"


def extended_specs(name: str) -> dict[str, list[dict]]:
    """Per service of the stack: its spec, then every building block it extends (across files), in order."""
    def chain(spec: dict, file: Path) -> list[dict]:
        extends = spec.get("extends")
        if not extends:
            return [spec]
        if isinstance(extends, str):
            extends = {"service": extends}
        base_file = (file.parent / extends["file"]).resolve() if "file" in extends else file
        base = yaml.safe_load(base_file.read_text())["services"][extends["service"]]
        return [spec, *chain(base, base_file)]

    stack_file = ROOT / "stacks" / name / "compose.yaml"
    return {service: chain(spec, stack_file) for service, spec in compose(name)["services"].items()}


@pytest.mark.parametrize("name", NAMES)
def test_env_defaults_cover_every_variable_the_stack_requires(name):
    text = "".join(yaml.safe_dump(spec) for chain in extended_specs(name).values() for spec in chain)
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required, "a stack needs secrets from .env"
    assert required <= set(envfile.defaults(TOPOLOGIES[name]))


def test_readme_table_is_the_declarations():
    assert markdown_table() in (ROOT / "README.md").read_text(), "paste `mlflowkit list --markdown` into README.md"
    assert "stack-%:" in (ROOT / "Makefile").read_text()  # one pattern rule serves every topology


@pytest.mark.parametrize("name", NAMES)
def test_every_stack_has_a_readme_with_a_diagram_and_its_client_environment(name):
    readme = (ROOT / "stacks" / name / "README.md").read_text()
    assert f"scenario {TOPOLOGIES[name].scenario})" in readme
    assert "```mermaid" in readme
    assert "MLFLOW_TRACKING_URI" in readme
    assert f"mlflowkit env {name}" in readme


def test_settings_point_at_this_checkout():
    assert Settings().stack_dir("postgres-s3") == ROOT / "stacks" / "postgres-s3"


def test_committed_files_hold_no_generated_env():
    gitignore = (ROOT / ".gitignore").read_text()
    assert "stacks/*/.env" in gitignore


@pytest.mark.parametrize("name", NAMES)
def test_start_here_maps_every_scenario_to_its_stack(name):
    text = (ROOT / "docs" / "tutorials" / "00-start-here.md").read_text()
    assert f"Scenario {TOPOLOGIES[name].scenario}:" in text
    assert f"`make stack-{name}`" in text
    assert f"(../../stacks/{name}/README.md)" in text
