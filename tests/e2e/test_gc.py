"""`mlflowkit gc` on real stacks: a deleted run's artifacts are gone from the store afterwards (S3 objects or files),
its metadata too, and a kept run's artifacts stay."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from mlflowkit.client import Client
from mlflowkit.errors import KitError
from mlflowkit.gc import collect
from mlflowkit.topology import TOPOLOGIES
from mlflowkit.validate import _s3_location

pytestmark = pytest.mark.e2e


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stored(stack, uri: str) -> bool:
    if stack.topology.uses_s3:
        return stack.s3_object_exists(*_s3_location(uri, stack.env().get("S3_BUCKET", "mlflow")))
    return Path(uri.removeprefix("file://")).is_file()


@pytest.mark.parametrize("name", ["postgres-s3", "proxied", "artifacts-only", "server-file"])
def test_gc_deletes_a_deleted_runs_artifacts_and_keeps_the_others(name, make_stack, tmp_path):
    stack = make_stack(TOPOLOGIES[name])
    with pytest.raises(KitError, match="is not up"):
        collect(stack, log)
    stack.up()
    client = Client(stack.connection())
    artifact = tmp_path / "weights.txt"
    artifact.write_text("0.1 0.2 0.3\n")
    runs, uris = {}, {}
    for label in ("kept", "deleted"):
        with client.run("gc-proof", run_name=label) as run:
            run.log_artifact(str(artifact))
            runs[label] = run.run_id
        uris[label] = client.get_run(runs[label]).info.artifact_uri.rstrip("/") + "/weights.txt"
    assert all(stored(stack, uri) for uri in uris.values()), uris

    with client.connection.activate():
        client.mlflow.delete_run(runs["deleted"])
    output = collect(stack, log)
    assert not stored(stack, uris["deleted"]), f"{uris['deleted']} survived gc:\n{output}"
    assert stored(stack, uris["kept"])
    with pytest.raises(KitError, match="RESOURCE_DOES_NOT_EXIST|not found|No Run"), client.connection.activate():
        try:
            client.mlflow.get_run(runs["deleted"])
        except MlflowException as exc:
            raise KitError(str(exc)) from exc
    assert client.get_run(runs["kept"]).info.lifecycle_stage == "active"
