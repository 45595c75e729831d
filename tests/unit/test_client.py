"""The client library against a local SQLite store and artifact directory: no engine, every call."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import mlflow
import mlflow.sklearn
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlflowkit.client import Client, Connection, model_uri
from mlflowkit.errors import KitError


@pytest.fixture(scope="module")
def iris():
    data = load_iris(as_frame=True)
    return data.data, LogisticRegression(max_iter=500).fit(data.data, data.target)


def local_connection(root: Path) -> Connection:
    return Connection(f"sqlite:///{root}/mlruns.db", artifact_location=f"file://{root}/artifacts")


@pytest.fixture
def client(tmp_path) -> Client:
    return Client(local_connection(tmp_path))


def test_experiments_get_or_create_tag_delete_restore_list(client):
    first = client.experiment("exp")
    assert client.experiment("exp") == first
    client.set_experiment_tags("exp", {"team": "platform"})
    assert client.get_experiment("exp").tags["team"] == "platform"
    client.delete_experiment("exp")
    assert "exp" not in [e.name for e in client.experiments()]
    client.restore_experiment("exp")
    assert "exp" in [e.name for e in client.experiments()]
    assert client.get_experiment("exp").artifact_location == client.connection.artifact_location


def test_run_logs_params_metrics_series_tags_and_artifacts(client, tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    with client.run("exp", run_name="r", tags={"owner": "me"}) as run:
        run.log_params({"lr": 0.1})
        run.log_metrics({"acc": 0.5, "f1": 0.4}, step=3)
        run.log_metric_series("loss", [3.0, 2.0, 1.0])
        run.set_tags({"stage": "test"})
        run.log_artifact(str(tmp_path / "b.txt"))
        run.log_artifacts(str(tmp_path / "dir"), "docs")
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.1"}
    assert got.data.metrics == {"acc": 0.5, "f1": 0.4, "loss": 1.0}
    assert got.data.tags["owner"] == "me" and got.data.tags["stage"] == "test"
    history = client.mlflow.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 3.0), (1, 2.0), (2, 1.0)]
    artifacts = Path(got.info.artifact_uri.removeprefix("file://"))
    assert (artifacts / "b.txt").read_text() == "b" and (artifacts / "docs" / "a.txt").read_text() == "a"


def test_a_run_that_raises_is_failed_and_the_error_propagates(client):
    with pytest.raises(ZeroDivisionError), client.run("exp") as run:
        1 / 0  # noqa: B018
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_experiment_name_comes_from_the_environment_like_mlflow(client, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    with client.run() as run:
        pass
    assert client.get_experiment("from-env").experiment_id == client.get_run(run.run_id).info.experiment_id


def test_search_returns_typed_rows_in_order_and_a_frame(client):
    for accuracy in (0.7, 0.95, 0.9):
        with client.run("search") as run:
            run.log_metrics({"accuracy": accuracy})
            run.log_params({"kind": "a" if accuracy > 0.8 else "b"})
    rows = client.search_runs("search", "metrics.accuracy > 0.8", order_by=["metrics.accuracy DESC"])
    assert [row.metrics["accuracy"] for row in rows] == [0.95, 0.9]
    assert rows[0].params["kind"] == "a" and rows[0].status == "FINISHED"
    frame = client.search_runs_frame("search", "params.kind = 'b'")
    assert list(frame["metrics.accuracy"]) == [0.7]
    assert client.search_runs("no-such-experiment") == []


def test_registry_versions_aliases_tags_stages_uris_and_download(client, iris):
    frame, model = iris
    with client.run("reg") as run:
        info = run.log_model(mlflow.sklearn, model, "model", input_example=frame.head(2))
    v1 = client.register(info.model_uri, "m")
    v2 = client.register(info.model_uri, "m")
    assert client.versions("m") == [v1, v2] == ["1", "2"]
    client.set_alias("m", "champion", v1)
    assert client.version_by_alias("m", "champion") == "1"
    client.set_version_tag("m", v1, "validated", "yes")
    client.set_model_tag("m", "owner", "platform")
    assert client.mlflow.get_model_version("m", v1).tags == {"validated": "yes"}
    assert client.mlflow.get_registered_model("m").tags == {"owner": "platform"}
    client.transition_stage("m", v2, "Production")
    assert client.model_uri("m", stage="Production") == "models:/m/Production"
    assert client.model_uri("m", alias="champion") == "models:/m@champion"
    assert client.model_uri("m", version=2) == "models:/m/2"
    local = client.download_model("m", alias="champion")
    assert (Path(local) / "MLmodel").is_file()
    predictions = client.load(client.model_uri("m", stage="Production")).predict(frame.head(5))
    assert list(predictions) == list(model.predict(frame.head(5)))
    client.delete_alias("m", "champion")
    with pytest.raises(KitError, match="champion"):
        client.model_uri("m", alias="champion")


def test_unknown_model_alias_and_version_are_clear_errors(client):
    with pytest.raises(KitError, match="no registered model 'ghost'"):
        client.model_uri("ghost", alias="champion")
    with pytest.raises(KitError, match="exactly one of alias, version or stage"):
        model_uri("m", alias="a", version=1)


def test_unreachable_server_fails_fast_and_says_what_was_tried():
    client = Client(Connection("http://127.0.0.1:9", timeout=5))
    with pytest.raises(KitError) as info:
        client.ping()
    assert "listing experiments failed (http://127.0.0.1:9)" in str(info.value)
    assert "is the stack up?" in str(info.value)


def test_two_connections_do_not_leak_into_each_other_or_the_process(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "the-users-own")
    a = Client(local_connection(tmp_path / "a"))
    b = Client(Connection(f"sqlite:///{tmp_path}/b.db", artifact_location=f"file://{tmp_path}/b-art",
                          s3_endpoint_url="http://127.0.0.1:1", aws_access_key_id="k", aws_secret_access_key="s"))
    before = mlflow.get_tracking_uri()
    with a.run("x") as run_a, b.run("x") as run_b:  # interleaved on purpose
        run_a.log_params({"who": "a"})
        run_b.log_params({"who": "b"})
        assert "MLFLOW_S3_ENDPOINT_URL" not in os.environ  # applied only during each call
    assert a.get_run(run_a.run_id).data.params == {"who": "a"}
    assert b.get_run(run_b.run_id).data.params == {"who": "b"}
    assert a.search_runs("x")[0].run_id == run_a.run_id and len(a.search_runs("x")) == 1
    assert mlflow.get_tracking_uri() == before
    assert os.environ["AWS_ACCESS_KEY_ID"] == "the-users-own"
    assert "MLFLOW_S3_ENDPOINT_URL" not in os.environ


def test_connection_from_env_and_for_the_process_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(KitError, match="MLFLOW_TRACKING_URI is not set"):
        Connection.from_env()
    env = {"MLFLOW_TRACKING_URI": "http://h:1", "MLFLOW_S3_ENDPOINT_URL": "http://s3",
           "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "SECRETEXAMPLE",
           "MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ca.pem"}
    conn = Connection.from_env(env)
    assert conn.server_cert_path == "/etc/ca.pem"
    assert conn.environ() == {**env, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    assert "EXAMPLE" not in repr(conn)  # keys stay out of logs and tracebacks
    assert Connection("file:///x").environ()["MLFLOW_ALLOW_FILE_STORE"] == "true"
    opted_in = Connection.from_env({**env, "MLFLOW_DISABLE_TELEMETRY": "false"})
    assert opted_in.telemetry and "DO_NOT_TRACK" not in opted_in.environ()


def test_403_from_allowed_hosts_is_explained():
    """A real HTTP server answering as MLflow's host check does: the error names --allowed-hosts."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            body = b"Invalid Host header - possible DNS rebinding attack detected"
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815 - MLflow searches with POST

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(Connection(f"http://127.0.0.1:{server.server_port}", timeout=5))
        with pytest.raises(KitError) as info:
            client.ping()
    finally:
        server.shutdown()
    assert "403" in str(info.value)
    assert "--allowed-hosts" in (info.value.hint or "")


def test_autolog_on_request_logs_into_the_run(client, iris):
    frame, _ = iris
    target = [0, 1, 2] * 50
    with client.run("auto", autolog=True) as run:
        LogisticRegression(max_iter=321).fit(frame, target)
    logged = client.get_run(run.run_id)
    assert logged.data.params.get("max_iter") == "321"
    assert logged.info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_s3_clients_are_not_shared_between_connections_with_other_keys(monkeypatch):
    """MLflow caches boto3 clients per endpoint; each connection must still sign with its own keys."""
    from mlflow.store.artifact.s3_artifact_repo import _get_s3_client

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    endpoint = "http://127.0.0.1:9"  # never contacted: building a client is enough
    a = Connection("http://127.0.0.1:1", s3_endpoint_url=endpoint, aws_access_key_id="KEY_A",
                   aws_secret_access_key="secret-a")
    b = Connection("http://127.0.0.1:1", s3_endpoint_url=endpoint, aws_access_key_id="KEY_B",
                   aws_secret_access_key="secret-b")
    keys = []
    for conn in (a, b, a):
        with conn.activate():
            keys.append(_get_s3_client()._request_signer._credentials.access_key)
    assert keys == ["KEY_A", "KEY_B", "KEY_A"]


def test_activate_leaves_the_process_environment_as_it_found_it(tmp_path, monkeypatch):
    """MLflow's URI setters write os.environ; a child process started after the block must not inherit them."""
    from mlflowkit.client import MANAGED_VARIABLES

    for key in MANAGED_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    before = dict(os.environ)
    with Connection(f"sqlite:///{tmp_path}/a.db").activate():
        assert os.environ["MLFLOW_TRACKING_URI"].endswith("a.db")
    assert dict(os.environ) == before


def test_from_env_reads_the_kits_artifact_location_and_environ_round_trips(tmp_path):
    conn = Connection(f"sqlite:///{tmp_path}/mlruns.db", artifact_location=f"file://{tmp_path}/mlartifacts")
    assert Connection.from_env(conn.environ()) == dataclasses.replace(conn, timeout=Connection.from_env(
        conn.environ()).timeout)
    assert conn.environ()["MLFLOWKIT_ARTIFACT_LOCATION"] == f"file://{tmp_path}/mlartifacts"


def test_the_callers_own_set_experiment_does_not_break_the_kits_runs(client, iris):
    """mlflow.set_experiment in the user's code is process-global; a kit run in another experiment still logs its
    model (MLflow's start_run(run_id=…) would refuse it), and the user's choice is still there afterwards."""
    from mlflow.tracking import fluent

    frame, model = iris
    with client.connection.activate():
        chosen = mlflow.set_experiment("the-users-own").experiment_id
    with client.run("the-kits") as run:
        info = run.log_model(mlflow.sklearn, model, "model", input_example=frame.head(2),
                             pip_requirements=["scikit-learn"])
    assert info.run_id == run.run_id and client.get_run(run.run_id).info.status == "FINISHED"
    assert fluent._active_experiment_id == chosen
    fluent._active_experiment_id = None  # this test's own choice, not left to the next test
