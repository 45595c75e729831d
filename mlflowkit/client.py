"""The bundled client library: connect to any MLflow server (or a kit stack), track, register, serve.

A :class:`Connection` holds everything a client needs (tracking URI, optional registry URI and S3 endpoint and
keys). MLflow keeps some of that in process-global state (``mlflow.set_tracking_uri``, S3 variables read from
``os.environ``); :meth:`Connection.activate` applies it for the duration of a ``with`` block and restores what
was there before, under a lock, so two connections used in one process do not leak into each other.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
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
# Every variable activate() may set; all of them are saved and restored.
_MANAGED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_ALLOW_FILE_STORE",
    *_FAST_FAILURE,
)
_LOCK = threading.RLock()


@dataclass(frozen=True)
class Connection:
    """How to reach one MLflow deployment."""

    tracking_uri: str
    registry_uri: str | None = None
    s3_endpoint_url: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    # Where new experiments keep artifacts when the store has no server to decide (SQLite: else ./mlruns).
    artifact_location: str | None = None
    timeout: float = 60  # seconds per HTTP request

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
        )

    def environ(self) -> dict[str, str]:
        """The environment variables a separate client process needs (what `mlflowkit env` prints)."""
        values = {"MLFLOW_TRACKING_URI": self.tracking_uri}
        optional = {
            "MLFLOW_REGISTRY_URI": self.registry_uri,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
        }
        values.update({k: v for k, v in optional.items() if v})
        if self.tracking_uri.startswith("file:") or "://" not in self.tracking_uri:
            values["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow >= 3.13 refuses file stores without it
        return values

    @contextmanager
    def activate(self) -> Iterator[Connection]:
        """Apply this connection to MLflow's process-global state for the block, then restore it."""
        import mlflow

        with _LOCK:
            saved_env = {key: os.environ.get(key) for key in _MANAGED}
            saved_uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
            for key in _MANAGED:
                os.environ.pop(key, None)
            os.environ.update({**_FAST_FAILURE, "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(self.timeout))})
            os.environ.update(self.environ())
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)
            try:
                yield self
            finally:
                for key, value in saved_env.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                mlflow.set_tracking_uri(saved_uris[0])
                mlflow.set_registry_uri(saved_uris[1])


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

    def _explain(self, action: str) -> Any:
        return explain(action, self.connection)

    def ping(self) -> None:
        """One cheap authenticated API call: proves the server answers this client (Host header included)."""
        with self.connection.activate(), self._explain("listing experiments"):
            self._mlflow.search_experiments(max_results=1)

    def experiment(self, name: str, *, artifact_location: str | None = None) -> str:
        """Get-or-create the experiment ``name``; its id."""
        with self.connection.activate(), self._explain(f"getting or creating experiment {name!r}"):
            existing = self._mlflow.get_experiment_by_name(name)
            if existing is not None:
                if existing.lifecycle_stage == "deleted":
                    self._mlflow.restore_experiment(existing.experiment_id)
                return existing.experiment_id
            location = artifact_location or self.connection.artifact_location
            return self._mlflow.create_experiment(name, artifact_location=location)

    @contextmanager
    def run(self, experiment: str, *, run_name: str | None = None,
            tags: Mapping[str, str] | None = None) -> Iterator[Run]:
        """A run in ``experiment`` (a name, created if missing): finished on exit, FAILED on an exception."""
        import mlflow

        experiment_id = self.experiment(experiment)
        with self.connection.activate():
            with self._explain(f"starting a run in {experiment!r}"):
                active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}))
            try:
                yield Run(self, active.info.run_id)
            except BaseException:
                mlflow.end_run("FAILED")
                raise
            with self._explain("ending the run"):
                mlflow.end_run("FINISHED")

    def logged_model(self, model_id: str) -> Any:
        """An MLflow 3 logged model (``models:/<model id>``): its artifact location, params, metrics."""
        with self.connection.activate(), self._explain(f"reading logged model {model_id}"):
            return self._mlflow.get_logged_model(model_id)

    def get_run(self, run_id: str) -> Any:
        with self.connection.activate(), self._explain(f"reading run {run_id}"):
            return self._mlflow.get_run(run_id)

    def search_runs(self, experiment: str, filter_string: str = "", order_by: tuple[str, ...] = ()) -> list[Any]:
        with self.connection.activate(), self._explain(f"searching runs of {experiment!r}"):
            found = self._mlflow.get_experiment_by_name(experiment)
            if found is None:
                return []
            return list(self._mlflow.search_runs([found.experiment_id], filter_string, order_by=list(order_by)))

    def register(self, source_uri: str, name: str) -> str:
        """Register the model at ``source_uri`` (``runs:/…`` or ``models:/<model id>``) as ``name``; its version."""
        import mlflow

        with self.connection.activate(), self._explain(f"registering {source_uri} as {name!r}"):
            return str(mlflow.register_model(source_uri, name).version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self.connection.activate(), self._explain(f"setting alias {name}@{alias} -> v{version}"):
            self._mlflow.set_registered_model_alias(name, alias, version)

    def version_by_alias(self, name: str, alias: str) -> str:
        with self.connection.activate(), self._explain(f"resolving {name}@{alias}"):
            return str(self._mlflow.get_model_version_by_alias(name, alias).version)

    def versions(self, name: str) -> list[str]:
        with self.connection.activate(), self._explain(f"listing versions of {name!r}"):
            found = self._mlflow.search_model_versions(f"name = '{name}'")
            return sorted((str(v.version) for v in found), key=int)

    def load(self, uri: str) -> Any:
        """The model at ``uri`` as a pyfunc model (downloads through this connection)."""
        import mlflow.pyfunc

        with self.connection.activate(), self._explain(f"loading {uri}"):
            return mlflow.pyfunc.load_model(uri)


class Run:
    """The active run of :meth:`Client.run`; its calls go through the client's connection."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        with self.client._explain("logging params"):
            mlflow.log_params(dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """All ``metrics`` in one batched request."""
        import mlflow

        with self.client._explain("logging metrics"):
            mlflow.log_metrics(dict(metrics), step=step)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        import mlflow

        with self.client._explain(f"uploading artifact {path}"):
            mlflow.log_artifact(path, artifact_path)

    def log_model(self, flavor: Any, model: Any, name: str, **kwargs: Any) -> Any:
        """``flavor.log_model(model, name=name, **kwargs)`` (e.g. ``mlflow.sklearn``); MLflow's ModelInfo."""
        with self.client._explain(f"logging model {name!r}"):
            return flavor.log_model(model, name=name, **kwargs)
