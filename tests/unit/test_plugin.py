"""The pytest plugin without an engine: topology selection (option, marker, default), the one-line errors for unknown
names, one stack at a time with teardown and logs on failure (a fake Stack), and no cost for tests that use none
of its fixtures. Each case runs a small pytest session in a temporary directory (pytester)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import mlflowkit.stack  # imported before any pytester run, whose sys.modules snapshot would drop it afterwards
from mlflowkit.topology import TOPOLOGIES

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
# This process imported the plugin already (so pytest cannot rewrite its asserts: it has none to rewrite).
PLUGIN = ("-p", "mlflowkit.pytest_plugin", "-W", "ignore::pytest.PytestAssertRewriteWarning")
VALID = ", ".join(TOPOLOGIES)

TESTS = """
import pytest

def test_uses_client(mlflow_client):
    pass

@pytest.mark.mlflow_topology("proxied", "file")
def test_marked(mlflow_stack):
    pass

def test_plain():
    pass
"""


@pytest.fixture
def pt(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester session that loads the plugin by module name, whether or not its entry point is installed."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def collected(pt: pytest.Pytester, *args: str) -> list[str]:
    result = pt.runpytest(*PLUGIN, "--collect-only", "-q", "--strict-markers", *args)
    assert result.ret == 0, result.stdout.str()
    return [line.split("::", 1)[1] for line in result.outlines if "::" in line]


def test_option_parametrizes_the_tests_that_use_a_fixture_and_groups_them_by_topology(pt):
    pt.makepyfile(TESTS)
    assert collected(pt, "--mlflow-topology", "postgres-s3,proxied") == [
        "test_uses_client[postgres-s3]",
        "test_uses_client[proxied]",
        "test_marked[proxied]",  # the marker's topologies, narrowed by the option
        "test_plain",
    ]


def test_repeated_option_and_all(pt):
    pt.makepyfile("def test_a(mlflow_topology):\n    pass\n")
    assert collected(pt, "--mlflow-topology", "proxied", "--mlflow-topology", "file,proxied") == [
        "test_a[proxied]", "test_a[file]"]
    assert collected(pt, "--mlflow-topology", "all") == [f"test_a[{name}]" for name in TOPOLOGIES]


def test_without_option_marker_else_default(pt):
    pt.makepyfile(TESTS)
    assert collected(pt) == ["test_uses_client[postgres-s3]", "test_marked[proxied]", "test_marked[file]",
                             "test_plain"]


def test_marker_on_a_module_and_option_outside_it_skips_with_the_reason(pt):
    pt.makepyfile("""
        import pytest
        pytestmark = pytest.mark.mlflow_topology("file")

        def test_a(mlflow_environ):
            pass
    """)
    result = pt.runpytest(*PLUGIN, "-rs", "--mlflow-topology", "proxied")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*marked for file; --mlflow-topology selects proxied*"])


def test_same_topology_from_marker_and_option_is_one_stack(pt):
    """Values, not positions, identify a stack: [proxied] of two differently marked tests is the same one."""
    pt.makepyfile("""
        import pytest

        @pytest.mark.mlflow_topology("file", "proxied")
        def test_a(mlflow_stack):
            pass

        @pytest.mark.mlflow_topology("proxied")
        def test_b(mlflow_stack):
            pass
    """)
    assert collected(pt) == ["test_a[file]", "test_a[proxied]", "test_b[proxied]"]


def test_unknown_topology_in_the_option_is_one_line_naming_the_valid_ones(pt):
    pt.makepyfile(TESTS)
    result = pt.runpytest(*PLUGIN, "--mlflow-topology", "proxied,postgres")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line] == [
        f"ERROR: --mlflow-topology: unknown topology 'postgres'; valid: {VALID}."]


def test_unknown_topology_in_a_marker_fails_collection_in_one_line(pt):
    pt.makepyfile(test_bad="""
        import pytest

        @pytest.mark.mlflow_topology("proxy")
        def test_a(mlflow_client):
            pass
    """)
    result = pt.runpytest(*PLUGIN)
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines([
        "*ERROR collecting test_bad.py*",
        f"@pytest.mark.mlflow_topology on test_bad.py::test_a: unknown topology 'proxy'; valid: {VALID}.",
    ])
    assert "Traceback" not in result.stdout.str()


def test_marker_without_names_is_refused(pt):
    pt.makepyfile(test_empty="""
        import pytest

        @pytest.mark.mlflow_topology()
        def test_a(mlflow_client):
            pass
    """)
    result = pt.runpytest(*PLUGIN)
    result.stdout.fnmatch_lines(["*needs topology names*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


class FakeStack:
    """Records what the plugin asks of a stack; ``up`` of a topology named in ``failing_up`` fails."""

    events: list[str] = []
    failing_up: set[str] = set()

    def __init__(self, topology, settings, log) -> None:
        self.topology, self.settings, self._up, self.auth_enabled = topology, settings, False, False

    @property
    def project(self) -> str:
        return self.settings.project(self.topology.name)

    def up(self, *, free_ports: bool, auth: bool = False, workspaces: bool = False) -> None:
        from mlflowkit.errors import KitError

        assert free_ports
        self.events.append(" ".join(["up", self.topology.name, *(["auth"] if auth else []),
                                     *(["workspaces"] if workspaces else [])]))
        self._up, self.auth_enabled = True, auth
        if self.topology.name in self.failing_up:
            raise KitError(f"{self.topology.name} did not come up: boom", details="postgres-1 | FATAL: disk full")

    def states(self) -> list[str]:
        return ["running"] if self._up else []

    def volumes(self) -> list[str]:
        return []

    def down(self, *, volumes: bool) -> None:
        assert volumes
        self.events.append(f"down {self.topology.name}")
        self._up = False

    def logs(self, tail: int | None = None) -> str:
        return f"mlflow-1  | log line of {self.project} (tail {tail})"

    def connection(self):
        from mlflowkit.client import Connection

        return Connection("http://127.0.0.1:1")

    def client_connection(self, user=None, admin=False, workspace=None):
        import dataclasses

        assert (user, workspace) == (None, None) and admin == self.auth_enabled  # the admin's where there is one
        return dataclasses.replace(self.connection(), username="admin" if admin else None)


@pytest.fixture
def fake_stack(monkeypatch):
    monkeypatch.setattr(mlflowkit.stack, "Stack", FakeStack)
    monkeypatch.setattr(FakeStack, "events", [])
    monkeypatch.setattr(FakeStack, "failing_up", set())
    return FakeStack


def test_one_stack_at_a_time_torn_down_after_failures_with_logs_in_the_report(pt, fake_stack):
    pt.makepyfile(test_two="""
        def test_ok(mlflow_connection, mlflow_environ):
            assert mlflow_environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:1"

        def test_fails(mlflow_stack):
            assert False, "deliberately"
    """)
    result = pt.runpytest(*PLUGIN, "--mlflow-topology", "proxied,postgres-s3", "--mlflow-project-prefix", "pfx",
                          "--mlflow-log-lines", "7")
    result.assert_outcomes(passed=2, failed=2)
    assert fake_stack.events == ["up proxied", "down proxied", "up postgres-s3", "down postgres-s3"]
    result.stdout.fnmatch_lines([
        "*- mlflow stack proxied (pfx-proxied) logs -*",
        "mlflow-1  | log line of pfx-proxied (tail 7)",
    ])
    result.stdout.fnmatch_lines(["*mlflowkit stacks*", "proxied: project pfx-proxied, up in 0 s, down in 0 s",
                                 "postgres-s3: project pfx-postgres-s3, up in 0 s, down in 0 s"])
    assert result.stdout.str().count("- mlflow stack ") == 2  # only the failing tests carry the logs


def test_a_stack_that_does_not_come_up_errors_its_tests_once_with_the_cause(pt, fake_stack):
    fake_stack.failing_up = {"proxied"}
    pt.makepyfile("""
        def test_a(mlflow_client):
            pass

        def test_b(mlflow_client):
            pass
    """)
    result = pt.runpytest(*PLUGIN, "--mlflow-topology", "proxied")
    result.assert_outcomes(errors=2)
    assert fake_stack.events == ["up proxied", "down proxied"]  # tried once, the half-started stack removed
    result.stdout.fnmatch_lines(["*mlflowkit: proxied did not come up: boom*", "postgres-1 | FATAL: disk full"])


@pytest.mark.parametrize(("options", "up"), [((), "up proxied"), (("--mlflow-auth",), "up proxied auth"),
                                              (("--mlflow-workspaces",), "up proxied auth workspaces")])
def test_auth_and_workspaces_options_bring_the_stacks_up_with_them_and_connect_as_the_admin(pt, fake_stack,
                                                                                          options, up):
    admin = "admin" if options else None
    pt.makepyfile(f"def test_a(mlflow_connection):\n    assert mlflow_connection.username == {admin!r}\n")
    result = pt.runpytest(*PLUGIN, "--mlflow-topology", "proxied", *options)
    result.assert_outcomes(passed=1)
    assert fake_stack.events == [up, "down proxied"]


def test_an_interrupted_run_still_removes_its_stack(pt, fake_stack):
    pt.makepyfile("def test_a(mlflow_stack):\n    raise KeyboardInterrupt\n")
    recorder = pt.inline_run(*PLUGIN, no_reraise_ctrlc=True)
    assert recorder.ret == pytest.ExitCode.INTERRUPTED
    assert fake_stack.events == ["up postgres-s3", "down postgres-s3"]


def test_default_project_prefix_is_unique_per_run(pt, fake_stack):
    pt.makepyfile("def test_a(mlflow_stack):\n    pass\n")
    projects = []
    for _ in range(2):
        result = pt.runpytest(*PLUGIN)
        projects += [line.split()[2].rstrip(",") for line in result.outlines if line.startswith("postgres-s3: ")]
    assert len(set(projects)) == 2 and all(p.startswith("mlflowkit-pytest-") for p in projects), projects


def test_costs_nothing_when_no_test_uses_it(pt, monkeypatch):
    """No engine, no MLflow import, no orchestration import, no extra output: a plain test run is untouched."""
    monkeypatch.setenv("PATH", "/nonexistent")  # no docker to call
    pt.makepyfile("""
        import sys

        def test_plain():
            assert "mlflow" not in sys.modules
            assert "mlflowkit.stack" not in sys.modules
    """)
    result = pt.runpytest_subprocess(*PLUGIN, "--strict-markers")
    result.assert_outcomes(passed=1)
    assert "mlflowkit" not in result.stdout.str()


def test_registered_as_a_pytest11_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"mlflowkit": "mlflowkit.pytest_plugin"}


def test_registers_its_marker(pt):
    result = pt.runpytest(*PLUGIN, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.mlflow_topology(*names): run this test against a stack*"])


def test_plugin_module_is_importable_without_mlflow_loaded():
    assert "mlflowkit.pytest_plugin" in sys.modules or __import__("mlflowkit.pytest_plugin")
