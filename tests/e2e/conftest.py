"""End-to-end fixtures: a real engine, the kit's images built once per run, stacks in their own projects.

No skipping: without an engine these tests fail, saying how to start one (`pytest -m "not e2e"` runs the rest).
Stacks run under the project prefix ``mlflowkit-e2e`` with free ports and .env files in a temp directory, so a
developer's own stacks are never touched.
"""

from __future__ import annotations

import fcntl
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
# each other's stacks; each pytest-xdist worker of one run has projects of its own too.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PREFIX = os.environ.get("MLFLOWKIT_E2E_PREFIX", "mlflowkit-e2e") + (f"-{_WORKER}" if _WORKER else "")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def e2e_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    check_engine()
    settings = Settings(project_prefix=PREFIX, home=str(tmp_path_factory.mktemp("home")),
                        up_timeout=240)
    # Built once per run; later stacks reuse them. xdist workers share the run's base temp directory's parent:
    # the first to take the lock builds, the others find the images there.
    with open(tmp_path_factory.getbasetemp().parent / "mlflowkit-images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        images.ensure(settings, _log)
    return settings


def defaults_group(topology: str) -> pytest.MarkDecorator:
    """The xdist group of the tests that bring ``topology`` up on its default ports (test_stacks, the tutorials):
    one worker runs them one after another, so two never hold the same ports."""
    return pytest.mark.xdist_group(f"defaults-{topology}")


def seed_env(settings: Settings, topology: Topology, *, default_ports: bool = False, **extra: str) -> None:
    """Free ports (``default_ports``: none, the stack's defaults as `make stack-<t>` has them) and ``extra``
    values, written before `up`, which keeps existing keys."""
    lines = [] if default_ports else [f"{port.variable}={free_port()}" for port in topology.ports]
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

    def make(topology: Topology, settings: Settings | None = None, *, default_ports: bool = False,
             **extra: str) -> Stack:
        settings = settings or e2e_settings
        # Each test starts from an empty local data directory (whatever an earlier test left, taken down or not),
        # and this process's SQLite engines (MLflow caches one per URI) let go of the old files.
        shutil.rmtree(settings.data_dir(topology.name), ignore_errors=True)
        _close_sqlite_engines()
        seed_env(settings, topology, default_ports=default_ports, **extra)
        stack = Stack(topology, settings, log=_log)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        if stack.states() or stack.volumes():
            stack.down(volumes=True)


SEED_STEPS = ("connect", "history", "log", "register", "alias", "load+predict")


def populate(stack, label: str) -> str:
    """Day-two data: the validation's run, model and alias ``champion``, a trace with nested spans (experiment
    ``<label>-traces``) and a run with params, a tag and a 5-step metric history (``<label>-history``); the
    history run's id."""
    import mlflow

    from mlflowkit.client import Client
    from mlflowkit.validate import validate

    # Seeding, in this process: the validation's run, model and alias, not its serving, browser or store checks
    # (each topology is validated whole by test_stacks; the day-two tests serve what they moved or restored).
    report = validate(stack, _log, ui=False, only=SEED_STEPS)
    assert report.ok, [f"{s.name}: {s.detail}" for s in report.steps if not s.ok]
    assert [s.name for s in report.steps] == list(SEED_STEPS)
    client = Client(stack.connection())
    # MLflow exports traces in the background: the block's end waits for the export, and the trace is read back
    # before anything counts or copies the store. (Without the wait a migration could copy the store before the
    # trace landed and then count one more trace in the source than in the target.)
    with client.tracing(f"{label}-traces"):

        @mlflow.trace
        def inner(x: int) -> int:
            return x * 2

        @mlflow.trace
        def outer(x: int) -> int:
            return inner(x) + 1

        assert outer(20) == 41
    assert len(client.search_traces(f"{label}-traces")) == 1, "populate's trace did not land"
    with client.run(f"{label}-history", run_name="history", tags={"team": "ml"}) as run:
        run.log_params({"alpha": 0.5, "layers": 3})
        for step in range(5):
            run.log_metrics({"loss": 1 / (step + 1)}, step=step)
        return run.run_id
