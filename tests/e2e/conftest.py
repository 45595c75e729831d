"""End-to-end fixtures: a real engine, the kit's images built once per run, stacks in their own projects.

No skipping: without an engine these tests fail, saying how to start one (`pytest -m "not e2e"` runs the rest).
Stacks run under the project prefix ``mlflowkit-e2e`` with free ports and .env files in a temp directory, so a
developer's own stacks are never touched.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

from mlflowkit import images
from mlflowkit.docker import check_engine
from mlflowkit.serving import free_port
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import Topology

# MLFLOWKIT_E2E_PREFIX: two test runs on one engine (two engineers, or CI beside a session) must not take down
# each other's stacks.
PREFIX = os.environ.get("MLFLOWKIT_E2E_PREFIX", "mlflowkit-e2e")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def e2e_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    check_engine()
    settings = Settings(project_prefix=PREFIX, home=str(tmp_path_factory.mktemp("home")),
                        up_timeout=240)
    images.ensure(settings, _log)  # built once per run; later stacks reuse them
    return settings


def seed_env(settings: Settings, topology: Topology, **extra: str) -> None:
    """Free ports (and ``extra`` values) written before `up`, which keeps existing keys."""
    lines = [f"{port.variable}={free_port()}" for port in topology.ports]
    lines += [f"{key}={value}" for key, value in extra.items()]
    settings.env_file(topology.name).parent.mkdir(parents=True, exist_ok=True)
    settings.env_file(topology.name).write_text("\n".join(lines) + "\n")


def _close_sqlite_engines() -> None:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    for store in (TrackingStore, RegistryStore):
        for uri, engine in list(store._engine_map.items()):
            if uri.startswith("sqlite"):
                engine.dispose()


@pytest.fixture
def make_stack(e2e_settings: Settings) -> Iterator:
    """Stacks made through this are taken down, volumes included, whatever the test did."""
    made: list[Stack] = []

    def make(topology: Topology, settings: Settings | None = None, **extra: str) -> Stack:
        settings = settings or e2e_settings
        # A local topology's host data directory outlives `down --volumes`: each test starts from an empty one,
        # and this process's SQLite engines (MLflow caches one per URI) let go of the old files.
        shutil.rmtree(settings.data_dir(topology.name), ignore_errors=True)
        _close_sqlite_engines()
        seed_env(settings, topology, **extra)
        stack = Stack(topology, settings, log=_log)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        if stack.states() or stack.volumes():
            stack.down(volumes=True)


def populate(stack, label: str) -> str:
    """Day-two data: the validation's run, model and alias ``champion``, a trace with nested spans (experiment
    ``<label>-traces``) and a run with params, a tag and a 5-step metric history (``<label>-history``); the
    history run's id."""
    import mlflow

    from mlflowkit.client import Client
    from mlflowkit.validate import validate_isolated

    report = validate_isolated(stack, ui=False)  # seeding data; the UI is proven by test_stacks/test_ui
    assert report.ok, [f"{s.name}: {s.detail}" for s in report.steps if not s.ok]
    client = Client(stack.connection())
    with client.connection.activate():
        mlflow.set_experiment(f"{label}-traces")

        @mlflow.trace
        def inner(x: int) -> int:
            return x * 2

        @mlflow.trace
        def outer(x: int) -> int:
            return inner(x) + 1

        assert outer(20) == 41
        mlflow.tracking.fluent._active_experiment_id = None  # not left to the tests that come after
    with client.run(f"{label}-history", run_name="history", tags={"team": "ml"}) as run:
        run.log_params({"alpha": 0.5, "layers": 3})
        for step in range(5):
            run.log_metrics({"loss": 1 / (step + 1)}, step=step)
        return run.run_id
