"""The validation's trace steps against local stores (SQLite, file) in a temporary directory: no engine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mlflowkit import validate
from mlflowkit.client import Client, Connection
from mlflowkit.errors import KitError
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES, Backend


class LocalStack:
    """What the trace steps read of a stack: its topology and its .env's data directory."""

    def __init__(self, name: str, data: Path) -> None:
        self.topology, self.data, self.auth_enabled = TOPOLOGIES[name], data, False
        self.settings = Settings(home=str(data / "home"))

    def env(self) -> dict[str, str]:
        return {"MLFLOW_DATA_DIR": str(self.data)}


def _state(name: str, tmp_path: Path) -> validate._State:
    stack = LocalStack(name, tmp_path)
    backend = stack.topology.backend
    artifacts = f"file://{tmp_path}/mlartifacts" if backend is Backend.SQLITE else None
    client = Client(Connection(backend.local_uri(str(tmp_path)), artifact_location=artifacts))
    return validate._State(stack=stack, client=client)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "where"), [("sqlite", validate.step_trace_sqlite),
                                             ("file", validate.step_trace_file)])
def test_a_trace_is_logged_read_back_found_and_where_the_store_keeps_it(name, where, tmp_path):
    state = _state(name, tmp_path)
    detail = validate.step_trace(state)
    assert state.trace_id in detail and "2 nested spans" in detail
    assert state.trace_id in where(state)
    # A second validation's trace is another one, and the first is still found.
    first = state.trace_id
    validate.step_trace(state)
    assert state.trace_id != first
    assert first in [t.info.trace_id for t in state.client.search_traces(validate.EXPERIMENT)]


def test_where_the_trace_landed_fails_when_it_is_not_there(tmp_path):
    state = _state("sqlite", tmp_path)
    validate.step_trace(state)
    state.trace_id = "tr-" + "0" * 32  # a trace the store does not have
    with pytest.raises(KitError, match=r"\(trace rows, span rows\) = \(0 0\)"):
        validate.step_trace_sqlite(state)
    state.trace_id = "tr-1' OR '1'='1"
    with pytest.raises(KitError, match="unexpected trace id"):
        validate.step_trace_sqlite(state)


def _span(name: str, span_id: str, parent: str | None, outputs=None, **attributes) -> SimpleNamespace:
    return SimpleNamespace(name=name, span_id=span_id, parent_id=parent, attributes=attributes, outputs=outputs)


GOOD = [_span(validate.TRACE_NAME, "a", None, **{"mlflowkit.topology": "proxied"}),
        _span("features", "b", "a", list(range(validate.TRACE_ROWS)), **{"mlflowkit.rows": validate.TRACE_ROWS})]


def test_trace_problems_accepts_the_logged_shape_and_names_each_difference():
    assert validate.trace_problems(GOOD, "proxied") == []
    assert validate.trace_problems(GOOD, "sqlite") == ["root attribute mlflowkit.topology='proxied'"]
    flat = [GOOD[0], _span("features", "b", None, GOOD[1].outputs, **GOOD[1].attributes)]
    assert validate.trace_problems(flat, "proxied") == ["span 'features' has parent None, expected a (mlflowkit-"
                                                        "validation-trace)"]
    assert "spans ['features'], expected" in validate.trace_problems(GOOD[1:], "proxied")[0]
    no_attribute = [GOOD[0], _span("features", "b", "a", GOOD[1].outputs)]
    assert validate.trace_problems(no_attribute, "proxied") == ["child attribute mlflowkit.rows=None"]


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_every_topology_validates_a_trace_and_where_its_store_keeps_it(name):
    stack = SimpleNamespace(topology=TOPOLOGIES[name], auth_enabled=False)
    names = [step for step, _ in validate.steps_for(stack, ui=False, metrics=False)]  # type: ignore[arg-type]
    where = {Backend.FILE: "trace on disk", Backend.SQLITE: "trace in SQLite",
             Backend.POSTGRESQL: "trace in PostgreSQL"}[TOPOLOGIES[name].backend]
    assert names[-2:] == ["trace", where]
    with_ui = [step for step, _ in validate.steps_for(stack, ui=True, metrics=False)]  # type: ignore[arg-type]
    assert with_ui == [*names, "ui"]


def test_mlflows_quickstart_takes_a_run_on_a_file_store_as_up_prepares_it(tmp_path):
    """`up` leaves the store to MLflow (an empty mlruns that an earlier kit made is removed), so the store has its
    Default experiment and MLflow's quickstart, with no experiment set, works in a new process."""
    (tmp_path / "mlruns").mkdir()  # what `up` made before: a file store without experiment 0
    Stack(TOPOLOGIES["file"], Settings(home=str(tmp_path / "home")))._prepare_data_dir(
        {"MLFLOW_DATA_DIR": str(tmp_path)})
    assert not (tmp_path / "mlruns").exists() and (tmp_path / "mlartifacts").is_dir()
    detail = validate.step_quickstart(_state("file", tmp_path))
    assert "in experiment 0 (Default)" in detail, detail


def test_the_quickstart_step_fails_on_a_file_store_made_over_an_empty_directory(tmp_path):
    """What a fresh `file` or `server-file` stack was before: the step names MLflow's own error."""
    (tmp_path / "mlruns").mkdir()
    with pytest.raises(KitError, match="Could not find experiment with ID 0"):
        validate.step_quickstart(_state("file", tmp_path))
