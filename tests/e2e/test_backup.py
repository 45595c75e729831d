"""Backup and restore on real stacks: backup -> down --volumes (and the local data gone) -> restore -> every count
and checksum equal, the model the backup holds served and predicting; a restore interrupted halfway finishes when
run again; bad input refused with one line."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from mlflowkit import backup as backups
from mlflowkit.client import Client
from mlflowkit.errors import KitError
from mlflowkit.topology import TOPOLOGIES
from mlflowkit.validate import _train, validate_isolated
from tests.e2e.conftest import populate
from tests.e2e.test_stacks import assert_passed

pytestmark = pytest.mark.e2e


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wipe(stack) -> None:
    """What `down --volumes` leaves of a local topology: its host data directory, emptied too."""
    stack.down(volumes=True)
    if stack.topology.uses_data_dir:
        data = stack.settings.data_dir(stack.topology.name)
        shutil.rmtree(data)
        data.mkdir()


@pytest.mark.parametrize("name", ["postgres-s3", "proxied", "sqlite", "file"])
def test_backup_then_restore_into_an_empty_stack_gives_everything_back(name, make_stack, tmp_path, monkeypatch):
    stack = make_stack(TOPOLOGIES[name])
    stack.up()
    populate(stack, "backup")
    before = backups.counts(Client(stack.connection()))
    assert before["runs"] >= 2 and before["model_versions"] == 1 and before["aliases"] == 1
    assert before["metrics"] >= 3 + 3 + 5 and before["params"] >= 2 and before.get("traces", 0) >= 1, before

    snapshot = tmp_path / "snapshot"
    manifest = backups.backup(stack, snapshot, log)
    assert manifest.counts == before and manifest.topology == name and manifest.mlflow_version == "3.17.2"
    # A file store without a server keeps artifacts inside the store (metadata/mlruns/<experiment>/…).
    copied = [*manifest.artifacts, *(p.as_posix() for p in (snapshot / "metadata").rglob("*") if p.is_file())]
    assert any(key.endswith("MLmodel") for key in copied)
    assert any(key.endswith("reports/validation.json") for key in copied)
    with pytest.raises(KitError, match="is not empty"):
        backups.backup(stack, snapshot, log)

    wipe(stack)
    # Killed halfway: the metadata is back, the artifacts are not. The marker lets the same restore finish.
    real = backups._restore_artifacts

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(backups, "_restore_artifacts", killed)
    with pytest.raises(KeyboardInterrupt):
        backups.restore(stack, snapshot, log)
    monkeypatch.setattr(backups, "_restore_artifacts", real)
    marker = stack.settings.state_dir(name) / backups.MARKER
    assert json.loads(marker.read_text())["source"] == str(snapshot.resolve())

    restored = backups.restore(stack, snapshot, log)  # not empty now, but resuming the same snapshot
    assert not marker.exists()
    assert backups.counts(Client(stack.connection())) == before == restored.counts

    model, frame, expected = _train()
    with stack.serving() as served:  # models:/mlflowkit-validation@champion, from the restored registry
        assert served.predict(frame) == expected

    with pytest.raises(KitError, match="holds data"):
        backups.restore(stack, snapshot, log)
    after = validate_isolated(stack, ui=False)
    assert_passed(after, stack, ui=False)
    assert int(after.model_version) == 2  # the restored version 1 is there; validation registered the next


def test_users_of_auth_come_back_with_the_restore_and_the_stacks_admin_keeps_its_password(make_stack, tmp_path):
    import requests

    from mlflowkit import envfile

    stack = make_stack(TOPOLOGIES["proxied"])
    stack.up(auth=True)
    api = f"{stack.ui_url()}/api/2.0/mlflow"

    def status(auth: tuple[str, str] | None) -> int:
        return requests.get(f"{api}/experiments/search", params={"max_results": 1}, auth=auth, timeout=10).status_code

    def admin() -> tuple[str, str]:
        values = stack.env()
        return values["MLFLOW_AUTH_ADMIN_USERNAME"], values["MLFLOW_AUTH_ADMIN_PASSWORD"]

    created = requests.post(f"{api}/users/create", json={"username": "alice", "password": "alice-pass-1"},
                            auth=admin(), timeout=10)
    assert created.status_code == 200, created.text
    manifest = backups.backup(stack, tmp_path / "snapshot", log)
    assert manifest.auth == {server: 2 for server in stack.topology.servers}  # the admin and alice

    stack.down(volumes=True)  # a new stack, whose .env names another admin password
    envfile.set_value(stack.env_file, "MLFLOW_AUTH_ADMIN_PASSWORD", "the-new-stacks-admin-password")
    stack.up(auth=True)
    assert (status(("alice", "alice-pass-1")), status(admin())) == (401, 200)

    backups.restore(stack, tmp_path / "snapshot", log)  # verifies the users' count too
    assert (status(None), status(("alice", "wrong")), status(("alice", "alice-pass-1")), status(admin())) \
        == (401, 401, 200, 200)
    assert admin()[1] == "the-new-stacks-admin-password"


def test_bad_input_is_one_line(e2e_settings, tmp_path):
    from mlflowkit.stack import Stack

    with pytest.raises(KitError, match="is not a backup of this kit"):
        backups.restore(Stack(TOPOLOGIES["proxied"], e2e_settings), tmp_path, log)
    (tmp_path / backups.MANIFEST).write_text(json.dumps({
        "topology": "sqlite", "kit_version": "0.1.0", "mlflow_version": "3.17.2", "created": "",
        "metadata": "mlruns.db", "counts": {}, "artifacts": {}, "data_dir": ""}))
    with pytest.raises(KitError, match="is a backup of sqlite, not of proxied"):
        backups.restore(Stack(TOPOLOGIES["proxied"], e2e_settings), tmp_path, log)
