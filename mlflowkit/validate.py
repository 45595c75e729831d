"""Prove a stack works end to end, through the client library only.

Log params, metrics, an artifact and a scikit-learn model → register → alias → load and predict → serve and
predict over HTTP (served predictions must equal local ones) → check where metadata and artifacts landed.
Each step is timed; the first failure stops the pipeline (later steps need its result).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflowkit import workspaces
from mlflowkit.client import TELEMETRY_OFF, Client, model_uri, to_jsonable
from mlflowkit.errors import KitError
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import DATABASE_SERVICE, ArtifactMode, Backend

EXPERIMENT = "mlflowkit-validation"
MODEL_NAME = "mlflowkit-validation"
ALIAS = "champion"
TRACE_NAME = "mlflowkit-validation-trace"
# The trace validation logs: a root span and its child, each with an attribute of its own (names, parents and
# attributes are read back and compared with this).
TRACE_SPANS = {TRACE_NAME: None, "features": TRACE_NAME}
TRACE_ROWS = 3


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str
    logs: str = ""  # on failure: what the failing command or service printed last


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
    trace_id: str = ""
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


# MLflow's own quickstart as a newcomer types it: no experiment chosen, so the run goes to the store's Default one.
QUICKSTART = """\
import mlflow
with mlflow.start_run() as run:
    mlflow.log_param("alpha", 0.5)
    mlflow.log_metric("rmse", 0.25)
print(run.info.run_id, run.info.experiment_id)
"""


def step_quickstart(s: _State) -> str:
    """MLflow's quickstart in a new process whose environment is only what a plain client of the topology needs
    (`mlflowkit env`): a fresh stack must take a run without an experiment being set first."""
    env = {key: value for key, value in os.environ.items() if key in _KEEP} | TELEMETRY_OFF
    env |= s.client.connection.environ()
    timeout = s.stack.settings.client_timeout * 2
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run([sys.executable, "-c", QUICKSTART], env=env, cwd=tmp, capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise KitError(f"MLflow's quickstart outlived {timeout:.0f} s.") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise KitError(f"MLflow's quickstart (no experiment set) failed: {last}", details=done.stderr[-3000:])
    run_id, experiment_id = done.stdout.split()[-2:]
    run = s.client.get_run(run_id)
    _expect(run.data.params == {"alpha": "0.5"} and run.data.metrics == {"rmse": 0.25},
            f"the quickstart's run {run_id} holds {run.data.params} {run.data.metrics}")
    with s.client.connection.activate():
        import mlflow

        default = mlflow.MlflowClient().get_experiment(experiment_id)
    _expect(default.name == "Default", f"the quickstart's run went to {default.name!r}, not to 'Default'")
    return f"run {run_id} in experiment {experiment_id} ({default.name}) with nothing but `mlflowkit env`"


def step_history(s: _State) -> str:
    s.earlier_runs = [run.run_id for run in s.client.search_runs(EXPERIMENT)]
    return f"{len(s.earlier_runs)} earlier run(s) in {EXPERIMENT!r}"


def step_log(s: _State) -> str:
    import mlflow.sklearn
    import sklearn
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
        # Requirements given, not inferred: inference costs ~5 s and lists every ML package installed (torch).
        info = run.log_model(mlflow.sklearn, model, "model", signature=infer_signature(s.frame, model.predict(s.frame)),
                             input_example=s.frame.head(3), pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
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
    with s.stack.serving() as served:
        got = served.predict(s.frame)
    _expect(got == s.expected, f"served predictions {got} differ from local {s.expected}")
    return f"{served.url}/invocations: {len(got)} predictions equal local ones"


def _traced_pipeline(topology: str) -> str:
    """Two nested functions under MLflow's ``@mlflow.trace``, as a plain client writes them; the trace's id."""
    import mlflow

    @mlflow.trace(span_type="TOOL")
    def features(rows: int) -> list[int]:
        span = mlflow.get_current_active_span()
        if span is not None:  # None only if tracing is off: then the read-back fails, saying so
            span.set_attributes({"mlflowkit.rows": rows})
        return list(range(rows))

    @mlflow.trace(name=TRACE_NAME, attributes={"mlflowkit.topology": topology})
    def pipeline(rows: int) -> int:
        return sum(features(rows))

    pipeline(TRACE_ROWS)
    trace_id = mlflow.get_last_active_trace_id()
    _expect(bool(trace_id), "@mlflow.trace recorded no trace (is tracing disabled in this environment?)")
    return str(trace_id)


def trace_problems(spans: list[Any], topology: str) -> list[str]:
    """What differs between a trace's spans as read back and the ones :func:`_traced_pipeline` logged."""
    by_name = {span.name: span for span in spans}
    problems = []
    if sorted(by_name) != sorted(TRACE_SPANS) or len(spans) != len(TRACE_SPANS):
        problems.append(f"spans {sorted(span.name for span in spans)}, expected {sorted(TRACE_SPANS)}")
    for name, parent in TRACE_SPANS.items():
        span = by_name.get(name)
        want = by_name[parent].span_id if parent in by_name else None
        if span is not None and span.parent_id != want:
            problems.append(f"span {name!r} has parent {span.parent_id}, expected {want} ({parent or 'none'})")
    root, child = by_name.get(TRACE_NAME), by_name.get("features")
    if root is not None and root.attributes.get("mlflowkit.topology") != topology:
        problems.append(f"root attribute mlflowkit.topology={root.attributes.get('mlflowkit.topology')!r}")
    if child is not None:
        if child.attributes.get("mlflowkit.rows") != TRACE_ROWS:
            problems.append(f"child attribute mlflowkit.rows={child.attributes.get('mlflowkit.rows')!r}")
        if child.outputs != list(range(TRACE_ROWS)):
            problems.append(f"child outputs {child.outputs!r}")
    return problems


def step_trace(s: _State) -> str:
    """A trace of nested spans logged by ``@mlflow.trace``, read back whole and found by search_traces."""
    name = s.stack.topology.name
    with s.client.tracing(EXPERIMENT):
        s.trace_id = _traced_pipeline(name)
    trace = s.client.get_trace(s.trace_id)
    state = str(getattr(trace.info.state, "value", trace.info.state))
    _expect(state == "OK", f"trace {s.trace_id} has state {state}, not OK")
    problems = trace_problems(list(trace.data.spans), name)
    _expect(not problems, f"trace {s.trace_id} read back differs: " + "; ".join(problems))
    found = [t.info.trace_id for t in s.client.search_traces(EXPERIMENT, f"trace.name = '{TRACE_NAME}'")]
    _expect(s.trace_id in found, f"search_traces(name = {TRACE_NAME!r}) misses {s.trace_id} ({len(found)} found)")
    return f"trace {s.trace_id}: {len(trace.data.spans)} nested spans and their attributes read back, found by search"


_TRACE_ID = re.compile(r"tr-[0-9a-f]{32}")


def _trace_rows_sql(trace_id: str) -> str:
    """One query: the trace's trace_info rows and span rows, as "<traces> <spans>" (spans land in the database
    when the store logs spans itself: the trace's tag mlflow.trace.spansLocation = TRACKING_STORE)."""
    _expect(bool(_TRACE_ID.fullmatch(trace_id)), f"unexpected trace id {trace_id!r}")
    return (f"SELECT (SELECT count(*) FROM trace_info WHERE request_id = '{trace_id}') || ' ' || "
            f"(SELECT count(*) FROM spans WHERE trace_id = '{trace_id}')")


def _expect_trace_rows(out: str, trace_id: str, where: str) -> str:
    expected = f"1 {len(TRACE_SPANS)}"
    _expect(out.strip() == expected, f"{where} has (trace rows, span rows) = ({out.strip()}) for {trace_id}, "
            f"expected ({expected})")
    return f"trace {trace_id}: 1 trace_info row and {len(TRACE_SPANS)} span rows in {where}"


def step_trace_sqlite(s: _State) -> str:
    import sqlite3

    db = Path(s.stack.env()["MLFLOW_DATA_DIR"]) / str(s.stack.topology.backend.local_path)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        out = conn.execute(_trace_rows_sql(s.trace_id)).fetchone()[0]
    return _expect_trace_rows(out, s.trace_id, str(db))


def step_trace_postgres(s: _State) -> str:
    env = s.stack.env()
    out = s.stack.compose().exec(
        DATABASE_SERVICE,
        ["psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"], "-tAc", _trace_rows_sql(s.trace_id)])
    return _expect_trace_rows(out, s.trace_id, "PostgreSQL")


def step_trace_file(s: _State) -> str:
    """A file store cannot hold spans: the client wrote them as traces.json where the trace's artifact location
    tag says, which must be on disk under MLFLOW_DATA_DIR."""
    data = Path(s.stack.env()["MLFLOW_DATA_DIR"])
    location = s.client.get_trace(s.trace_id).info.tags.get("mlflow.artifactLocation", "")
    path = Path(location.removeprefix("file://")) / "traces.json"
    _expect(path.is_file(), f"trace {s.trace_id}: {path} (its artifact location) is not on disk")
    _expect(data in path.parents, f"trace {s.trace_id}: {path} is outside MLFLOW_DATA_DIR {data}")
    spans = json.loads(path.read_text()).get("spans", [])
    _expect(len(spans) == len(TRACE_SPANS), f"{path} holds {len(spans)} span(s), expected {len(TRACE_SPANS)}")
    return f"trace {s.trace_id}: {len(spans)} spans in {path}"


def report_dir(settings: Settings, topology: str) -> Path:
    """Where a validation keeps what it shows besides its table (the UI screenshot): <home>/.logs/validation/."""
    return Path(settings.home) / ".logs" / "validation" / topology


def step_ui(s: _State) -> str:
    """The published UI in a headless browser shows the experiment, the run's metrics, the model's version and
    alias and the trace; every call the page makes succeeds and goes to the stack's own address."""
    from mlflowkit import ui

    run = s.client.get_run(s.run_id)
    connection = s.client.connection
    target = ui.Target(
        base_url=s.stack.ui_url(), experiment=EXPERIMENT, experiment_id=run.info.experiment_id, run_id=s.run_id,
        run_name=run.info.run_name, metrics=dict(run.data.metrics), model=MODEL_NAME, version=s.version,
        alias=ALIAS, trace_id=s.trace_id, spans=tuple(TRACE_SPANS), file_store=s.stack.topology.backend is Backend.FILE,
        ca_file=connection.server_cert_path, username=connection.username, password=connection.password,
        workspace=connection.workspace or (workspaces.DEFAULT if s.stack.workspaces_enabled else None))
    screenshot = report_dir(s.stack.settings, s.stack.topology.name) / "run-page.png"
    return ui.check(target, screenshot, timeout=min(connection.timeout, 30))  # a page shows in ~3 s


REQUEST_COUNTER = "mlflow_http_request_total"  # prometheus-flask-exporter's counter of an --expose-prometheus server
SCRAPE_WAIT = 30.0  # seconds: Prometheus scrapes every 5 s (stacks/common/metrics.yaml)


def target_problems(answer: dict, expected: tuple[str, ...] = (), replicas: int | None = None,
                    stores: tuple[str, ...] = ()) -> list[str]:
    """Prometheus' ``/api/v1/targets`` answer: there is a target, each of ``expected`` (``host:port``, the
    topology's servers) and of ``stores`` (the stores it scrapes, SeaweedFS) is one, there are ``replicas`` server
    targets (a replicated topology: one per replica; the stores not counted), and every target is up."""
    targets = answer.get("data", {}).get("activeTargets", [])
    if not targets:
        return ["Prometheus has no active scrape target"]
    instances = [t.get("labels", {}).get("instance") for t in targets]
    missing = [f"{target} is not scraped" for target in (*expected, *stores) if target not in instances]
    servers = len([instance for instance in instances if instance not in stores])
    if replicas is not None and servers != replicas:
        missing.append(f"Prometheus scrapes {servers} server(s), the stack runs {replicas} replicas")
    return missing + [f"{t.get('scrapeUrl')} is {t.get('health')}: {t.get('lastError') or 'not scraped yet'}"
                      for t in targets if t.get("health") != "up"]


def query_value(answer: dict) -> float:
    """The single value of an instant ``/api/v1/query`` answer (``sum(...)``); 0 when there is no sample yet."""
    result = answer.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else 0.0


def check_targets(stack: Stack, timeout: float) -> int:
    """Every MLflow server of the stack and every store it scrapes (SeaweedFS) is a Prometheus target, scraped
    and up; the number of targets. Waits while a target has not been scraped yet (at most SCRAPE_WAIT); a target
    down is a KitError naming it."""
    import requests

    # A replicated server is one name with several addresses (its replicas): counted, not named.
    values = stack.env()
    expected = () if stack.topology.replicas else stack.topology.metrics_targets(values)
    replicas = sum(int(values.get(r.variable) or r.default) for r in stack.topology.replicas) or None
    deadline = time.monotonic() + SCRAPE_WAIT
    while True:
        answer = requests.get(f"{stack.metrics_url()}/api/v1/targets", params={"state": "active"}, timeout=timeout)
        answer.raise_for_status()
        problems = target_problems(answer.json(), expected, replicas, stack.topology.store_metrics_targets)
        pending = any(t.get("health") == "unknown" for t in answer.json()["data"]["activeTargets"])
        if not problems or not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    if problems:
        raise KitError(f"Prometheus: {'; '.join(problems)}",
                       hint=f"`mlflowkit status {stack.topology.name}`; the targets: {stack.metrics_url()}/targets")
    return len(answer.json()["data"]["activeTargets"])


def step_metrics(s: _State) -> str:
    """With the `metrics` profile: every MLflow server (and the stores scraped, SeaweedFS) is a target and up,
    and the servers' request counter moves when the client makes requests (read back through Prometheus, on its
    published port)."""
    import requests

    timeout = s.client.connection.timeout
    count = check_targets(s.stack, timeout)

    def counter() -> float:
        answer = requests.get(f"{s.stack.metrics_url()}/api/v1/query", params={"query": f"sum({REQUEST_COUNTER})"},
                              timeout=timeout)
        answer.raise_for_status()
        return query_value(answer.json())

    before = counter()
    for _ in range(3):
        s.client.ping()
    deadline = time.monotonic() + SCRAPE_WAIT
    while (after := counter()) <= before:
        _expect(time.monotonic() < deadline, f"{REQUEST_COUNTER} stayed at {before:.0f} in Prometheus for "
                f"{SCRAPE_WAIT:.0f} s after 3 requests")
        time.sleep(1)
    return f"{count} target(s) up; {REQUEST_COUNTER} {before:.0f} -> {after:.0f}"


def _artifact_uris(s: _State) -> dict[str, str]:
    """Where the server says the run's artifact and the model's files are."""
    run = s.client.get_run(s.run_id)
    logged = s.client.logged_model(s.model_id)
    return {
        "artifact": run.info.artifact_uri.rstrip("/") + "/reports/validation.json",
        "model": logged.artifact_location.rstrip("/") + "/MLmodel",
    }


def step_artifacts_s3(s: _State) -> str:
    """The run's artifact and the model's files are objects in the bucket (asked from inside the stack)."""
    bucket = s.stack.env().get("S3_BUCKET", "mlflow")
    keys = {what: _s3_location(uri, bucket) for what, uri in _artifact_uris(s).items()}
    for what, (bucket, key) in keys.items():
        if not s.stack.s3_object_exists(bucket, key):
            raise KitError(f"{what} s3://{bucket}/{key} is not in the bucket")
    return "objects present: " + ", ".join(f"s3://{b}/{k}" for b, k in keys.values())


def step_artifacts_local(s: _State) -> str:
    """The run's artifact and the model's files are on disk, inside the stack's data directory."""
    data = Path(s.stack.env()["MLFLOW_DATA_DIR"])
    for what, uri in _artifact_uris(s).items():
        _expect(uri.startswith("file://"), f"{what} URI {uri} is not a local file URI")
        path = Path(uri[len("file://"):])
        _expect(path.is_file(), f"{what} {path} is not on disk")
        _expect(data in path.parents, f"{what} {path} is outside MLFLOW_DATA_DIR {data}")
    return f"artifact and model files under {data}"


def step_metadata_file(s: _State) -> str:
    run = s.client.get_run(s.run_id)
    store = Path(s.stack.env()["MLFLOW_DATA_DIR"]) / str(s.stack.topology.backend.local_path)
    meta = store / run.info.experiment_id / s.run_id / "meta.yaml"
    _expect(meta.is_file(), f"{meta} does not exist")
    return f"{meta}"


def step_metadata_sqlite(s: _State) -> str:
    import sqlite3

    db = Path(s.stack.env()["MLFLOW_DATA_DIR"]) / str(s.stack.topology.backend.local_path)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        runs = conn.execute("SELECT count(*) FROM runs WHERE run_uuid = ?", (s.run_id,)).fetchone()[0]
        models = conn.execute("SELECT count(*) FROM registered_models WHERE name = ?", (MODEL_NAME,)).fetchone()[0]
    _expect(runs == 1, f"{db} has {runs} row(s) for run {s.run_id}")
    _expect(models == 1, f"{db} has {models} row(s) for registered model {MODEL_NAME}")
    return f"run and registered model are rows in {db}"


def step_metadata_postgres(s: _State) -> str:
    env = s.stack.env()
    sql = f"SELECT count(*) FROM runs WHERE run_uuid = '{s.run_id}'"
    out = s.stack.compose().exec(
        DATABASE_SERVICE, ["psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"], "-tAc", sql]).strip()
    _expect(out == "1", f"PostgreSQL has {out or 'no'} row(s) for run {s.run_id}")
    return f"run {s.run_id} is a row in PostgreSQL"


def step_no_s3_credentials(s: _State) -> str:
    """This process (the client) has no S3 keys or endpoint, and boto3 finds no credentials anywhere."""
    import boto3

    leaked = sorted(k for k in os.environ if k in _S3_CLIENT_VARIABLES)
    _expect(not leaked, f"the client environment holds {', '.join(leaked)}")
    _expect(boto3.Session().get_credentials() is None, "boto3 finds S3 credentials (a profile or config file)")
    _expect(not s.client.connection.s3_endpoint_url, "the connection carries an S3 endpoint")
    return "no AWS_* keys, no MLFLOW_S3_ENDPOINT_URL; boto3 finds no credentials"


def step_artifact_uris(s: _State) -> str:
    """Artifact URIs go through MLflow's artifact proxy (the tracking server, or the artifacts server)."""
    uris = _artifact_uris(s)
    if s.stack.topology.artifact_mode is ArtifactMode.PROXIED:
        prefix = "mlflow-artifacts:/"
    else:
        env = s.stack.env()
        prefix = f"mlflow-artifacts://{env.get('ARTIFACTS_HOST', '127.0.0.1')}:{env['ARTIFACTS_PORT']}/"
    for what, uri in uris.items():
        _expect(uri.startswith(prefix), f"{what} URI {uri} does not start with {prefix}")
    # MLflow 3 clients move bytes through presigned S3 URLs when the artifact server advertises multipart
    # support; those URLs name the stack's internal S3 endpoint, which clients cannot reach.
    server = prefix.replace("mlflow-artifacts://", "http://") if "//" in prefix else s.stack.ui_url()
    info = _get_json(f"{server.rstrip('/')}/api/3.0/mlflow/server-info", s.client.connection.timeout,
                     s.client.connection.server_cert_path or True)
    advertised = [k for k in ("multipart_uploads_enabled", "multipart_downloads_enabled") if info.get(k)]
    _expect(not advertised, f"{server} advertises {', '.join(advertised)}: clients would get presigned S3 URLs")
    return f"artifact URIs start with {prefix}; {server} advertises no presigned transfers"


def step_anonymous_refused(s: _State) -> str:
    """With --auth: a request without credentials may not write, a wrong password may not read."""
    import requests

    base, timeout = s.stack.ui_url(), s.client.connection.timeout
    verify = s.client.connection.server_cert_path or True  # an https stack's own CA (ha)
    anonymous = requests.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": "anonymous-write"},
                              timeout=timeout, verify=verify).status_code
    wrong = requests.get(f"{base}/api/2.0/mlflow/experiments/search?max_results=1",
                         auth=(s.client.connection.username or "admin", "wrong-password"), timeout=timeout,
                         verify=verify).status_code
    _expect(anonymous == 401, f"an anonymous experiments/create answered {anonymous}, not 401")
    _expect(wrong == 401, f"a wrong password answered {wrong}, not 401")
    detail = f"anonymous write: 401; wrong password: 401; validated as {s.client.connection.username}"
    if s.stack.topology.artifact_mode is ArtifactMode.ARTIFACTS_SERVER:  # the artifacts server is locked too
        url = f"http://127.0.0.1:{s.stack.env()['ARTIFACTS_PORT']}/api/2.0/mlflow-artifacts/artifacts/anonymous.txt"
        upload = requests.put(url, data=b"x", timeout=timeout).status_code
        _expect(upload == 401, f"an anonymous upload to the artifacts server answered {upload}, not 401")
        detail += "; anonymous artifact upload: 401"
    return detail


def _get_json(url: str, timeout: float, verify: str | bool = True) -> dict:
    import requests

    response = requests.get(url, timeout=timeout, verify=verify)
    _expect(response.status_code == 200, f"GET {url} answered {response.status_code}")
    return response.json()


def step_tracking_refused(s: _State) -> str:
    """The artifacts-only server answers artifact calls only."""
    import requests

    url = f"http://127.0.0.1:{s.stack.env()['ARTIFACTS_PORT']}/api/2.0/mlflow/experiments/search?max_results=1"
    status = requests.get(url, timeout=s.client.connection.timeout).status_code
    _expect(status >= 400, f"GET {url} answered {status}; an artifacts-only server must refuse it")
    return f"experiments/search on the artifacts server: HTTP {status}"


_S3_CLIENT_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                        "MLFLOW_S3_ENDPOINT_URL")


def _s3_location(uri: str, bucket: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI, or of an mlflow-artifacts URI whose server writes to ``bucket``."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return parsed.netloc, parsed.path.lstrip("/")
    _expect(parsed.scheme == "mlflow-artifacts", f"expected an s3:// or mlflow-artifacts: URI, got {uri}")
    return bucket, parsed.path.lstrip("/")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise KitError(message)


def ui_wanted(ui: bool | None) -> bool:
    """The rule for the ``ui`` step: asked for (True) or not (False); None: when a browser is installed."""
    if ui is not None:
        return ui
    from mlflowkit import ui as browser

    return browser.available()


def steps_for(stack: Stack, ui: bool | None = None, metrics: bool | None = None) -> list[tuple[str, Step]]:
    """The common pipeline plus the topology's own "where did it land" checks, then the UI in a browser (see
    :func:`ui_wanted`) and Prometheus' view (``metrics``; None: when the stack runs its `metrics` profile)."""
    topology = stack.topology
    proxied = topology.artifact_mode in (ArtifactMode.PROXIED, ArtifactMode.ARTIFACTS_SERVER)
    steps: list[tuple[str, Step]] = [("no S3 credentials", step_no_s3_credentials)] if proxied else []
    steps += [
        ("connect", step_connect),
        ("quickstart", step_quickstart),
        ("history", step_history),
        ("log", step_log),
        ("register", step_register),
        ("alias", step_alias),
        ("load+predict", step_load),
        ("serve+predict", step_serve),
    ]
    if stack.auth_enabled:
        steps.append(("anonymous refused", step_anonymous_refused))
    if proxied:
        steps.append(("artifact URIs", step_artifact_uris))
    if topology.artifact_mode is ArtifactMode.ARTIFACTS_SERVER:
        steps.append(("tracking refused", step_tracking_refused))
    if topology.artifact_mode is ArtifactMode.LOCAL:
        steps.append(("artifacts on disk", step_artifacts_local))
    else:
        steps.append(("artifacts in S3", step_artifacts_s3))
    steps.append({
        Backend.FILE: ("run in file store", step_metadata_file),
        Backend.SQLITE: ("run in SQLite", step_metadata_sqlite),
        Backend.POSTGRESQL: ("run in PostgreSQL", step_metadata_postgres),
    }[topology.backend])
    steps.append(("trace", step_trace))
    steps.append({  # a SQL store keeps spans in rows; a file store has the client write them as an artifact
        Backend.FILE: ("trace on disk", step_trace_file),
        Backend.SQLITE: ("trace in SQLite", step_trace_sqlite),
        Backend.POSTGRESQL: ("trace in PostgreSQL", step_trace_postgres),
    }[topology.backend])
    if metrics or (metrics is None and stack.metrics_running):
        steps.append(("metrics", step_metrics))
    if ui_wanted(ui):
        steps.append(("ui", step_ui))
    return steps


def validate(stack: Stack, log: Callable[[str], None] | None = None, ui: bool | None = None,
             only: Collection[str] | None = None) -> Report:
    """Run every step against ``stack``; a Report with one row per step (stops at the first failure).

    ``ui``: check the UI in a headless browser (True: it fails when no browser is installed; False: not checked;
    None: when one is installed, else a log line says it is not checked and how to install one).
    ``only``: the names of the steps to run (in the pipeline's order), e.g. to fill a stack with the validation's
    run, model and alias without serving it; a name the topology has no step for is an error.
    """
    steps = steps_for(stack, ui)
    if only is not None:
        unknown = set(only) - {name for name, _ in steps}
        if unknown:
            raise KitError(f"validation of {stack.topology.name} has no step {', '.join(sorted(unknown))}.")
        steps = [(name, step) for name, step in steps if name in only]
    log = log or stack.log
    report = Report(stack.topology.name)
    state = _State(stack=stack, client=Client(stack.connection()))
    if not ui_wanted(ui) and only is None:
        from mlflowkit.ui import INSTALL_HINT, SELENIUM_HINT, find_browser

        hint = INSTALL_HINT if find_browser() is None else SELENIUM_HINT
        log(f"validate {stack.topology.name}: the UI is not checked in a browser"
            + (f" (none found). Hint: {hint}" if ui is None else " (asked not to)"))
    for name, step in steps:
        started = time.monotonic()
        logs = ""
        try:
            detail, ok = step(state), True
        except KitError as exc:
            detail, ok, logs = str(exc), False, (exc.details or "")[-3000:]
        except Exception as exc:  # noqa: BLE001 - any failure is this step's FAIL, with its cause
            detail, ok = f"{type(exc).__name__}: {exc}", False
        result = StepResult(name, ok, time.monotonic() - started, detail, logs)
        report.steps.append(result)
        log(f"validate {stack.topology.name}: {name:<19} {'PASS' if ok else 'FAIL'} {result.seconds:6.1f} s  {detail}")
        if not ok:
            break
    report.run_id, report.model_version, report.earlier_runs = state.run_id, state.version, state.earlier_runs
    return report


# --- a validation in a clean process --------------------------------------------------------------------

# What a child keeps of this process's environment: where programs and the engine are, nothing of MLflow/AWS.
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT",
         "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "VIRTUAL_ENV")


def clean_environment(settings: Settings) -> dict[str, str]:
    """A plain client's environment: no MLflow, S3 or AWS variables, no AWS config files, no metadata service."""
    env = {key: value for key, value in os.environ.items() if key in _KEEP}
    env.update(settings.environ())
    env.update(AWS_CONFIG_FILE="/nonexistent/mlflowkit-aws-config",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent/mlflowkit-aws-credentials",
               AWS_EC2_METADATA_DISABLED="true", PYTHONUNBUFFERED="1", **TELEMETRY_OFF)
    return env


def validate_isolated(stack: Stack, ui: bool | None = None) -> Report:
    """Run :func:`validate` in a child process with :func:`clean_environment`: proves what the client needs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "mlflowkit.validate", stack.topology.name, str(out),
                {True: "ui", False: "no-ui", None: "auto"}[ui]]
        try:
            # cwd: a scratch directory, so nothing MLflow writes by default (./mlruns, mlflow.db) lands
            # where the user runs the command.
            subprocess.run(argv, env=clean_environment(stack.settings), stdout=sys.stderr, check=False,
                           timeout=stack.settings.validate_timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise KitError(f"validation of {stack.topology.name} outlived {stack.settings.validate_timeout:.0f} s.",
                           details=stack.logs(tail=40)) from None
        if not out.exists():
            raise KitError(f"the validation process for {stack.topology.name} ended without a report.")
        data = json.loads(out.read_text())
    return Report(**{**data, "steps": [StepResult(**step) for step in data["steps"]]})


def validate_all(settings: Settings, log: Callable[[str], None], ui: bool | None = None) -> list[Report]:
    """Bring up, validate and take down every topology, one at a time (a 2-core machine runs one stack well).

    A topology that does not come up is a report with a failed ``up`` step (its cause and the services' logs),
    and the next topology still runs. Stacks the user already had running are validated and left running.
    """
    from mlflowkit.topology import TOPOLOGIES

    reports = []
    for topology in TOPOLOGIES.values():
        stack = Stack(topology, settings, log=log)
        was_up = any(s.state == "running" for s in stack.states())
        started = time.monotonic()
        try:
            stack.up()
            reports.append(validate_isolated(stack, ui=ui))
        except KitError as exc:
            step = "up" if not any(s.state == "running" for s in stack.states()) else "validate"
            reports.append(Report(topology.name, [StepResult(step, False, time.monotonic() - started, str(exc),
                                                             (exc.details or "")[-3000:])]))
            log(f"validate {topology.name}: {step} FAILED: {exc}")
        finally:
            if not was_up and stack.states():
                stack.down()  # leave running only what the user had running
    return reports


def main(argv: list[str]) -> None:
    """``python -m mlflowkit.validate <topology> <report.json> [ui|no-ui|auto]``: validate, write the report as
    JSON."""
    from mlflowkit import topology

    name, out, *rest = argv
    ui = {"ui": True, "no-ui": False}.get(rest[0] if rest else "auto")
    report = validate(Stack(topology.get(name), Settings()), ui=ui)
    Path(out).write_text(json.dumps(asdict(report)))


if __name__ == "__main__":
    main(sys.argv[1:])
