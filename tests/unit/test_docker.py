"""The Docker CLI runner: argv building, and failures that carry the command and its output."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlflowkit import docker
from mlflowkit.errors import CommandError, CommandTimeout, ComposeMissing, EngineNotRunning


def test_compose_argv_has_project_files_env_file_and_profiles():
    compose = docker.Compose(files=(Path("a.yaml"), Path("b.yaml")), project="mlflowkit-x",
                             env_file=Path("s/.env"), profiles=("serve",))
    assert compose.base_argv == ["docker", "compose", "--project-name", "mlflowkit-x", "--file", "a.yaml",
                                 "--file", "b.yaml", "--env-file", "s/.env", "--profile", "serve"]


def test_compose_argv_skips_what_is_unset():
    assert docker.Compose(files=(Path("c.yaml"),), project="p").base_argv == [
        "docker", "compose", "--project-name", "p", "--file", "c.yaml"]


def test_failed_command_carries_argv_exit_code_and_stderr():
    argv = [sys.executable, "-c", "import sys; print('out'); sys.exit('boom: it broke')"]
    with pytest.raises(CommandError) as info:
        docker.run(argv, timeout=30)
    err = info.value
    assert err.argv == argv and err.returncode == 1
    assert err.stdout.strip() == "out" and "boom: it broke" in err.stderr
    assert "boom: it broke" in str(err)


def test_timeout_is_a_command_error_saying_so():
    with pytest.raises(CommandTimeout, match="timed out after 1 s"):
        docker.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)


def test_missing_program_is_exit_127():
    with pytest.raises(CommandError) as info:
        docker.run(["mlflowkit-no-such-program"], timeout=5)
    assert info.value.returncode == 127


@pytest.mark.parametrize("text,expected", [("v2.40.3", (2, 40, 3)), ("2.24.0-desktop.1", (2, 24, 0)),
                                           ("", (0,)), ("garbage", (0,))])
def test_parse_version(text, expected):
    assert docker.parse_version(text) == expected


def fake_docker(tmp_path: Path, monkeypatch, script: str) -> None:
    """A `docker` on PATH that runs ``script`` (a real program, standing in for a machine without an engine)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def test_no_engine_is_reported_as_such(tmp_path, monkeypatch):
    fake_docker(tmp_path, monkeypatch, 'echo "Cannot connect to the Docker daemon" >&2; exit 1\n')
    with pytest.raises(EngineNotRunning, match="no Docker engine answers") as info:
        docker.check_engine()
    assert "Cannot connect" in info.value.details


def test_old_compose_is_refused(tmp_path, monkeypatch):
    fake_docker(tmp_path, monkeypatch, 'case "$1" in info) echo 28.0;; compose) echo v2.20.0;; esac\n')
    with pytest.raises(ComposeMissing, match="found v2.20.0"):
        docker.check_engine()


def test_run_lines_hands_over_each_line_and_fails_with_the_tail():
    from mlflowkit.docker import run_lines

    seen: list[str] = []
    run_lines(["sh", "-c", "echo one; echo two >&2"], timeout=10, on_line=seen.append)
    assert seen == ["one", "two"]
    with pytest.raises(CommandError) as info:
        run_lines(["sh", "-c", "echo broken; exit 3"], timeout=10, on_line=lambda line: None)
    assert info.value.returncode == 3 and "broken" in info.value.stderr
    with pytest.raises(CommandTimeout):
        run_lines(["sleep", "5"], timeout=0.5, on_line=lambda line: None)


def test_feed_writes_stdin_returns_stdout_and_fails_with_stderr():
    from mlflowkit.docker import feed

    assert feed(["cat"], lambda stdin: stdin.write(b"bytes in"), timeout=10) == "bytes in"
    with pytest.raises(CommandError) as info:
        feed(["sh", "-c", "echo nope >&2; exit 2"], lambda stdin: stdin.write(b"x" * 2**20), timeout=10)
    assert info.value.returncode == 2 and "nope" in info.value.stderr
    with pytest.raises(CommandTimeout):
        feed(["sleep", "5"], lambda stdin: None, timeout=0.5)
