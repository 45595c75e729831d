"""The project's MLflow code against real stacks: train, log, register, serve and predict on each topology.

`mlflow_tracking` points plain MLflow at the stack for the test; `mlflow_client` and `mlflow_connection` are the
kit's client for checking what landed there; `serve_local` runs `mlflow models serve` on the registered model.
"""

import mlflow
import pytest
from iris_model import publish, train

from mlflowkit import serve_local

# Every test of this module, once per topology (narrow it with `pytest --mlflow-topology proxied`).
pytestmark = pytest.mark.mlflow_topology("proxied", "postgres-s3")


def test_train_publish_serve_predict(mlflow_tracking, mlflow_client, mlflow_connection):
    model, x_test, y_test = train()
    uri = publish(model, x_test, y_test, "iris-classifier")
    expected = model.predict(x_test).tolist()

    assert uri == mlflow_client.model_uri("iris-classifier", alias="champion")
    version = mlflow_client.version_by_alias("iris-classifier", "champion")
    assert version in mlflow_client.versions("iris-classifier")
    [run] = mlflow_client.search_runs("iris")
    assert run.metrics["accuracy"] > 0.9

    assert mlflow_client.load(uri).predict(x_test).tolist() == expected
    with serve_local(uri, mlflow_connection) as served:
        assert served.predict(x_test) == expected


def test_a_new_version_moves_the_alias(mlflow_tracking, mlflow_client):
    first = publish(*train(seed=1), "iris-retrained")
    before = mlflow_client.version_by_alias("iris-retrained", "champion")
    assert publish(*train(seed=2), "iris-retrained") == first
    assert int(mlflow_client.version_by_alias("iris-retrained", "champion")) == int(before) + 1


def test_plain_client_environment(mlflow_environ, mlflow_topology):
    """What a separate process (a training job, a notebook) would be given."""
    assert mlflow_environ["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    # proxied: the server moves artifact bytes, the client holds no S3 keys; postgres-s3: the client writes S3.
    assert ("AWS_ACCESS_KEY_ID" in mlflow_environ) == (mlflow_topology == "postgres-s3")
    assert mlflow.get_tracking_uri() != mlflow_environ["MLFLOW_TRACKING_URI"]  # os.environ untouched here
