"""pytest plugin: a real MLflow stack of any topology as fixtures for your own project's tests (docs/testing.md).

Registered through the ``pytest11`` entry point, so installing the kit enables it. It costs nothing until a test
asks for one of its fixtures: no engine is contacted and neither MLflow nor the orchestration is imported.

Fixtures (each test that uses one is parametrized over the chosen topologies, ids ``[proxied]`` etc.):

- ``mlflow_topology``: the topology name of this test's parameter.
- ``mlflow_stack``: the :class:`mlflowkit.stack.Stack`, up (session-scoped; torn down, volumes included, when the
  session moves on to the next topology or ends — whether the tests passed or not).
- ``mlflow_connection`` / ``mlflow_client``: a :class:`mlflowkit.Connection` / :class:`mlflowkit.Client` for it.
- ``mlflow_environ``: the variables a plain ``mlflow`` client (or a subprocess) needs, as a new dict.
- ``mlflow_tracking``: applies those variables and MLflow's tracking/registry URIs for the test; yields the
  connection.
- ``mlflow_settings``: the :class:`mlflowkit.settings.Settings` the stacks use (override it in a conftest).
- ``mlflow_person``: with ``--mlflow-auth``, ``mlflow_person("alice")`` is alice's own connection (a user made
  once per session, never the admin); with ``--mlflow-workspaces``, ``mlflow_person("alice", workspace="vision")``
  hers in that workspace (made, and she a member, when not yet): a team tests its own permission model.

``--mlflow-auth`` brings the stacks up with MLflow's basic-auth app (``mlflowkit up --auth``; the other fixtures
then connect as the stack's admin), ``--mlflow-workspaces`` with workspaces too (``up --workspaces``).

Topologies come from ``@pytest.mark.mlflow_topology(...)`` and ``--mlflow-topology``: a marked test runs on its
marked topologies (narrowed by the option when both are given), an unmarked one on the option's, else on
:data:`DEFAULT_TOPOLOGY`.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from mlflowkit import topology as topologies

if TYPE_CHECKING:
    from mlflowkit.client import Client, Connection
    from mlflowkit.settings import Settings
    from mlflowkit.stack import Stack

DEFAULT_TOPOLOGY = topologies.DEFAULT
MARKER = "mlflow_topology"
PARAM = "mlflow_topology"  # the fixture every other fixture of this plugin depends on, parametrized per test
# Variables that would make a plain client talk to something else than the stack: removed by mlflow_tracking.
_CLIENT_VARIABLES = (
    "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOWKIT_ARTIFACT_LOCATION", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "MLFLOW_WORKSPACE",
)


@dataclass
class _Started:
    """A stack this session brought up, for the failure report and the summary."""

    stack: Stack
    up_seconds: float
    down_seconds: float | None = None


@dataclass
class _State:
    """Per-session state (in ``config.stash``: nothing module-global, so in-process pytester runs are isolated)."""

    selected: list[str] | None  # --mlflow-topology, or None
    log_lines: int
    prefix: str
    auth: bool = False  # --mlflow-auth
    workspaces: bool = False  # --mlflow-workspaces
    running: dict[str, _Started] = field(default_factory=dict)
    history: list[tuple[str, _Started]] = field(default_factory=list)


_STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlflowkit", "MLflow stacks of mlflowkit (fixtures mlflow_stack, mlflow_client, …)")
    group.addoption("--mlflow-topology", action="append", default=[], metavar="NAMES",
                    help="comma-separated topologies to run the tests that use an mlflow_* fixture against "
                    f"(repeatable; 'all' for every one; default: a test's mlflow_topology marker, else "
                    f"{DEFAULT_TOPOLOGY})")
    group.addoption("--mlflow-project-prefix", default=None, metavar="PREFIX",
                    help="Compose project prefix of the stacks (default: mlflowkit-pytest-<random>, unique per run)")
    group.addoption("--mlflow-log-lines", type=int, default=200, metavar="N",
                    help="lines of each service's log attached to a failing test's report (default: 200; 0: none)")
    group.addoption("--mlflow-auth", action="store_true", default=False,
                    help="stacks with MLflow's basic-auth app (mlflowkit up --auth): fixture mlflow_person gives a "
                    "test a person's own connection; the other fixtures connect as the admin")
    group.addoption("--mlflow-workspaces", action="store_true", default=False,
                    help="stacks with MLflow's workspaces too (mlflowkit up --workspaces; implies --mlflow-auth): "
                    "mlflow_person(name, workspace=...)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(*names): run this test against a stack of each named topology "
                            "(mlflowkit's pytest plugin; --mlflow-topology narrows it)")
    try:
        selected = _parse_option(config.getoption("--mlflow-topology"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    prefix = config.getoption("--mlflow-project-prefix") or f"mlflowkit-pytest-{secrets.token_hex(3)}"
    workspaces = config.getoption("--mlflow-workspaces")
    config.stash[_STATE] = _State(selected, config.getoption("--mlflow-log-lines"), prefix,
                                  auth=config.getoption("--mlflow-auth") or workspaces, workspaces=workspaces)


def _parse_option(values: list[str]) -> list[str] | None:
    """``["<name>,<name>", "<name>"]`` (comma-separated or repeated) -> the names, checked; ``[]`` -> None."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        return None
    from mlflowkit import topology

    if "all" in names:
        return list(topology.TOPOLOGIES)
    return _checked(names, "--mlflow-topology")


def _checked(names: list[str], source: str) -> list[str]:
    """The names, each a known topology (duplicates dropped), or a ValueError naming the valid ones."""
    from mlflowkit import topology
    from mlflowkit.errors import UnknownTopology

    for name in names:
        try:
            topology.get(name)
        except UnknownTopology as exc:
            raise ValueError(f"{source}: {exc}") from None
    return list(dict.fromkeys(names))


def topologies_for(marker_names: list[str] | None, selected: list[str] | None) -> list[str]:
    """The topologies one test runs on: its marker's, narrowed by the option; else the option's; else the default."""
    if marker_names is None:
        return selected or [DEFAULT_TOPOLOGY]
    if selected is None:
        return marker_names
    return [name for name in marker_names if name in selected]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if PARAM not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(MARKER)
    marker_names = None
    if marker is not None:
        if not marker.args or not all(isinstance(name, str) for name in marker.args):
            example = ", ".join(repr(name) for name in list(topologies.TOPOLOGIES)[:2])
            pytest.fail(f"{metafunc.definition.nodeid}: @pytest.mark.{MARKER}() needs topology names, e.g. "
                        f"@pytest.mark.{MARKER}({example}).", pytrace=False)
        try:
            marker_names = _checked(list(marker.args), f"@pytest.mark.{MARKER} on {metafunc.definition.nodeid}")
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
    selected = metafunc.config.stash[_STATE].selected
    names = topologies_for(marker_names, selected)
    if names:
        # Session scope: pytest groups the tests by topology and, when it moves to the next one, tears the
        # previous stack down before bringing the next up — one stack at a time.
        metafunc.parametrize(PARAM, names, ids=names, scope="session")
    else:
        reason = f"marked for {', '.join(marker_names or [])}; --mlflow-topology selects {', '.join(selected or [])}"
        metafunc.parametrize(PARAM, [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["none"],
                             scope="session")


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_topology(request: pytest.FixtureRequest) -> str:
    """The topology name this test runs against (set by the plugin's parametrization)."""
    pytest.fail("mlflow_topology is parametrized by mlflowkit's pytest plugin, which did not run for this test.",
                pytrace=False)


@pytest.fixture(scope="session")
def mlflow_settings(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Settings:
    """Settings of the stacks: this run's own project prefix, state under a temporary directory, loopback ports."""
    from mlflowkit.settings import Settings

    state = pytestconfig.stash[_STATE]
    return Settings(project_prefix=state.prefix, home=str(tmp_path_factory.mktemp("mlflowkit")),
                    bind_address="127.0.0.1")


@pytest.fixture(scope="session")
def mlflow_stack(mlflow_topology: str, mlflow_settings: Settings, pytestconfig: pytest.Config) -> Iterator[Stack]:
    """A stack of ``mlflow_topology``, up on free 127.0.0.1 ports; torn down (volumes included) afterwards."""
    from mlflowkit import topology
    from mlflowkit.errors import KitError
    from mlflowkit.stack import Stack

    state = pytestconfig.stash[_STATE]
    stack = Stack(topology.get(mlflow_topology), mlflow_settings, log=_log)
    start = time.monotonic()
    failure: KitError | None = None
    try:
        stack.up(free_ports=True, auth=state.auth, workspaces=state.workspaces)
    except KitError as exc:
        failure = exc
    except BaseException:  # interrupted: nothing half-started is left behind
        _remove(stack)
        raise
    if failure is not None:  # every test of this topology errors with the cause; up is not retried per test
        _remove(stack)
        details = f"\n{failure.details.rstrip()[-6000:]}" if failure.details else ""
        pytest.fail(f"mlflowkit: {failure}{details}", pytrace=False)
    started = _Started(stack, time.monotonic() - start)
    state.running[mlflow_topology] = started
    state.history.append((mlflow_topology, started))
    try:
        yield stack
    finally:
        del state.running[mlflow_topology]
        start = time.monotonic()
        _remove(stack)
        started.down_seconds = time.monotonic() - start


@pytest.fixture(scope="session")
def mlflow_connection(mlflow_stack: Stack) -> Connection:
    """How a client on this host reaches the stack (with --mlflow-auth, as its admin)."""
    return mlflow_stack.client_connection(admin=mlflow_stack.auth_enabled)


@pytest.fixture
def mlflow_person(mlflow_stack: Stack) -> Callable[..., Connection]:
    """``mlflow_person(name, workspace=None, level="user")``: that person's own connection to the stack (its
    user made once per session; --mlflow-auth), in ``workspace`` when given (made when missing, the person made a
    member at ``level`` when not one yet; --mlflow-workspaces). Refusals are the kit's one-line errors."""

    def person(name: str, workspace: str | None = None, level: str = "user") -> Connection:
        from mlflowkit import workspaces
        from mlflowkit.errors import KitError

        if level not in {known.value for known in workspaces.Level}:
            raise KitError(f"level {level!r} is not one of MLflow's workspace levels: "
                           f"{', '.join(known.value for known in workspaces.Level)}.")
        if mlflow_stack.passwords.get(name) is None:
            mlflow_stack.add_person(name)
        if workspace is not None:
            server = mlflow_stack.workspace_server()
            if workspace not in {w.name for w in workspaces.listed(server)}:
                workspaces.add(server, workspace)
            if name not in {m.person for m in workspaces.members(server, workspace)}:
                workspaces.grant(server, workspace, name, workspaces.Level(level))
        return mlflow_stack.client_connection(user=name, workspace=workspace)

    return person


@pytest.fixture(scope="session")
def mlflow_client(mlflow_connection: Connection) -> Client:
    """The kit's client bound to the stack (every call fails with one clear KitError)."""
    from mlflowkit.client import Client

    return Client(mlflow_connection)


@pytest.fixture
def mlflow_environ(mlflow_connection: Connection) -> dict[str, str]:
    """The environment variables a plain ``mlflow`` client needs for the stack (e.g. ``env=`` of a subprocess)."""
    return dict(mlflow_connection.environ())


@pytest.fixture
def mlflow_tracking(mlflow_connection: Connection, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connection]:
    """For the test: ``os.environ`` holds the stack's client variables (and none pointing elsewhere) and MLflow's
    tracking and registry URIs are the stack's, so plain ``mlflow.*`` calls land in it. Restored afterwards."""
    import mlflow

    for name in _CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in mlflow_connection.environ().items():
        monkeypatch.setenv(name, value)
    if "boto3" in sys.modules:  # its default session caches the credentials it first found
        monkeypatch.setattr(sys.modules["boto3"], "DEFAULT_SESSION", None)
    saved = _pinned_uris()
    mlflow.set_tracking_uri(mlflow_connection.tracking_uri)
    mlflow.set_registry_uri(mlflow_connection.registry_uri or mlflow_connection.tracking_uri)
    try:
        yield mlflow_connection
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run("FAILED")
        # Back to what was pinned before; None un-pins (MLflow then reads MLFLOW_TRACKING_URI again). The
        # monkeypatch teardown after this restores os.environ, including what MLflow's setters wrote there.
        mlflow.set_tracking_uri(saved[0])  # type: ignore[arg-type]
        mlflow.set_registry_uri(saved[1])  # type: ignore[arg-type]


# --- reporting -----------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test that ran against a stack carries the stack's service logs as a report section."""
    report = yield
    state = item.config.stash.get(_STATE, None)
    callspec = getattr(item, "callspec", None)
    if not report.failed or state is None or callspec is None or state.log_lines <= 0:
        return report
    started = state.running.get(callspec.params.get(PARAM))
    if started is not None:
        report.sections.append((f"mlflow stack {started.stack.topology.name} ({started.stack.project}) logs",
                                _logs(started.stack, state.log_lines)))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.history:
        return
    terminalreporter.section("mlflowkit stacks")
    for name, started in state.history:
        down = f"down in {started.down_seconds:.0f} s" if started.down_seconds is not None else "still up"
        terminalreporter.line(f"{name}: project {started.stack.project}, up in {started.up_seconds:.0f} s, {down}")


@pytest.hookimpl(trylast=True)  # after pytest's own teardown of the session's fixtures
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fixture teardown normally removed every stack already; this catches what an interrupted run left."""
    state = session.config.stash.get(_STATE, None)
    for started in list(state.running.values()) if state is not None else []:
        _remove(started.stack)


# --- helpers -------------------------------------------------------------------------------------------


def _pinned_uris() -> tuple[str | None, str | None]:
    """The tracking and registry URIs set with ``mlflow.set_*_uri`` (None: unset, MLflow reads the environment).

    ``mlflow.get_tracking_uri()`` cannot tell "unset" from "set": restoring its value would pin it for good.
    """
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    return getattr(tracking, "_tracking_uri", None), getattr(registry, "_registry_uri", None)


def _log(message: str) -> None:
    print(f"mlflowkit: {message}", file=sys.stderr, flush=True)


def _logs(stack: Stack, lines: int) -> str:
    from mlflowkit.errors import KitError

    try:
        return stack.logs(tail=lines)
    except KitError as exc:
        return f"(could not read the logs: {exc})"


def _remove(stack: Stack) -> None:
    """Containers, networks and volumes of the stack's project, whatever state it is in."""
    from mlflowkit.errors import KitError

    try:
        if stack.states() or stack.volumes():
            stack.down(volumes=True)
    except KitError as exc:
        _log(f"could not remove {stack.project}: {exc}")

