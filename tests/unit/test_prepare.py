"""The server plugin's store preparation (stacks/images/mlflow/plugin/mlflowkit_server/prepare.py) without an
engine: what a schema needs, MLflow's real schema code on a SQLite file (PostgreSQL adds only the advisory lock),
and the bounded wait. The PostgreSQL and S3 paths run in every PostgreSQL stack's boot (tests/e2e)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stacks" / "images" / "mlflow" / "plugin"))
from mlflowkit_server import prepare  # noqa: E402


@pytest.mark.parametrize(("found", "has_tables", "action"), [
    (None, False, "create"),        # an empty database
    ("head", True, "none"),         # this MLflow's schema
    ("old", True, "upgrade"),       # an older MLflow's
    ("newer", True, "none"),        # a newer MLflow's: MLflow itself refuses it
    (None, True, "upgrade"),        # tables but no revision: `mlflow db upgrade` says what is wrong
])
def test_schema_action(found, has_tables, action):
    assert prepare.schema_action(found, has_tables, "head", {"head", "old"}) == action


def test_an_empty_database_gets_this_mlflows_schema_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    loaded = threading.Thread(target=lambda: None)
    loaded.start()
    first = prepare.prepare_schema(uri, 5, loaded)
    assert first.startswith("an empty database: MLflow's tables created at revision ")
    head = first.rsplit(" ", 1)[1]
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar() == head
        assert "experiments" in sqlalchemy.inspect(connection).get_table_names()
    assert prepare.prepare_schema(uri, 5, loaded) == f"schema at revision {head}"
    with engine.begin() as connection:  # a newer MLflow's revision is left for MLflow to refuse
        connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'"))
    assert "f00dfeedbeef, which this MLflow does not know" in prepare.prepare_schema(uri, 5, loaded)
    engine.dispose()


def test_a_store_that_never_answers_fails_in_one_line_after_the_limit():
    calls = []

    def refused():
        calls.append(1)
        raise ConnectionRefusedError("connection refused\nmore detail")

    with pytest.raises(SystemExit) as error:
        prepare.patiently("S3", refused, (ConnectionRefusedError,), 0.3)
    assert str(error.value) == "prepare: S3 did not answer in 0 s: connection refused"
    assert len(calls) >= 2


def test_other_errors_are_not_waited_out():
    def broken():
        raise ValueError("a wrong key")

    with pytest.raises(ValueError):
        prepare.patiently("S3", broken, (ConnectionRefusedError,), 5)


def test_anything_but_an_mlflow_command_is_refused():
    with pytest.raises(SystemExit) as error:
        prepare.main(["gunicorn", "app"])
    assert "usage: python -m mlflowkit_server.prepare [mlflow <args>]" in str(error.value)
