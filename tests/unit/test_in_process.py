"""The server plugin's in-process launch (stacks/images/mlflow/plugin/mlflowkit_server/in_process.py) without an
engine: which spawns it takes, what MLflow's real CLI hands it, and a real server started through it on this host
(one process, MLflow's security middleware in place, a clean stop). Every stack's servers run it (tests/e2e)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "stacks" / "images" / "mlflow" / "plugin"
sys.path.insert(0, str(PLUGIN))
from mlflowkit_server import in_process  # noqa: E402

UVICORN = [sys.executable, "-m", "uvicorn", "--port", "5000", "mlflow.server.fastapi_app:app"]
# As in the image, where /opt/mlflow/bin is on PATH: this interpreter's scripts (uvicorn) are found first.
THIS_PYTHONS_PATH = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"


@pytest.mark.parametrize(("command", "synchronous", "env", "taken"), [
    (UVICORN, False, {}, True),                                     # MLflow 3.17's `mlflow server`
    (UVICORN, True, {}, False),                                     # a launcher that waits for its child
    (["gunicorn", "-b", "0.0.0.0:5000", "mlflow.server:app"], True, {}, False),  # MLflow 2.x
    (["uvicorn", *UVICORN[3:]], False, {}, False),                  # another interpreter's uvicorn
    (UVICORN, False, {in_process.JOB_QUEUE: "/dev/shm/x"}, False),  # a job runner starts beside it
])
def test_servable(command, synchronous, env, taken):
    assert in_process.servable(command, synchronous, env) is taken


@pytest.mark.parametrize(("module", "again"), [
    ("mlflow.server", True), ("mlflow.server.auth", True), ("prometheus_client.values", True),
    ("prometheus_flask_exporter", True), ("mlflow.store.db.utils", False), ("mlflow.serverless", False),
])
def test_what_is_imported_again_under_the_servers_environment(module, again):
    assert in_process.reimported(module) is again


def test_the_job_queue_variable_is_mlflows():
    from mlflow.server.constants import HUEY_STORAGE_PATH_ENV_VAR

    assert in_process.JOB_QUEUE == HUEY_STORAGE_PATH_ENV_VAR


def test_mlflow_server_hands_its_uvicorn_command_to_this_process(tmp_path, monkeypatch):
    import mlflow.server
    from mlflow.cli import cli

    def spawn(cmd, *args, **kwargs):  # MLflow's own spawn, reached only if the launcher does not take the command
        raise AssertionError(f"MLflow would spawn its server itself: {cmd}")

    monkeypatch.setattr(mlflow.server, "_exec_cmd", spawn)  # MLflow's put back after the test
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    environ = dict(os.environ)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    in_process.intercept()
    try:
        with pytest.raises(in_process.Launch) as info:
            cli.main(["server", "--backend-store-uri", uri, "--port", "5999", "--workers", "1"],
                     prog_name="mlflow", standalone_mode=False)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    launch = info.value
    assert launch.command[:3] == in_process.UVICORN
    assert launch.command[-1] == "mlflow.server.fastapi_app:app"
    assert launch.command[launch.command.index("--port") + 1] == "5999"
    assert launch.env["_MLFLOW_SERVER_FILE_STORE"] == uri


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@contextmanager
def launched(args: list[str], ready: str, tmp_path: Path, **env: str) -> Iterator[str]:
    """``python -m <args>`` with the plugin on the path, until ``ready`` (a URL) answers 200; yields it with the
    process checked to have no child. Afterwards: SIGTERM, and a clean uvicorn shutdown of this very process."""
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", *args], env={**os.environ, "PYTHONPATH": str(PLUGIN), **env},
                                  cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(ready)[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, f"the server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no answer in 60 s:\n{log.read_text()}"
            time.sleep(0.2)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert children == [], f"the server spawned {children}:\n{log.read_text()}"
        yield ready
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then raises the signal again (as a container's PID 1 it is then ignored: exit 0).
        assert server.wait(timeout=20) in (0, -signal.SIGTERM), log.read_text()
        text = log.read_text()
        assert f"Started server process [{server.pid}]" in text and "Application shutdown complete" in text
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


def test_a_server_started_through_the_plugin_serves_in_one_process(tmp_path):
    """Without --app-name basic-auth and --expose-prometheus, whose packages this client does not install: the
    server image runs both (tests/e2e/test_in_process.py)."""
    from mlflowkit.serving import free_port

    base = f"http://127.0.0.1:{free_port()}"
    args = ["mlflowkit_server.prepare", "mlflow", "server", "--host", "127.0.0.1", "--port", base.rsplit(":", 1)[1],
            "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    with launched(args, f"{base}/health", tmp_path, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"):
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(search)[0] == 200
        # mlflow.server read the server's environment when imported again: its Host check is in place.
        assert _get(search, host="evil.example")[0] == 403


@pytest.mark.parametrize(("cmd", "taken"), [
    (["bash", "-c", f"exec uvicorn --host 0.0.0.0 --port 5001 --workers 2 {in_process.SCORING_APP}"],
     [*in_process.UVICORN, "--host", "0.0.0.0", "--port", "5001", "--workers", "2", in_process.SCORING_APP]),
    (["bash", "-c", f"uvicorn --port 5001 {in_process.SCORING_APP}"], None),         # not exec'd: not MLflow's
    (["bash", "-c", "exec uvicorn --port 5001 other:app"], None),                     # another app
    (["bash", "-c", f"exec gunicorn {in_process.SCORING_APP}"], None),
    (f"exec uvicorn {in_process.SCORING_APP}", None),                                 # a shell string (Windows)
])
def test_which_scoring_server_commands_are_taken(cmd, taken):
    assert in_process.scoring_command(cmd, {"PATH": THIS_PYTHONS_PATH}) == taken


def test_a_scoring_server_of_another_interpreter_is_left_to_mlflow(tmp_path):
    other = tmp_path / "bin"
    other.mkdir()
    (other / "uvicorn").write_text("#!/bin/sh\n")
    (other / "uvicorn").chmod(0o755)
    cmd = ["bash", "-c", f"exec uvicorn {in_process.SCORING_APP}"]
    assert in_process.scoring_command(cmd, {"PATH": f"{other}:{THIS_PYTHONS_PATH}"}) is None


def test_mlflow_models_serve_serves_in_one_process(tmp_path):
    """`mlflow models serve --env-manager local` through the launcher, as the stacks' serving service runs it: a
    real scikit-learn model answers /invocations from the launcher's own process."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    from mlflowkit.serving import free_port

    model = LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0], [0.1, 0.0], [0.9, 1.0]], [0, 1, 0, 1])
    mlflow.sklearn.save_model(model, str(tmp_path / "model"))
    base = f"http://127.0.0.1:{free_port()}"
    args = ["mlflowkit_server.in_process", "mlflow", "models", "serve", "-m", str(tmp_path / "model"),
            "--env-manager", "local", "--host", "127.0.0.1", "--port", base.rsplit(":", 1)[1]]
    with launched(args, f"{base}/ping", tmp_path, PATH=THIS_PYTHONS_PATH):
        body = json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[0.0, 0.1], [1.0, 0.9]]}}).encode()
        request = urllib.request.Request(f"{base}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"predictions": [0, 1]}
