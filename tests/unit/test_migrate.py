"""`mlflowkit migrate` without an engine: pairs, artifact roots and URI rewriting, experiment renumbering on a real
SQLite database, the count table, the sample comparison and the CLI's one-line errors."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from mlflowkit import migrate as migration
from mlflowkit.cli import app
from mlflowkit.errors import KitError
from mlflowkit.sql_rows import INT32_MAX, plan_renumbering, renumber_experiments, rewrite_uris, rewrite_value
from mlflowkit.topology import TOPOLOGIES

T = TOPOLOGIES
LOCAL_ENV = {"MLFLOW_DATA_DIR": "/data/a"}


@pytest.mark.parametrize(("source", "target", "expected"), [
    ("file", "sqlite", migration.Route.FILESTORE_TO_SQLITE),
    ("server-file", "sqlite", migration.Route.FILESTORE_TO_SQLITE),
    ("sqlite", "proxied", migration.Route.LOCAL_TO_POSTGRES),
    ("file", "postgres-s3", migration.Route.LOCAL_TO_POSTGRES),
    ("server-file", "proxied", migration.Route.LOCAL_TO_POSTGRES),
    ("proxied", "artifacts-only", migration.Route.POSTGRES_TO_POSTGRES),
    ("artifacts-only", "proxied", migration.Route.POSTGRES_TO_POSTGRES),
])
def test_supported_pairs(source, target, expected):
    assert migration.route(T[source], T[target]) is expected


@pytest.mark.parametrize(("source", "target"), [("proxied", "sqlite"), ("sqlite", "file"), ("postgres-s3", "file"),
                                                ("file", "server-file"), ("sqlite", "server-file")])
def test_unsupported_pairs_say_which_are(source, target):
    with pytest.raises(KitError, match="is not supported") as caught:
        migration.route(T[source], T[target])
    assert migration.SUPPORTED in str(caught.value)


def test_same_topology_twice_is_refused():
    with pytest.raises(KitError, match="the same topology"):
        migration.route(T["proxied"], T["proxied"])


def test_every_pair_is_decided():
    """Every ordered pair either has a route or fails with the supported list: nothing falls through."""
    for source in T.values():
        for target in T.values():
            try:
                migration.route(source, target)
            except KitError as exc:
                assert "supported" in str(exc) or "does not handle replicated stacks" in str(exc)


def test_artifact_roots_per_topology():
    assert migration.artifact_root(T["file"], LOCAL_ENV) == "file:///data/a/mlruns"
    assert migration.artifact_root(T["sqlite"], LOCAL_ENV) == "file:///data/a/mlartifacts"
    assert migration.artifact_root(T["server-file"], LOCAL_ENV) == "file:///data/a/mlartifacts"
    assert migration.artifact_root(T["postgres-s3"], {"S3_BUCKET": "b"}) == "s3://b"
    assert migration.artifact_root(T["postgres-s3"], {}) == "s3://mlflow"
    assert migration.artifact_root(T["proxied"], {}) == "mlflow-artifacts:"
    assert migration.artifact_root(T["artifacts-only"], {"ARTIFACTS_PORT": "5052"}) == \
        "mlflow-artifacts://127.0.0.1:5052"


@pytest.mark.parametrize(("source", "source_env", "target", "target_env", "before", "after"), [
    ("sqlite", LOCAL_ENV, "proxied", {}, "file:///data/a/mlartifacts/1/r/artifacts", "mlflow-artifacts:/1/r/artifacts"),
    ("sqlite", LOCAL_ENV, "proxied", {}, "/data/a/mlartifacts/1", "mlflow-artifacts:/1"),
    # an experiment located at the root itself (sqlite's client default): runs below it must keep their slash
    ("sqlite", LOCAL_ENV, "proxied", {}, "file:///data/a/mlartifacts", "mlflow-artifacts:/"),
    ("sqlite", LOCAL_ENV, "postgres-s3", {}, "file:///data/a/mlartifacts", "s3://mlflow"),
    ("file", LOCAL_ENV, "postgres-s3", {}, "file:///data/a/mlruns/8467549083986956/m/artifacts",
     "s3://mlflow/8467549083986956/m/artifacts"),
    ("file", LOCAL_ENV, "sqlite", {"MLFLOW_DATA_DIR": "/data/b"}, "file:///data/a/mlruns/5",
     "file:///data/b/mlartifacts/5"),
    ("proxied", {}, "artifacts-only", {"ARTIFACTS_PORT": "5052"}, "mlflow-artifacts:/2/r",
     "mlflow-artifacts://127.0.0.1:5052/2/r"),
    ("artifacts-only", {"ARTIFACTS_PORT": "5052"}, "proxied", {}, "mlflow-artifacts://127.0.0.1:5052/2/r",
     "mlflow-artifacts:/2/r"),
    ("sqlite", LOCAL_ENV, "proxied", {}, "models:/m-123", "models:/m-123"),  # not an artifact URI: kept
    ("sqlite", LOCAL_ENV, "proxied", {}, "file:///data/a/mlartifacts-other/x", "file:///data/a/mlartifacts-other/x"),
])
def test_uris_are_rewritten_to_the_targets_root(source, source_env, target, target_env, before, after):
    pairs = migration.uri_prefixes(T[source], source_env, T[target], target_env)
    assert migration.rewriter(pairs)(before) == after


def test_the_sql_rewrite_agrees_with_the_python_one(tmp_path):
    pairs = migration.uri_prefixes(T["sqlite"], LOCAL_ENV, T["postgres-s3"], {})
    values = ["file:///data/a/mlartifacts/1", "/data/a/mlartifacts/1/r/artifacts", "file:///data/a/mlartifacts",
              "models:/m-1", "file:///elsewhere/x", None]
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE runs (run_uuid VARCHAR(32), artifact_uri VARCHAR(200))")
        conn.exec_driver_sql("CREATE TABLE trace_tags (key VARCHAR(250), value VARCHAR(8000), request_id VARCHAR(50))")
        for number, value in enumerate(values):
            conn.exec_driver_sql("INSERT INTO runs VALUES (?, ?)", (str(number), value))
            conn.exec_driver_sql("INSERT INTO trace_tags VALUES ('mlflow.artifactLocation', ?, ?)",
                                 (value, str(number)))
        assert rewrite_uris(conn, pairs) == 2 * 3
        for table, column in (("runs", "artifact_uri"), ("trace_tags", "value")):
            got = [row[0] for row in conn.exec_driver_sql(f"SELECT {column} FROM {table} ORDER BY rowid")]
            assert got == [rewrite_value(value, pairs) for value in values]
    assert rewrite_value("file:///data/a/mlartifacts", pairs) == "s3://mlflow"


def test_renumbering_keeps_small_ids_and_creation_order():
    big1, big2 = 846754908398695693, 123456789012345678
    plan = plan_renumbering([(0, 1), (big1, 200), (big2, 300), (7, 5)])
    assert plan == {big1: 8, big2: 9}
    assert plan_renumbering([(0, 1), (3, 2)]) == {}
    assert plan_renumbering([(big2, None)]) == {big2: 1}
    assert all(new <= INT32_MAX for new in plan.values())


def test_renumbering_updates_every_column_that_names_an_experiment(tmp_path):
    big = 846754908398695693
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as db:
        db.executescript(f"""
            CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT, creation_time BIGINT);
            CREATE TABLE runs (run_uuid TEXT, experiment_id INTEGER REFERENCES experiments (experiment_id));
            CREATE TABLE trace_info (request_id TEXT, experiment_id INTEGER);
            CREATE TABLE entity_associations (source_type TEXT, source_id TEXT, destination_type TEXT,
                                              destination_id TEXT);
            INSERT INTO experiments VALUES (0, 'Default', 1), ({big}, 'e1', 2);
            INSERT INTO runs VALUES ('r1', {big}), ('r0', 0);
            INSERT INTO trace_info VALUES ('t1', {big});
            INSERT INTO entity_associations VALUES ('run', 'r1', 'experiment', '{big}');
        """)
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        assert renumber_experiments(conn) == {big: 1}
    engine.dispose()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT experiment_id FROM experiments ORDER BY experiment_id").fetchall() == [(0,), (1,)]
        assert dict(db.execute("SELECT run_uuid, experiment_id FROM runs").fetchall()) == {"r1": 1, "r0": 0}
        assert db.execute("SELECT experiment_id FROM trace_info").fetchone() == (1,)
        assert db.execute("SELECT destination_id FROM entity_associations").fetchone() == ("1",)


def test_artifact_directories_of_a_file_store(tmp_path):
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE runs (artifact_uri TEXT); CREATE TABLE logged_models (artifact_location TEXT);
            CREATE TABLE model_versions (storage_location TEXT); CREATE TABLE trace_tags (key TEXT, value TEXT);
            INSERT INTO runs VALUES ('file:///d/mlruns/9/r1/artifacts'), ('s3://elsewhere/x');
            INSERT INTO logged_models VALUES ('file:///d/mlruns/9/models/m-1/artifacts');
            INSERT INTO model_versions VALUES ('file:///d/mlruns/9/models/m-1/artifacts');
            INSERT INTO trace_tags VALUES ('mlflow.artifactLocation', 'file:///d/mlruns/9/traces/tr-1/artifacts');
        """)
    from pathlib import Path

    assert migration.artifact_directories(path, Path("/d/mlruns")) == [
        "9/models/m-1/artifacts", "9/r1/artifacts", "9/traces/tr-1/artifacts"]


def test_count_table_says_what_differs_and_the_expected_differences():
    before = {"experiments": 3, "runs": 2, "metrics": 10, "traces": 1}
    rows = migration.compare_counts(before, {"experiments": 4, "runs": 2, "metrics": 9, "traces": 0},
                                    dropped_points=1, default_added=True)
    verdicts = {kind: verdict for kind, _, _, verdict in rows}
    assert verdicts["experiments"].startswith("equal") and "Default" in verdicts["experiments"]
    assert verdicts["metrics"].startswith("equal") and "duplicate" in verdicts["metrics"]
    assert verdicts["runs"] == "equal" and verdicts["traces"] == "DIFFERS"
    outcome = migration.Outcome("a", "b", counts=rows)
    assert not outcome.ok


def test_sample_comparison_names_the_differing_fields():
    want = {"run r1": {"params": {"a": "1"}, "start": 5, "metrics": {"loss": [(0, 1, 0.5)]}},
            "run r2": {"start": 1}}
    got = {"run r1": {"params": {"a": "2"}, "start": 5, "metrics": {"loss": [[0, 1, 0.5]]}}}
    rows = migration.compare_sample(want, got)
    assert rows[0] == ("run r1", False, 'params: {"a": "1"} != {"a": "2"}')
    assert rows[1] == ("run r2", False, "missing in the target")
    assert migration.compare_sample(want, want) == [("run r1", True, "3 fields equal"), ("run r2", True,
                                                                                         "1 fields equal")]


@pytest.mark.parametrize(("args", "message"), [
    (["migrate", "sqlite", "nope"], "nope"),
    (["migrate", "sqlite", "sqlite"], "the same topology"),
    (["migrate", "proxied", "sqlite"], "is not supported"),
])
def test_cli_bad_input_is_one_line_before_any_engine(args, message, monkeypatch):
    def no_engine(*_args, **_kwargs):
        raise AssertionError("the engine was asked")

    monkeypatch.setattr(migration, "migrate", no_engine)
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
