"""The pytest plugin for real, as another project runs it: a small test session in its own process against one
topology (postgres-s3: the quickest), with --mlflow-workspaces (auth and workspaces: the plugin without them runs
in CI's example project, .ci/example.sh) — its tests pass, two people each in their own workspace do not see each
other's runs, a failing test's report carries the services' logs, and afterwards nothing of its Compose project is
left (containers, volumes, networks)."""

from __future__ import annotations

import os
import re

import pytest

from mlflowkit.docker import run
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES

pytestmark = pytest.mark.e2e
pytest_plugins = ["pytester"]
# pytester points HOME at a temporary directory; Docker finds its Compose plugin under the real ~/.docker.
DOCKER_CONFIG = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")

USER_TESTS = """
import mlflow
import pytest


def test_client_logs_and_finds_the_run(mlflow_client):
    with mlflow_client.run("plugin-e2e") as run:
        run.log_metrics({"accuracy": 0.9})
    assert [r.metrics for r in mlflow_client.search_runs("plugin-e2e")] == [{"accuracy": 0.9}]


def test_plain_mlflow_client(mlflow_tracking, mlflow_environ, tmp_path):
    assert mlflow.get_tracking_uri() == mlflow_environ["MLFLOW_TRACKING_URI"]
    mlflow.set_experiment("plugin-e2e-plain")
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "note.txt")  # postgres-s3: the client writes S3 with the stack's keys
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="note.txt", dst_path=tmp_path)
    assert open(path).read() == "hello"


def test_people_each_in_their_workspace(mlflow_person, mlflow_connection):
    from mlflowkit.client import Client
    from mlflowkit.errors import KitError

    carol = mlflow_person("carol", workspace="vision")
    assert (carol.username, carol.workspace) == ("carol", "vision") and carol.password != mlflow_connection.password
    with Client(carol).run("vision-work") as run:
        run.log_params({"by": "carol"})
    dave = Client(mlflow_person("dave", workspace="nlp"))
    assert "vision-work" not in {e.name for e in dave.experiments()}
    with pytest.raises(KitError, match="403|PERMISSION_DENIED|Permission denied"):
        dave.get_run(run.run_id)
    assert mlflow_person("carol", workspace="vision") == carol  # made once per session
    assert Client(carol).get_run(run.run_id).data.params == {"by": "carol"}


def test_fails_deliberately(mlflow_stack):
    assert False, "deliberately failing"
"""


def project_leftovers(project: str) -> dict[str, str]:
    label = f"label=com.docker.compose.project={project}"
    found = {
        "containers": run(["docker", "ps", "--all", "--quiet", "--filter", label], timeout=60).stdout,
        "volumes": run(["docker", "volume", "ls", "--quiet", "--filter", label], timeout=60).stdout,
        "networks": run(["docker", "network", "ls", "--quiet", "--filter", label], timeout=60).stdout,
    }
    return {kind: ids for kind, ids in found.items() if ids.strip()}


def test_users_session_passes_reports_logs_and_leaves_nothing(pytester: pytest.Pytester, monkeypatch, e2e_settings):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # loaded by name below, installed entry point or not
    monkeypatch.setenv("DOCKER_CONFIG", DOCKER_CONFIG)
    prefix = f"mlflowkit-e2e-plugin-{os.getpid()}"
    project = f"{prefix}-postgres-s3"
    pytester.makepyfile(test_user=USER_TESTS)
    try:
        result = pytester.runpytest_subprocess(
            "-p", "mlflowkit.pytest_plugin", "--mlflow-topology", "postgres-s3", "--mlflow-project-prefix", prefix,
            "--mlflow-log-lines", "50", "--mlflow-workspaces", timeout=900)
        output = result.stdout.str()
        result.assert_outcomes(passed=3, failed=1)
        # The failing test's report: its own assertion, then the services' logs (each service's prefix).
        failure = output.split("test_fails_deliberately", 1)[1]
        assert "deliberately failing" in failure
        logs = failure.split(f"- mlflow stack postgres-s3 ({project}) logs -", 1)[1]
        for service in ("mlflow-1", "postgres-1", "s3-1"):
            assert re.search(rf"^{service} +\| ", logs, flags=re.M), logs[:3000]
        assert f"postgres-s3: project {project}, up in " in output
        assert project_leftovers(project) == {}
    finally:
        stack = Stack(TOPOLOGIES["postgres-s3"], Settings(project_prefix=prefix))
        if stack.states() or stack.volumes():
            stack.down(volumes=True)
