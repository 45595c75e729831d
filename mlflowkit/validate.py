"""Prove a stack works end to end, through the client library only.

Log params, metrics, an artifact and a scikit-learn model → register → alias → load and predict → serve and
predict over HTTP (served predictions must equal local ones) → check where metadata and artifacts landed.
Each step is timed; the first failure stops the pipeline (later steps need its result).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflowkit.client import Client, model_uri, to_jsonable
from mlflowkit.errors import KitError
from mlflowkit.stack import Stack
from mlflowkit.topology import ArtifactMode

EXPERIMENT = "mlflowkit-validation"
MODEL_NAME = "mlflowkit-validation"
ALIAS = "champion"


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class Report:
    topology: str
    steps: list[StepResult] = field(default_factory=list)
    run_id: str = ""  # what this validation created, for checks that come later (persistence)
    model_version: str = ""
    earlier_runs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def failure(self) -> StepResult | None:
        return next((step for step in self.steps if not step.ok), None)


@dataclass
class _State:
    """What the steps hand each other."""

    stack: Stack
    client: Client
    frame: Any = None
    expected: list[Any] | None = None
    run_id: str = ""
    model_id: str = ""
    version: str = ""
    earlier_runs: list[str] = field(default_factory=list)


Step = Callable[[_State], str]


def _train() -> tuple[Any, Any, list[Any]]:
    """A small model on a data set that ships with scikit-learn."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=500).fit(data.data, data.target)
    frame = data.data.iloc[::15].reset_index(drop=True)
    return model, frame, to_jsonable(model.predict(frame))


def step_connect(s: _State) -> str:
    s.client.ping()
    return s.client.connection.tracking_uri


def step_history(s: _State) -> str:
    s.earlier_runs = [run.info.run_id for run in s.client.search_runs(EXPERIMENT)]
    return f"{len(s.earlier_runs)} earlier run(s) in {EXPERIMENT!r}"


def step_log(s: _State) -> str:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model, s.frame, s.expected = _train()
    with s.client.run(EXPERIMENT, run_name="validation", tags={"mlflowkit.topology": s.stack.topology.name}) as run:
        s.run_id = run.run_id
        run.log_params({"model": "LogisticRegression", "max_iter": 500, "topology": s.stack.topology.name})
        for step in range(3):
            run.log_metrics({"accuracy": 0.9 + step / 100, "loss": 0.3 - step / 10}, step=step)
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "validation.json"
            report.write_text(json.dumps({"topology": s.stack.topology.name, "expected": s.expected}))
            run.log_artifact(str(report), "reports")
        info = run.log_model(mlflow.sklearn, model, "model", signature=infer_signature(s.frame, model.predict(s.frame)),
                             input_example=s.frame.head(3))
        s.model_id = info.model_id
    return f"run {s.run_id}, model {s.model_id}"


def step_register(s: _State) -> str:
    s.version = s.client.register(f"models:/{s.model_id}", MODEL_NAME)
    return f"{MODEL_NAME} v{s.version}"


def step_alias(s: _State) -> str:
    s.client.set_alias(MODEL_NAME, ALIAS, s.version)
    resolved = s.client.version_by_alias(MODEL_NAME, ALIAS)
    _expect(resolved == s.version, f"{MODEL_NAME}@{ALIAS} resolves to v{resolved}, not v{s.version}")
    return f"{MODEL_NAME}@{ALIAS} -> v{resolved}"


def step_load(s: _State) -> str:
    uri = model_uri(MODEL_NAME, alias=ALIAS)
    got = to_jsonable(s.client.load(uri).predict(s.frame))
    _expect(got == s.expected, f"{uri} predicts {got}, the trained model {s.expected}")
    return f"{uri}: {len(got)} predictions equal the trained model's"


def step_serve(s: _State) -> str:
    served = s.stack.serve()
    try:
        got = served.predict(s.frame)
    finally:
        s.stack.stop_serving()
    _expect(got == s.expected, f"served predictions {got} differ from local {s.expected}")
    return f"{served.url}/invocations: {len(got)} predictions equal local ones"


def step_artifacts_s3(s: _State) -> str:
    """The run's artifact and the model's files are objects in the bucket."""
    import boto3
    from botocore.config import Config

    run = s.client.get_run(s.run_id)
    logged = s.client.mlflow.get_logged_model(s.model_id)
    s3 = boto3.client("s3", endpoint_url=_host_s3_endpoint(s), aws_access_key_id=_env(s, "AWS_ACCESS_KEY_ID"),
                      aws_secret_access_key=_env(s, "AWS_SECRET_ACCESS_KEY"),
                      config=Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 2}))
    wanted = {
        "artifact": run.info.artifact_uri.rstrip("/") + "/reports/validation.json",
        "model": logged.artifact_location.rstrip("/") + "/MLmodel",
    }
    for what, uri in wanted.items():
        bucket, key = _split_s3(uri)
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - reported as the failed check
            raise KitError(f"{what} s3://{bucket}/{key} is not in the bucket: {exc}") from None
    return f"objects present under s3://{_split_s3(wanted['artifact'])[0]}/"


def step_metadata_postgres(s: _State) -> str:
    env = s.stack.env()
    sql = f"SELECT count(*) FROM runs WHERE run_uuid = '{s.run_id}'"
    out = s.stack.compose().exec(
        "postgres", ["psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"], "-tAc", sql]).strip()
    _expect(out == "1", f"PostgreSQL has {out or 'no'} row(s) for run {s.run_id}")
    return f"run {s.run_id} is a row in PostgreSQL"


def _env(s: _State, key: str) -> str:
    return s.stack.env()[key]


def _host_s3_endpoint(s: _State) -> str:
    return f"http://127.0.0.1:{_env(s, 'S3_PORT')}"


def _split_s3(uri: str) -> tuple[str, str]:
    _expect(uri.startswith("s3://"), f"expected an s3:// URI, got {uri}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise KitError(message)


def steps_for(stack: Stack) -> list[tuple[str, Step]]:
    """The common pipeline plus the topology's own "where did it land" checks."""
    topology = stack.topology
    steps: list[tuple[str, Step]] = [
        ("connect", step_connect),
        ("history", step_history),
        ("log", step_log),
        ("register", step_register),
        ("alias", step_alias),
        ("load+predict", step_load),
        ("serve+predict", step_serve),
    ]
    if topology.artifact_mode is ArtifactMode.CLIENT_S3:
        steps.append(("artifacts in S3", step_artifacts_s3))
    if topology.backend == "postgresql":
        steps.append(("run in PostgreSQL", step_metadata_postgres))
    return steps


def validate(stack: Stack, log: Callable[[str], None] | None = None) -> Report:
    """Run every step against ``stack``; a Report with one row per step (stops at the first failure)."""
    log = log or stack.log
    report = Report(stack.topology.name)
    state = _State(stack=stack, client=Client(stack.connection()))
    for name, step in steps_for(stack):
        started = time.monotonic()
        try:
            detail, ok = step(state), True
        except KitError as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # noqa: BLE001 - any failure is this step's FAIL, with its cause
            detail, ok = f"{type(exc).__name__}: {exc}", False
        result = StepResult(name, ok, time.monotonic() - started, detail)
        report.steps.append(result)
        log(f"validate {stack.topology.name}: {name:<18} {'PASS' if ok else 'FAIL'} {result.seconds:6.1f} s  {detail}")
        if not ok:
            break
    report.run_id, report.model_version, report.earlier_runs = state.run_id, state.version, state.earlier_runs
    return report
