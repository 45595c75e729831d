"""The image's launcher (stacks/images/mlflow/plugin/mlflowkit_server/in_process.py) in the real images: the server
with the two options whose packages read the server's environment at import and that the unit test's client cannot
run, `--app-name basic-auth` and `--expose-prometheus`, with one worker (the server is then the launcher's own
process; the stacks' metrics test runs two, which uvicorn spawns afresh); and `mlflow models serve` in the serving
image."""

from __future__ import annotations

import os
import time

import pytest
import requests

from mlflowkit import images
from mlflowkit.docker import run
from mlflowkit.serving import free_port

pytestmark = pytest.mark.e2e

ADMIN = ("admin", "in-process-e2e-password-1")


def answers_in_one_process(container: str, url: str) -> None:
    """Until ``url`` answers 200 (60 s at most; the container's log on failure); then the container runs one
    process: the launcher serving, no child beside it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        logs = run(["docker", "logs", "--tail", "40", container], timeout=30)
        assert time.monotonic() < deadline, f"no answer in 60 s:\n{logs.stdout}{logs.stderr}"
        time.sleep(0.5)
    rows = run(["docker", "top", container], timeout=30).stdout.strip().splitlines()[1:]
    assert len(rows) == 1, "\n".join(rows)


def test_auth_and_metrics_work_when_the_server_is_the_launchers_own_process(e2e_settings):
    image = images.names(e2e_settings, "mlflow")[0]
    port = free_port()
    name = f"mlflowkit-e2e-in-process-{os.getpid()}"
    environment = {"MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0], "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
                   "MLFLOW_FLASK_SERVER_SECRET_KEY": "in-process-e2e-secret",
                   "MLFLOW_SERVER_ALLOWED_HOSTS": "localhost:*,127.0.0.1:*"}
    variables = [arg for key, value in environment.items() for arg in ("--env", f"{key}={value}")]
    run(["docker", "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:5000", *variables, image,
         "python", "-m", "mlflowkit_server.in_process", "mlflow", "server", "--host", "0.0.0.0", "--port", "5000",
         "--workers", "1", "--backend-store-uri", "sqlite:////tmp/mlflow.db", "--app-name", "basic-auth",
         "--expose-prometheus", "/run/mlflow-metrics"], timeout=60)
    try:
        base = f"http://127.0.0.1:{port}"
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        answers_in_one_process(name, f"{base}/health")
        assert requests.get(search, timeout=10).status_code == 401
        assert requests.get(search, auth=ADMIN, timeout=10).status_code == 200
        assert requests.get(search, auth=ADMIN, headers={"Host": "evil.example"}, timeout=10).status_code == 403
        metrics = requests.get(f"{base}/metrics", auth=ADMIN, timeout=10)
        # Counted in the multiprocess directory that /metrics reads: prometheus_client was imported again under the
        # server's environment (imported before it, it would count in memory and /metrics would be empty).
        assert metrics.status_code == 200 and "mlflow_http_request_total" in metrics.text, metrics.text[:2000]
    finally:
        run(["docker", "rm", "--force", name], timeout=60)


def test_the_serving_image_serves_a_model_in_the_launchers_own_process(e2e_settings, tmp_path):
    """`mlflow models serve` as the stacks' serving service runs it, in the serving image: its uvicorn is the
    launcher's interpreter's, so the scoring server runs in the launcher's process (not a child beside the CLI)."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    image = images.names(e2e_settings, "mlflow-serving")[0]
    model = LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0], [0.1, 0.0], [0.9, 1.0]], [0, 1, 0, 1])
    mlflow.sklearn.save_model(model, str(tmp_path / "model"))
    port = free_port()
    name = f"mlflowkit-e2e-in-process-serve-{os.getpid()}"
    run(["docker", "create", "--name", name, "--publish", f"127.0.0.1:{port}:5001", image, "python", "-m",
         "mlflowkit_server.in_process", "mlflow", "models", "serve", "-m", "/tmp/model", "--env-manager", "local",
         "--host", "0.0.0.0", "--port", "5001"], timeout=60)
    try:
        run(["docker", "cp", str(tmp_path / "model"), f"{name}:/tmp/model"], timeout=60)
        run(["docker", "start", name], timeout=60)
        base = f"http://127.0.0.1:{port}"
        answers_in_one_process(name, f"{base}/ping")
        rows = {"dataframe_split": {"columns": ["a", "b"], "data": [[0.0, 0.1], [1.0, 0.9]]}}
        got = requests.post(f"{base}/invocations", json=rows, timeout=10)
        assert got.status_code == 200 and got.json() == {"predictions": [0, 1]}, got.text[:500]
    finally:
        run(["docker", "rm", "--force", name], timeout=60)
