"""`validate --all` goes on past a topology that does not come up, and the matrix shows the failure."""

from __future__ import annotations

from typer.testing import CliRunner

from mlflowkit import validate
from mlflowkit.errors import KitError
from mlflowkit.topology import TOPOLOGIES


class FakeStack:
    """Stands in for the engine: one topology fails to come up, the others run."""

    downs: list[str] = []

    def __init__(self, topology, settings, log) -> None:
        self.topology, self.running = topology, False

    def states(self):
        return [type("S", (), {"state": "running"})()] if self.running else []

    def volumes(self):
        return []

    def up(self):
        if self.topology.name == "sqlite":
            raise KitError("sqlite did not come up: port 5020 taken", details="mlflow-1 | address in use")
        self.running = True

    def down(self):
        FakeStack.downs.append(self.topology.name)
        self.running = False


def test_a_failed_up_is_a_row_of_the_matrix_and_the_next_topology_still_runs(monkeypatch):
    monkeypatch.setattr(validate, "Stack", FakeStack)
    monkeypatch.setattr(validate, "validate_isolated", lambda stack, ui=None: validate.Report(
        stack.topology.name, [validate.StepResult("connect", True, 0.1, "ok")]))
    FakeStack.downs = []
    reports = validate.validate_all(settings=None, log=lambda message: None)  # type: ignore[arg-type]
    assert [r.topology for r in reports] == list(TOPOLOGIES)
    failed = {r.topology: r.failure for r in reports if not r.ok}
    assert list(failed) == ["sqlite"] and failed["sqlite"].name == "up"
    assert "port 5020 taken" in failed["sqlite"].detail and "address in use" in failed["sqlite"].logs
    assert FakeStack.downs == [name for name in TOPOLOGIES if name != "sqlite"]  # each one it started

    from mlflowkit import cli

    monkeypatch.setattr(cli, "validate_all", lambda settings, log, ui=None: reports)
    result = CliRunner().invoke(cli.app, ["validate", "--all"])
    assert result.exit_code == 1
    assert "validation failed for: sqlite" in result.output
    assert "FAIL" in result.output and "up" in result.output and "PASS" in result.output


def test_validate_only_refuses_a_step_the_topology_does_not_have(tmp_path):
    """`only` names steps of the pipeline; one the topology lacks (a file store has no S3) is one clear error,
    raised before any step runs (nothing here answers: a step that ran would fail instead)."""
    import pytest

    from mlflowkit.errors import KitError
    from mlflowkit.settings import Settings
    from mlflowkit.stack import Stack
    from mlflowkit.topology import TOPOLOGIES
    from mlflowkit.validate import validate

    class NoEngine(Stack):
        metrics_running = False  # the only question steps_for would ask the engine

    settings = Settings(home=str(tmp_path))
    settings.env_file("file").parent.mkdir(parents=True)
    settings.env_file("file").write_text("")  # a stack `up` wrote, without --auth
    stack = NoEngine(TOPOLOGIES["file"], settings)
    with pytest.raises(KitError, match="validation of file has no step artifacts in S3"):
        validate(stack, lambda line: None, ui=False, only=("log", "artifacts in S3"))
