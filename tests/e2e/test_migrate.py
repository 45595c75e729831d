"""`mlflowkit migrate` on real stacks: populate a source (validation run, model and alias, a trace, a metric
history), migrate, then every count equal, the sample equal field by field, IDs and timestamps kept, and the
migrated model served by the target through models:/mlflowkit-validation@champion. Two stacks at a time."""

from __future__ import annotations

import sys

import pytest

from mlflowkit import backup as backups
from mlflowkit import migrate as migration
from mlflowkit.client import Client
from mlflowkit.errors import KitError
from mlflowkit.sql_rows import INT32_MAX
from mlflowkit.topology import TOPOLOGIES
from mlflowkit.validate import MODEL_NAME, _train, validate_isolated
from tests.e2e.conftest import populate
from tests.e2e.test_stacks import assert_passed

pytestmark = pytest.mark.e2e


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def migrate_and_check(source, target, history_run: str) -> migration.Outcome:
    before = Client(source.connection()).get_run(history_run)
    outcome = migration.migrate(source, target, log)
    for row in outcome.counts + outcome.sample:
        log(f"  {row}")
    assert outcome.ok, (outcome.counts, [row for row in outcome.sample if not row[1]])
    assert any(item == f"run {history_run}" for item, _, _ in outcome.sample)
    assert any(item.startswith("trace ") for item, _, _ in outcome.sample)
    assert any(item == f"model {MODEL_NAME}" for item, _, _ in outcome.sample)

    after = Client(target.connection()).get_run(history_run)  # the same run ID, timestamps and values
    assert (after.info.start_time, after.info.end_time) == (before.info.start_time, before.info.end_time)
    assert after.data.params == {"alpha": "0.5", "layers": "3"} and after.data.tags["team"] == "ml"
    target_root = migration.artifact_root(target.topology, target.env())
    assert after.info.artifact_uri.startswith(target_root + "/"), after.info.artifact_uri

    model, frame, expected = _train()
    with target.serving() as served:  # models:/mlflowkit-validation@champion, migrated
        assert served.predict(frame) == expected
    with pytest.raises(KitError, match="already holds data"):
        migration.migrate(source, target, log)
    return outcome


def populated_pair(make_stack, source_name: str, target_name: str):
    """Both stacks up, the source populated; (source, target, the history run's id)."""
    source, target = make_stack(TOPOLOGIES[source_name]), make_stack(TOPOLOGIES[target_name])
    source.up()
    target.up()
    return source, target, populate(source, "migrate")


def test_sqlite_to_proxied(make_stack):
    source, target, history = populated_pair(make_stack, "sqlite", "proxied")
    migrate_and_check(source, target, history)
    after = validate_isolated(target, ui=False)  # the migrated stack takes new work: the next version, a fresh run
    assert_passed(after, target, ui=False)
    assert int(after.model_version) == 2


def test_file_to_postgres_s3_renumbers_experiments(make_stack):
    source, target, history = populated_pair(make_stack, "file", "postgres-s3")
    outcome = migrate_and_check(source, target, history)
    assert outcome.renumbered and all(old > INT32_MAX >= new for old, new in outcome.renumbered.items())
    client = Client(target.connection())
    assert {e.name for e in client.experiments()} >= {"mlflowkit-validation", "migrate-traces", "migrate-history"}


def test_file_to_sqlite_through_migrate_filestore(make_stack):
    outcome = migrate_and_check(*populated_pair(make_stack, "file", "sqlite"))
    assert not outcome.renumbered  # SQLite's integer columns take the file store's 19-digit experiment ids


def test_server_file_to_postgres_s3(make_stack):
    source, target, history = populated_pair(make_stack, "server-file", "postgres-s3")
    migrate_and_check(source, target, history)
    assert_passed(validate_isolated(target, ui=False), target, ui=False)


@pytest.mark.parametrize("source_name, target_name", [("proxied", "artifacts-only"), ("artifacts-only", "proxied")])
def test_between_postgresql_stacks(source_name, target_name, make_stack):
    source, target, history = populated_pair(make_stack, source_name, target_name)
    migrate_and_check(source, target, history)
    assert backups.counts(Client(target.connection()))["traces"] >= 1  # populate's trace (and validation's)


def test_bad_input_is_one_line(e2e_settings):
    from mlflowkit.stack import Stack

    with pytest.raises(KitError, match="is not up"):
        migration.migrate(Stack(TOPOLOGIES["sqlite"], e2e_settings), Stack(TOPOLOGIES["proxied"], e2e_settings), log)
