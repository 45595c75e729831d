"""The bundled client library: connect to any MLflow server (or a kit stack), track, register, serve.

A :class:`Connection` holds everything a client needs (tracking URI, optional registry URI and S3 endpoint and
keys). MLflow keeps some of that in process-global state (``mlflow.set_tracking_uri``, S3 variables read from
``os.environ``); :meth:`Connection.activate` applies it for the duration of a ``with`` block and restores what
was there before, under a lock, so two connections used in one process do not leak into each other.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mlflowkit.errors import KitError

# Fail fast instead of MLflow's default of 7 retries with exponential back-off (minutes on a dead server).
_FAST_FAILURE = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "AWS_MAX_ATTEMPTS": "3",
}
# Where a client-only SQLite stack keeps artifacts (MLflow has no variable for it; `mlflowkit env sqlite` prints
# this one, and Connection.from_env reads it, so new experiments land beside the database, not in ./mlruns).
ARTIFACT_LOCATION_VARIABLE = "MLFLOWKIT_ARTIFACT_LOCATION"
# Every variable activate() may set; all of them are saved and restored (and a served model does not inherit them).
MANAGED_VARIABLES = (
    ARTIFACT_LOCATION_VARIABLE,
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_WORKSPACE",
    "MLFLOW_ALLOW_FILE_STORE",
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    *_FAST_FAILURE,
)
# MLflow 3 clients send usage telemetry unless one of these is set; a self-hosted (often air-gapped) stack's
# clients do not, unless a Connection says telemetry=True (MLFLOW_DISABLE_TELEMETRY=false in from_env).
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
_LOCK = threading.RLock()
_last_s3_identity: list[tuple[str | None, str | None]] = [(None, None)]


def _forget_s3_clients_on_switch(identity: tuple[str | None, str | None]) -> None:
    """MLflow caches boto3 clients by endpoint, and boto3's default session caches the credentials it first
    found in the environment: a connection with other keys would sign with the previous one's. Drop both when
    the identity changes."""
    if identity != _last_s3_identity[0]:
        import boto3
        from mlflow.store.artifact import s3_artifact_repo

        boto3.DEFAULT_SESSION = None  # boto3 makes a new one, reading the environment again

        cache = getattr(s3_artifact_repo, "_cached_get_s3_client", None)
        if cache is not None and hasattr(cache, "cache_clear"):
            cache.cache_clear()
        _last_s3_identity[0] = identity


def _set_environ(values: Mapping[str, str | None]) -> None:
    """Set (None: remove) only the variables whose value changes: every write to the process environment is
    a setenv() that other threads' getenv() may race with, so activate() makes as few as it can."""
    for key, value in values.items():
        if value is None:
            if key in os.environ:
                del os.environ[key]
        elif os.environ.get(key) != value:
            os.environ[key] = value


@dataclass(frozen=True)
class Connection:
    """How to reach one MLflow deployment."""

    tracking_uri: str
    registry_uri: str | None = None
    s3_endpoint_url: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    username: str | None = None  # MLflow basic auth (`mlflowkit up --auth`)
    password: str | None = field(default=None, repr=False)
    # A CA bundle (PEM) that signed an https tracking server's certificate, when the system store does not hold it.
    server_cert_path: str | None = None
    # Where new experiments keep artifacts when the store has no server to decide (SQLite: else ./mlruns).
    artifact_location: str | None = None
    timeout: float = 60  # seconds per HTTP request
    telemetry: bool = False  # True: MLflow's usage telemetry is left as MLflow has it (on)
    workspace: str | None = None  # MLflow's workspace (`up --workspaces`); None: the server's default

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Connection:
        """The connection a plain MLflow client would use: ``MLFLOW_TRACKING_URI`` and friends."""
        env = os.environ if environ is None else environ
        uri = env.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise KitError(
                "MLFLOW_TRACKING_URI is not set.",
                hint="export it (e.g. `eval \"$(mlflowkit env postgres-s3)\"`) or pass a tracking URI.",
            )
        return cls(
            tracking_uri=uri,
            registry_uri=env.get("MLFLOW_REGISTRY_URI") or None,
            s3_endpoint_url=env.get("MLFLOW_S3_ENDPOINT_URL") or None,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            username=env.get("MLFLOW_TRACKING_USERNAME") or None,
            password=env.get("MLFLOW_TRACKING_PASSWORD") or None,
            server_cert_path=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
            artifact_location=env.get(ARTIFACT_LOCATION_VARIABLE) or None,
            telemetry=env.get("MLFLOW_DISABLE_TELEMETRY", "").lower() in ("false", "0", "no"),
            workspace=env.get("MLFLOW_WORKSPACE") or None,
        )

    def environ(self) -> dict[str, str]:
        """The environment variables a separate client process needs (what `mlflowkit env` prints)."""
        values = {"MLFLOW_TRACKING_URI": self.tracking_uri}
        optional = {
            "MLFLOW_REGISTRY_URI": self.registry_uri,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
            "MLFLOW_TRACKING_SERVER_CERT_PATH": self.server_cert_path,
            "MLFLOW_WORKSPACE": self.workspace,
        }
        values.update({k: v for k, v in optional.items() if v})
        if self.artifact_location:
            values[ARTIFACT_LOCATION_VARIABLE] = self.artifact_location
        if self.tracking_uri.startswith("file:") or "://" not in self.tracking_uri:
            values["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow >= 3.13 refuses file stores without it
        if not self.telemetry:
            values.update(TELEMETRY_OFF)
        return values

    @contextmanager
    def activate(self) -> Iterator[Connection]:
        """Apply this connection to MLflow's process-global state for the block, then restore it."""
        import mlflow

        with _LOCK:
            saved_env = {key: os.environ.get(key) for key in MANAGED_VARIABLES}
            saved_uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
            _set_environ({key: None for key in MANAGED_VARIABLES} | _FAST_FAILURE
                         | {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(self.timeout))} | self.environ())
            _forget_s3_clients_on_switch((self.s3_endpoint_url, self.aws_access_key_id))
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)
            try:
                yield self
            finally:
                # URIs first: MLflow's setters also write MLFLOW_*_URI into os.environ, which the environment
                # restore below then undoes (else MLflow's default sqlite URIs leak into child processes).
                mlflow.set_tracking_uri(saved_uris[0])
                mlflow.set_registry_uri(saved_uris[1])
                _set_environ(saved_env)


@contextmanager
def _experiment_set_aside() -> Iterator[None]:
    """MLflow's fluent ``start_run(run_id=…)`` refuses a run of another experiment than the one the caller's own
    code chose with ``mlflow.set_experiment`` (process-global). The kit names its run explicitly, so that choice is
    set aside for the block and put back after it."""
    from mlflow.tracking import fluent

    with _LOCK:
        saved = fluent._active_experiment_id
        fluent._active_experiment_id = None
        try:
            yield
        finally:
            fluent._active_experiment_id = saved


@contextmanager
def explain(action: str, connection: Connection) -> Iterator[None]:
    """Turn MLflow, HTTP and S3 failures into one KitError saying what was tried and why it failed."""
    try:
        yield
    except KitError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure gets the same treatment: say what was tried
        raise KitError(f"{action} failed ({connection.tracking_uri}): {_reason(exc)}", hint=_hint(exc)) from exc


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"


def _hint(exc: BaseException) -> str | None:
    text = str(exc)
    name = type(exc).__name__
    if "401" in text and ("auth" in text.lower() or "Unauthorized" in text):
        return "the server requires a login (--auth): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "\
            "(`mlflowkit env <topology>` prints them)."
    if "403" in text and ("Host" in text or "host" in text or "Forbidden" in text):
        return "the server's --allowed-hosts refuses this Host header; add it there (MLFLOW_ALLOWED_HOSTS in .env)."
    if name in ("NoCredentialsError", "PartialCredentialsError") or "Unable to locate credentials" in text:
        return "this topology has the client write S3 itself: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "\
            "MLFLOW_S3_ENDPOINT_URL (`mlflowkit env <topology>` prints them)."
    if "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower():
        return "check the experiment, model name, version or alias (`mlflowkit` registers 'mlflowkit-validation')."
    if "Connection refused" in text or "Max retries exceeded" in text or "NewConnectionError" in text:
        return "is the stack up? `mlflowkit status` shows it; `mlflowkit up <topology>` starts it."
    return None


def model_uri(name: str, *, alias: str | None = None, version: str | int | None = None,
              stage: str | None = None) -> str:
    """``models:/`` URI of a registered model by exactly one of alias, version or (legacy) stage."""
    given = [x for x in (alias, version, stage) if x is not None]
    if len(given) != 1:
        raise KitError(f"model_uri({name!r}) needs exactly one of alias, version or stage; got {len(given)}.")
    if alias is not None:
        return f"models:/{name}@{alias}"
    if version is not None:
        return f"models:/{name}/{version}"
    return f"models:/{name}/{stage}"


def to_jsonable(value: Any) -> Any:
    """Predictions as plain Python values, so local and served results compare equal."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


@dataclass(frozen=True)
class RunRow:
    """One run as search returns it: plain values, no MLflow entities."""

    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


class Client:
    """Tracking and registry calls against one :class:`Connection`; every call fails with a KitError."""

    def __init__(self, connection: Connection) -> None:
        from mlflow import MlflowClient

        self.connection = connection
        with connection.activate():  # some stores check the environment when they are built
            self._mlflow = MlflowClient(connection.tracking_uri, connection.registry_uri or connection.tracking_uri)

    @property
    def mlflow(self) -> Any:
        """The underlying ``mlflow.MlflowClient``, for anything this API does not cover."""
        return self._mlflow

    @contextmanager
    def _call(self, action: str) -> Iterator[Any]:
        """The connection applied, failures explained; yields the MlflowClient."""
        with self.connection.activate(), explain(action, self.connection):
            yield self._mlflow

    def ping(self) -> None:
        """One cheap call: proves the server answers this client (Host header and credentials included)."""
        with self._call("listing experiments") as c:
            c.search_experiments(max_results=1)

    # --- experiments -----------------------------------------------------------------------------------

    def experiment(self, name: str, *, artifact_location: str | None = None) -> str:
        """Get-or-create the experiment ``name`` (restoring it if deleted); its id."""
        with self._call(f"getting or creating experiment {name!r}") as c:
            existing = c.get_experiment_by_name(name)
            if existing is not None:
                if existing.lifecycle_stage == "deleted":
                    c.restore_experiment(existing.experiment_id)
                return existing.experiment_id
            return c.create_experiment(name, artifact_location=artifact_location or self.connection.artifact_location)

    def get_experiment(self, name: str) -> Any:
        with self._call(f"reading experiment {name!r}") as c:
            found = c.get_experiment_by_name(name)
        if found is None:
            raise KitError(f"no experiment {name!r} at {self.connection.tracking_uri}.")
        return found

    def experiments(self) -> list[Any]:
        """Active experiments."""
        with self._call("listing experiments") as c:
            return list(c.search_experiments())

    def set_experiment_tags(self, name: str, tags: Mapping[str, str]) -> None:
        experiment_id = self.get_experiment(name).experiment_id
        with self._call(f"tagging experiment {name!r}") as c:
            for key, value in tags.items():
                c.set_experiment_tag(experiment_id, key, value)

    def delete_experiment(self, name: str) -> None:
        experiment_id = self.get_experiment(name).experiment_id
        with self._call(f"deleting experiment {name!r}") as c:
            c.delete_experiment(experiment_id)

    def restore_experiment(self, name: str) -> None:
        self.experiment(name)  # get-or-create restores a deleted one

    # --- runs ------------------------------------------------------------------------------------------

    @contextmanager
    def run(self, experiment: str | None = None, *, run_name: str | None = None,
            tags: Mapping[str, str] | None = None, autolog: bool = False) -> Iterator[Run]:
        """A run in ``experiment`` (default: ``MLFLOW_EXPERIMENT_NAME``, else "Default"), created if missing.

        Ends FINISHED, or FAILED when the block raises. Calls go through this client with the run's id, so runs
        of two clients may interleave; with ``autolog=True`` the run is also MLflow's active run for the block.
        """
        import mlflow
        from mlflow.tracking.context.registry import resolve_tags

        name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "Default"
        experiment_id = self.experiment(name)
        with self._call(f"starting a run in {name!r}") as c:
            created = c.create_run(experiment_id, run_name=run_name, tags=resolve_tags(dict(tags or {})))
        run = Run(self, created.info.run_id)
        try:
            if autolog:
                with self.connection.activate(), _experiment_set_aside():
                    mlflow.start_run(run_id=run.run_id)
                    mlflow.autolog()
                    try:
                        yield run
                    finally:
                        mlflow.autolog(disable=True)
                        mlflow.end_run(status="RUNNING")  # Client.run sets the final status
            else:
                yield run
        except BaseException:
            with self._call("marking the run FAILED") as c:
                c.set_terminated(run.run_id, "FAILED")
            raise
        with self._call("ending the run") as c:
            c.set_terminated(run.run_id, "FINISHED")

    def get_run(self, run_id: str) -> Any:
        with self._call(f"reading run {run_id}") as c:
            return c.get_run(run_id)

    def search_runs(self, experiment: str, filter_string: str = "",
                    order_by: Sequence[str] = (), max_results: int = 1000) -> list[RunRow]:
        """Runs of ``experiment`` matching ``filter_string`` (e.g. ``metrics.f1 > 0.9``), in ``order_by`` order."""
        with self._call(f"searching runs of {experiment!r}") as c:
            found = c.get_experiment_by_name(experiment)
            if found is None:
                return []
            runs = c.search_runs([found.experiment_id], filter_string, order_by=list(order_by),
                                 max_results=max_results)
        return [RunRow(r.info.run_id, r.info.run_name, r.info.experiment_id, r.info.status, r.info.start_time,
                       dict(r.data.metrics), dict(r.data.params), dict(r.data.tags)) for r in runs]

    def search_runs_frame(self, experiment: str, filter_string: str = "", order_by: Sequence[str] = ()) -> Any:
        """The same search as a pandas DataFrame (columns ``metrics.*``, ``params.*``, ``tags.*``)."""
        import mlflow

        with self._call(f"searching runs of {experiment!r}"):
            return mlflow.search_runs(experiment_names=[experiment], filter_string=filter_string,
                                      order_by=list(order_by))

    def logged_model(self, model_id: str) -> Any:
        """An MLflow 3 logged model (``models:/<model id>``): its artifact location, params, metrics."""
        with self._call(f"reading logged model {model_id}") as c:
            return c.get_logged_model(model_id)

    # --- traces ----------------------------------------------------------------------------------------

    @contextmanager
    def tracing(self, experiment: str) -> Iterator[str]:
        """MLflow's own tracing (``@mlflow.trace``, ``mlflow.start_span``) records into ``experiment`` (created if
        missing) of this connection for the block; yields the experiment's id. Traces are exported in the
        background: the block's end waits until they are written (export errors are only logged by MLflow, so
        read a trace back to know it landed)."""
        import mlflow
        from mlflow.tracking import fluent

        experiment_id = self.experiment(experiment)
        with self.connection.activate():  # the block's own errors stay its own (not explained as the kit's)
            saved = fluent._active_experiment_id
            fluent._active_experiment_id = experiment_id  # type: ignore[assignment]  # MLflow annotates it None
            try:
                yield experiment_id
            finally:
                fluent._active_experiment_id = saved
                # Before activate() restores the tracking URI: that resets MLflow's tracer (and its queue).
                mlflow.flush_trace_async_logging()

    def get_trace(self, trace_id: str) -> Any:
        """One trace with its spans (``mlflow.entities.Trace``: ``.info``, ``.data.spans``)."""
        with self._call(f"reading trace {trace_id}") as c:
            return c.get_trace(trace_id, display=False)

    def search_traces(self, experiment: str, filter_string: str = "", max_results: int = 100) -> list[Any]:
        """Traces of ``experiment`` matching ``filter_string`` (e.g. ``trace.name = 'x'``), newest first, with
        their spans; [] when the experiment does not exist."""
        with self._call(f"searching traces of {experiment!r}") as c:
            found = c.get_experiment_by_name(experiment)
            if found is None:
                return []
            return list(c.search_traces(locations=[found.experiment_id], filter_string=filter_string or None,
                                        max_results=max_results, order_by=["timestamp_ms DESC"]))

    # --- registry --------------------------------------------------------------------------------------

    def register(self, source_uri: str, name: str) -> str:
        """Register the model at ``source_uri`` (``runs:/…`` or ``models:/<model id>``) as ``name``; its version."""
        import mlflow

        with self._call(f"registering {source_uri} as {name!r}"):
            return str(mlflow.register_model(source_uri, name).version)

    def versions(self, name: str) -> list[str]:
        with self._call(f"listing versions of {name!r}") as c:
            found = c.search_model_versions(f"name = '{name}'")
        return sorted((str(v.version) for v in found), key=int)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        with self._call(f"setting alias {name}@{alias} -> v{version}") as c:
            c.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with self._call(f"deleting alias {name}@{alias}") as c:
            c.delete_registered_model_alias(name, alias)

    def version_by_alias(self, name: str, alias: str) -> str:
        self._require_model(name)
        with self._call(f"resolving {name}@{alias}") as c:
            return str(c.get_model_version_by_alias(name, alias).version)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        with self._call(f"tagging registered model {name!r}") as c:
            c.set_registered_model_tag(name, key, value)

    def set_version_tag(self, name: str, version: str | int, key: str, value: str) -> None:
        with self._call(f"tagging {name} v{version}") as c:
            c.set_model_version_tag(name, str(version), key, value)

    def transition_stage(self, name: str, version: str | int, stage: str) -> None:
        """Legacy registry stages (deprecated in MLflow 3 in favour of aliases; still understood)."""
        import warnings

        with self._call(f"moving {name} v{version} to stage {stage}") as c, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            c.transition_model_version_stage(name, str(version), stage)

    def model_uri(self, name: str, *, alias: str | None = None, version: str | int | None = None,
                  stage: str | None = None) -> str:
        """``models:/`` URI of ``name`` by alias, version or legacy stage, after checking that it exists."""
        uri = model_uri(name, alias=alias, version=version, stage=stage)
        self._require_model(name)
        with self._call(f"resolving {uri}") as c:
            if alias is not None:
                c.get_model_version_by_alias(name, alias)
            elif version is not None:
                c.get_model_version(name, str(version))
            elif not c.get_latest_versions(name, [stage]):
                raise KitError(f"registered model {name!r} has no version in stage {stage!r}.")
        return uri

    def download_model(self, name: str, *, alias: str | None = None, version: str | int | None = None,
                       stage: str | None = None, dst: str | None = None) -> str:
        """The model's files downloaded to ``dst`` (a new temporary directory by default); that path."""
        import mlflow.artifacts

        uri = self.model_uri(name, alias=alias, version=version, stage=stage)
        with self._call(f"downloading {uri}"):
            return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)

    def load(self, uri: str) -> Any:
        """The model at ``uri`` as a pyfunc model (downloads through this connection)."""
        import mlflow.pyfunc

        with self._call(f"loading {uri}"):
            return mlflow.pyfunc.load_model(uri)

    def _require_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        with self.connection.activate():
            try:
                self._mlflow.get_registered_model(name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise KitError(f"no registered model {name!r} at {self.connection.tracking_uri}.",
                                   hint="check the name (`client.mlflow.search_registered_models()` lists them)."
                                   ) from None
                raise KitError(f"reading registered model {name!r} failed: {_reason(exc)}", hint=_hint(exc)) from exc


class Run:
    """A run of :meth:`Client.run`; every call names the run explicitly (no global active run needed)."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        with self.client._call("logging params") as c:
            c.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """All ``metrics`` at ``step`` in one batched request."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self.client._call("logging metrics") as c:
            c.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def log_metric_series(self, key: str, values: Sequence[float], start_step: int = 0) -> None:
        """``values`` as steps ``start_step``, ``start_step + 1``, … of ``key``, batched."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self.client._call(f"logging metric series {key!r}") as c:
            c.log_batch(self.run_id, metrics=[Metric(key, float(v), now, start_step + i) for i, v in enumerate(values)])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        with self.client._call("setting tags") as c:
            c.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        with self.client._call(f"uploading artifact {path}") as c:
            c.log_artifact(self.run_id, path, artifact_path)

    def log_artifacts(self, directory: str, artifact_path: str | None = None) -> None:
        with self.client._call(f"uploading directory {directory}") as c:
            c.log_artifacts(self.run_id, directory, artifact_path)

    def log_model(self, flavor: Any, model: Any, name: str, **kwargs: Any) -> Any:
        """``flavor.log_model(model, name=name, **kwargs)`` (e.g. ``mlflow.sklearn``) in this run; its ModelInfo."""
        import mlflow

        with self.client._call(f"logging model {name!r}"):
            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:  # autolog block
                return flavor.log_model(model, name=name, **kwargs)
            # MLflow's flavours log into the active run: make this one active for the call, and leave it
            # RUNNING (Client.run sets the final status).
            with _experiment_set_aside():
                mlflow.start_run(run_id=self.run_id)
                try:
                    return flavor.log_model(model, name=name, **kwargs)
                finally:
                    mlflow.end_run(status="RUNNING")
