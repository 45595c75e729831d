"""The CLI's bad-input paths: one clear line, a non-zero exit, nothing started."""

from __future__ import annotations

import os
import socket

import pytest
from typer.testing import CliRunner

from mlflowkit.cli import app
from mlflowkit.errors import PortTaken
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack, port_free
from mlflowkit.topology import TOPOLOGIES

runner = CliRunner()


def test_unknown_topology_names_the_valid_ones_and_exits_2():
    result = runner.invoke(app, ["up", "mysql-s3"])
    assert result.exit_code == 2
    assert "unknown topology 'mysql-s3'" in result.output
    for name in TOPOLOGIES:
        assert name in result.output


def test_list_shows_every_topology():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in TOPOLOGIES:
        assert name in result.output


def test_validate_needs_a_topology_or_all():
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 1
    assert "give one topology or --all" in result.output


def test_no_engine_is_one_line_and_exit_1(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    result = runner.invoke(app, ["up", "postgres-s3"])
    assert result.exit_code == 1
    assert "error: no Docker engine answers" in result.output
    assert "Hint:" in result.output


def test_env_of_a_stack_never_brought_up_says_to_run_up(tmp_path):
    settings = Settings(home=str(tmp_path))
    (tmp_path / "stacks" / "postgres-s3").mkdir(parents=True)
    stack = Stack(TOPOLOGIES["postgres-s3"], settings)
    with pytest.raises(Exception, match="mlflowkit up postgres-s3"):
        stack.connection()


def test_taken_port_names_the_port_and_the_variable(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not port_free("127.0.0.1", taken)
        stack = Stack(TOPOLOGIES["postgres-s3"], Settings(home=str(tmp_path)))
        values = {"BIND_ADDRESS": "127.0.0.1", "MLFLOW_PORT": str(taken), "S3_PORT": str(_free()),
                  "SERVE_PORT": str(_free())}
        with pytest.raises(PortTaken) as info:
            stack._check_ports(values, running=set())
    assert f"127.0.0.1:{taken}" in str(info.value) and "MLFLOW_PORT" in str(info.value)


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_inspected_containers_become_service_states():
    from mlflowkit.stack import _state

    ports = {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5000"}, {"HostIp": "::1", "HostPort": "5000"}],
             "8080/tcp": None}
    running = _state({"Name": "/p-mlflow-1", "Config": {"Labels": {"com.docker.compose.service": "mlflow"}},
                      "State": {"Status": "running", "ExitCode": 0, "Health": {"Status": "healthy"}},
                      "NetworkSettings": {"Ports": ports}})
    assert (running.service, running.state, running.health, running.ports) == (
        "mlflow", "running", "healthy", "127.0.0.1:5000, [::1]:5000")
    starting = _state({"Config": {"Labels": {"com.docker.compose.service": "serve"}},
                       "State": {"Status": "running", "Health": {"Status": "starting"}}})
    assert starting.health == "starting"
    failed = _state({"Config": {"Labels": {"com.docker.compose.service": "migrate"}},
                     "State": {"Status": "exited", "ExitCode": 2}, "NetworkSettings": {"Ports": {}}})
    assert (failed.state, failed.exit_code, failed.health) == ("exited", 2, "")


def test_compose_gets_the_env_files_values_and_nothing_else_of_the_callers_shell(tmp_path, monkeypatch):
    stack = Stack(TOPOLOGIES["proxied"], Settings(home=str(tmp_path)))
    stack.env_file.parent.mkdir(parents=True)
    stack.env_file.write_text("AWS_ACCESS_KEY_ID=from-env-file\nMLFLOW_PORT=5999  # moved\n")
    for key, value in {"AWS_ACCESS_KEY_ID": "from-shell", "AWS_SECRET_ACCESS_KEY": "shell-secret",
                       "MLFLOW_PORT": "1", "MLFLOW_TRACKING_URI": "http://elsewhere", "S3_BUCKET": "x"}.items():
        monkeypatch.setenv(key, value)
    env = stack.compose().env
    assert env["AWS_ACCESS_KEY_ID"] == "from-env-file" and env["MLFLOW_PORT"] == "5999"
    for key in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_URI", "S3_BUCKET"):
        assert key not in env
    assert env["PATH"] == os.environ["PATH"]


def test_a_users_compose_override_is_honoured(tmp_path):
    stack = Stack(TOPOLOGIES["proxied"], Settings(home=str(tmp_path)))
    assert stack.compose().files == (stack.compose_file,)
    override = tmp_path / "proxied" / "compose.override.yaml"
    override.parent.mkdir(parents=True)
    override.write_text("services: {}\n")
    assert stack.compose().files == (stack.compose_file, override)


@pytest.mark.parametrize("name", ["file", "sqlite"])
def test_auth_where_it_is_not_available_is_refused_before_anything_starts(name, tmp_path):
    from mlflowkit.errors import KitError

    stack = Stack(TOPOLOGIES[name], Settings(home=str(tmp_path)))
    with pytest.raises(KitError, match=f"--auth is not available for {name}"):
        stack.up(auth=True)
    assert not (tmp_path / name / ".env").exists()


def test_bench_refuses_bad_input_before_starting_anything():
    from typer.testing import CliRunner

    from mlflowkit.cli import app

    unknown = CliRunner().invoke(app, ["bench", "nope"])
    assert unknown.exit_code == 2 and "unknown topology 'nope'" in unknown.output
    huge = CliRunner().invoke(app, ["bench", "file", "--large-mib", "999999999"])
    assert huge.exit_code == 1 and "--large-mib 999999999 needs about" in huge.output
    both = CliRunner().invoke(app, ["bench", "file", "--all"])
    assert both.exit_code == 1 and "give topologies or --all, not both" in both.output


def test_status_names_each_published_port_by_its_variable():
    from mlflowkit.stack import label_ports

    values = {"MLFLOW_PORT": "5050", "SERVE_PORT": "5051", "ARTIFACTS_PORT": "5052"}
    labelled = label_ports("127.0.0.1:5052, 127.0.0.1:5051, 0.0.0.0:9999", TOPOLOGIES["artifacts-only"], values)
    assert labelled == "127.0.0.1:5052 (ARTIFACTS_PORT), 127.0.0.1:5051 (SERVE_PORT), 0.0.0.0:9999"
    assert label_ports("", TOPOLOGIES["file"], {}) == ""


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_a_setting_that_is_not_a_number_is_one_line(monkeypatch, value):
    monkeypatch.setenv("MLFLOWKIT_UP_TIMEOUT", value)
    result = runner.invoke(app, ["env", "postgres-s3"])
    assert result.exit_code == 1
    assert f"error: MLFLOWKIT_UP_TIMEOUT='{value}'" in result.output
    assert "Traceback" not in result.output


def test_an_installed_kit_keeps_its_state_under_mlflowkit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOWKIT_HOME", str(tmp_path))
    settings = Settings()
    assert settings.env_file("proxied") == tmp_path / "proxied" / ".env"
    assert settings.data_dir("sqlite") == tmp_path / "sqlite" / "data"
    assert (settings.stack_dir("proxied") / "compose.yaml").is_file()
