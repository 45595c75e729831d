"""Runs inside a client venv of any MLflow version the kit has pins for (2.22 … 3.17), as a separate process
with a plain environment (MLFLOW_TRACKING_URI and, for postgres-s3, the S3 endpoint and keys).

    python old_client_script.py write PREFIX MODEL     fill the stack; print the snapshot of what it wrote
    python old_client_script.py read  < written.json   print the same snapshot, read back for the same ids

A snapshot is every field the upgrade must keep: experiments (name, tags, stage, artifact location), runs (name,
status, times, stage, params, tags, each metric's whole history, every artifact's SHA-256), the registered model
(description, tags, aliases, each version's run, source, tags, description) and the champion's predictions.
Only the standard library, MLflow and what MLflow installs (pandas, scikit-learn) are imported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import tempfile

import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

ALIAS = "champion"
ROWS = [0, 25, 50, 75, 100, 125, 149]  # iris rows the champion predicts: every class


def _iris():
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    return data.data, data.target


def _log_model(model, frame):
    """``log_model`` as the running MLflow spells it (3.x: ``name``; 2.x: ``artifact_path``)."""
    keyword = "name" if int(mlflow.__version__.split(".")[0]) >= 3 else "artifact_path"
    return mlflow.sklearn.log_model(model, **{keyword: "model"}, input_example=frame.head(2),
                                    pip_requirements=["scikit-learn", "pandas"])


def write(prefix: str, model_name: str) -> dict:
    from sklearn.linear_model import LogisticRegression

    client = MlflowClient()
    rng = random.Random(13)
    frame, target = _iris()
    experiments = [client.create_experiment(f"{prefix}-{team}", tags={"team": team, "purpose": "upgrade"})
                   for team in ("a", "b")]
    runs, versions = [], []
    for index in range(4):
        experiment = experiments[index % 2]
        with mlflow.start_run(experiment_id=experiment, run_name=f"{prefix}-run-{index}") as run:
            mlflow.log_params({"alpha": str(0.5 + index), "layers": str(index + 2), "optimizer": "sgd"})
            mlflow.set_tags({"owner": f"team-{'ab'[index % 2]}", "index": str(index)})
            for step in range(6):  # whole histories: several steps, explicit timestamps
                stamp = 1_700_000_000_000 + 1000 * (10 * index + step)
                mlflow.log_metric("loss", 1.0 / (step + 1) + index, step=step, timestamp=stamp)
                mlflow.log_metric("accuracy", 0.5 + step / 20, step=step, timestamp=stamp + 1)
            with tempfile.TemporaryDirectory() as tmp:
                with open(os.path.join(tmp, "readme.txt"), "w") as handle:
                    handle.write(f"run {index} of {prefix}\n")
                with open(os.path.join(tmp, "blob.bin"), "wb") as handle:
                    handle.write(bytes(rng.getrandbits(8) for _ in range(4096)))
                mlflow.log_artifact(os.path.join(tmp, "readme.txt"), "notes")
                mlflow.log_artifact(os.path.join(tmp, "blob.bin"), "data/raw")
            mlflow.log_dict({"index": index, "features": list(frame.columns)}, "config.json")
            if index < 2:  # two model versions, from runs 0 and 1
                model = LogisticRegression(C=1.0 if index == 0 else 0.05, max_iter=300).fit(frame, target)
                info = _log_model(model, frame)
                version = mlflow.register_model(info.model_uri, model_name)
                versions.append(str(version.version))  # an int in MLflow 2
            runs.append(run.info.run_id)
    client.delete_run(runs[3])  # a deleted run stays deleted (and keeps its data) across the upgrade
    client.update_registered_model(model_name, description="the model an upgrade must keep")
    client.set_registered_model_tag(model_name, "domain", "iris")
    for version in versions:
        client.update_model_version(model_name, version, description=f"version {version}")
        client.set_model_version_tag(model_name, version, "validated", "yes" if version == "1" else "no")
    client.set_registered_model_alias(model_name, ALIAS, versions[0])
    client.set_registered_model_alias(model_name, "challenger", versions[1])
    return {"experiment_ids": experiments, "run_ids": runs, "model_name": model_name}


def snapshot(ids: dict) -> dict:
    """Everything about the written ids, read through this process's MLflow client."""
    client = MlflowClient()
    name = ids["model_name"]
    frame, _ = _iris()
    sample = frame.iloc[ROWS]
    # Loaded first: loading may write a file beside a model kept on a local disk (registered_model_meta).
    champion = mlflow.pyfunc.load_model(f"models:/{name}@{ALIAS}")
    experiments = {}
    for experiment_id in ids["experiment_ids"]:
        experiment = client.get_experiment(experiment_id)
        experiments[experiment_id] = {"name": experiment.name, "tags": dict(experiment.tags),
                                      "lifecycle_stage": experiment.lifecycle_stage,
                                      "artifact_location": experiment.artifact_location}
    found = {run.info.run_id for run in client.search_runs(ids["experiment_ids"], run_view_type=ViewType.ALL)}
    runs = {run_id: _run(client, run_id) for run_id in ids["run_ids"] if run_id in found}
    model = client.get_registered_model(name)
    versions = {}
    for version in client.search_model_versions(f"name='{name}'"):
        versions[str(version.version)] = {"run_id": version.run_id, "source": version.source,
                                     "tags": dict(version.tags), "description": version.description,
                                     "status": version.status}
    return {
        "experiments": experiments,
        "runs": runs,
        "model": {"name": model.name, "description": model.description, "tags": dict(model.tags),
                  "aliases": {alias: str(number) for alias, number in model.aliases.items()},
                  "versions": versions, "champion": str(client.get_model_version_by_alias(name, ALIAS).version)},
        "predict": {"input": json.loads(sample.to_json(orient="split", index=False)),
                    "output": [int(value) for value in champion.predict(sample)]},
    }


def _run(client: MlflowClient, run_id: str) -> dict:
    run = client.get_run(run_id)
    metrics = {key: sorted([m.step, m.timestamp, m.value] for m in client.get_metric_history(run_id, key))
               for key in run.data.metrics}
    return {
        "experiment_id": run.info.experiment_id, "run_name": run.info.run_name, "status": run.info.status,
        "start_time": run.info.start_time, "end_time": run.info.end_time,
        "lifecycle_stage": run.info.lifecycle_stage, "artifact_uri": run.info.artifact_uri,
        "params": dict(run.data.params), "tags": dict(run.data.tags), "metrics": metrics,
        "artifacts": _artifacts(client, run_id),
    }


def _artifacts(client: MlflowClient, run_id: str) -> dict[str, str]:
    """Every file under the run's artifact root: its SHA-256, read back through the client's artifact repository
    (built from the URI alone: MLflow 3.1's client hands the tracking URI to S3 as an access key otherwise)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(client.get_run(run_id).info.artifact_uri)
    digests: dict[str, str] = {}
    pending: list[str | None] = [None]
    while pending:
        for item in repository.list_artifacts(pending.pop()):
            if item.is_dir:
                pending.append(item.path)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                local = repository.download_artifacts(item.path, tmp)
                with open(local, "rb") as handle:
                    digests[item.path] = hashlib.sha256(handle.read()).hexdigest()
    return dict(sorted(digests.items()))


def main(argv: list[str]) -> None:
    if argv[:1] == ["write"]:
        ids = write(argv[1], argv[2])
    elif argv[:1] == ["read"]:
        ids = json.load(sys.stdin)["ids"]
    else:
        raise SystemExit(__doc__)
    result = {"ids": ids, "mlflow_version": mlflow.__version__, "snapshot": snapshot(ids)}
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
