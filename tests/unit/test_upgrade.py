"""`mlflowkit upgrade` without an engine: bad input in one line, the pins of each version, the .env edit, and the
rollback's order (a failing step puts the old image and the backup back and says which step failed, and why)."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import mlflowkit
from mlflowkit import envfile, upgrade
from mlflowkit.cli import app
from mlflowkit.errors import CommandError, KitError
from mlflowkit.settings import Settings
from mlflowkit.stack import ServiceState, Stack
from mlflowkit.topology import TOPOLOGIES, get

runner = CliRunner()
OLD_VERSIONS = ("2.22.5", "3.1.4")  # the ones the issue asks for: a 2.x and an early 3.x


def one_line(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize("args, expected", [
    (["upgrade", "mysql-s3", "--to", "3.17.2"], "unknown topology 'mysql-s3'; valid: file, sqlite"),
    (["upgrade", "proxied", "--to", "9.9.9"], "MLflow 9.9.9 has no pins in this kit; it has: 2.22.5, 3.1.4, 3.17.2"),
    (["upgrade", "proxied", "--to", "banana"], "'banana' is not an MLflow version"),
    (["upgrade", "file", "--to", "3.17.2"], "file has no server-side database to migrate"),
    (["upgrade", "server-file", "--to", "3.17.2"], "a file store has no schema to migrate"),
    (["upgrade", "sqlite", "--to", "3.17.2"], "`mlflow db upgrade <its tracking URI>` with the new MLflow client"),
    (["upgrade", "ha", "--to", "3.17.2"], "ha: upgrade does not handle replicated stacks yet (its replicas would"),
    (["migrate", "proxied", "ha"], "ha: migrate does not handle replicated stacks yet (its routes between stores"),
    (["migrate", "ha", "proxied"], "`mlflowkit backup ha` and `mlflowkit restore ha` keep its data"),
    (["gc", "ha"], "ha: gc does not handle replicated stacks yet (its artifacts are deleted through the artifacts"),
])
def test_bad_input_is_one_line_before_the_engine_is_asked(args, expected, monkeypatch):
    monkeypatch.setattr(upgrade, "check_engine", lambda: pytest.fail("the engine was asked"))
    result = runner.invoke(app, args)
    assert result.exit_code in (1, 2)
    assert expected in one_line(result.output)
    assert "Traceback" not in result.output


def fake_stack(tmp_path: Path, name: str = "proxied", states: list[ServiceState] | None = None) -> Stack:
    stack = Stack(get(name), Settings(home=str(tmp_path)), log=lambda _: None)
    stack.env_file.parent.mkdir(parents=True, exist_ok=True)
    stack.env_file.write_text("MLFLOW_PORT=5040\nSERVE_PORT=5041\n")
    running = [ServiceState(service, "running", "healthy", 0, "") for service in stack.topology.services]
    stack.states = lambda: running if states is None else states  # type: ignore[method-assign]
    return stack


@pytest.fixture
def engine(monkeypatch):
    monkeypatch.setattr(upgrade, "check_engine", lambda: None)


@pytest.mark.parametrize("running, target, expected", [
    ("3.17.2", "2.22.5", "proxied runs MLflow 3.17.2; 2.22.5 would be a downgrade"),
    ("3.17.2", "3.1.4", "would be a downgrade"),
    ("3.17.2", "3.17.2", "already runs MLflow 3.17.2: nothing to upgrade"),
])
def test_a_downgrade_or_no_change_is_refused(running, target, expected, tmp_path, engine, monkeypatch):
    monkeypatch.setattr(Stack, "server_version", lambda stack: running)
    with pytest.raises(KitError, match=re.escape(expected)):
        upgrade.plan(fake_stack(tmp_path), target)


def test_a_stack_that_is_not_up_is_refused(tmp_path, engine):
    stopped = [ServiceState("postgres", "running", "healthy", 0, ""), ServiceState("mlflow", "exited", "", 1, "")]
    with pytest.raises(KitError, match=r"proxied is not up \(s3, mlflow not running\)") as error:
        upgrade.plan(fake_stack(tmp_path, states=stopped), "3.17.2")
    assert error.value.hint == "`mlflowkit up proxied` first."


def test_every_version_has_a_hash_checked_lock_that_pins_it():
    settings = Settings()
    found = upgrade.versions(settings)
    assert set(OLD_VERSIONS) | {upgrade.default_version(settings)} <= set(found)
    for version, lock in found.items():
        text = lock.read_text()
        pinned = re.search(rf"^mlflow=={re.escape(version)} \\$", text, flags=re.M)
        assert pinned, f"{lock.name} pins no mlflow {version}"
        assert re.search(r"^psycopg2-binary==", text, flags=re.M) and re.search(r"^boto3==", text, flags=re.M)
        blocks = re.findall(r"^\S+==\S+.*?(?=^\S|\Z)", text, flags=re.M | re.S)
        assert blocks and all("--hash=sha256:" in block for block in blocks), f"{lock.name} has unhashed pins"
    assert found[upgrade.default_version(settings)].name == "requirements.lock"  # the kit's own: as before
    others = {lock.name for version, lock in found.items() if version != upgrade.default_version(settings)}
    assert others == {f"mlflow-{version}.lock" for version in found if version != upgrade.default_version(settings)}


@pytest.mark.parametrize("version", OLD_VERSIONS)
def test_old_mlflow_pins_sqlalchemy_below_2_1(version):
    """MLflow before 3.2 imports a pool class SQLAlchemy 2.1 removed."""
    lock = upgrade.lock_file(Settings(), version).read_text()
    pinned = re.search(r"^sqlalchemy==(\d+)\.(\d+)", lock, flags=re.M)
    assert pinned and (int(pinned[1]), int(pinned[2])) < (2, 1)


def test_the_image_build_takes_the_lock_from_a_build_arg_defaulting_to_the_kits_own():
    root = Settings().images_compose_file.parent
    dockerfile = (root / "mlflow" / "Dockerfile").read_text()
    assert f"ARG {upgrade.LOCK_ARG}=requirements.lock\nCOPY ${{{upgrade.LOCK_ARG}}} " in dockerfile
    assert f"{upgrade.LOCK_ARG}: \"${{{upgrade.LOCK_ARG}:-requirements.lock}}\"" in (root / "compose.yaml").read_text()


def test_set_env_value_replaces_appends_and_removes_keeping_the_rest(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# mine\nMLFLOW_PORT=5040  # moved\nMLFLOW_IMAGE=old:1\nS3_BUCKET='my bucket'")
    envfile.set_value(path, "MLFLOW_IMAGE", "mlflowkit/mlflow:3.17.2")
    assert path.read_text() == ("# mine\nMLFLOW_PORT=5040  # moved\nS3_BUCKET='my bucket'\n"
                                "MLFLOW_IMAGE=mlflowkit/mlflow:3.17.2\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    envfile.set_value(path, "MLFLOW_IMAGE", None)
    assert path.read_text() == "# mine\nMLFLOW_PORT=5040  # moved\nS3_BUCKET='my bucket'\n"


def test_up_on_another_version_is_refused_for_a_stack_with_data_and_names_the_way(tmp_path, engine, monkeypatch):
    stack = fake_stack(tmp_path)  # running: it holds data of the default image
    monkeypatch.setattr(upgrade, "ensure_image", lambda *a: pytest.fail("built an image for a refused request"))
    with pytest.raises(KitError, match="proxied already holds data of mlflowkit/mlflow:3.17.2") as error:
        upgrade.choose_version(stack, "2.22.5", lambda _: None)
    assert "`mlflowkit upgrade proxied --to 2.22.5`" in (error.value.hint or "")
    assert "MLFLOW_IMAGE" not in stack.env_file.read_text()


def test_up_on_another_version_names_its_image_in_a_new_env_file(tmp_path, engine, monkeypatch):
    stack = fake_stack(tmp_path, states=[])
    stack.env_file.unlink()
    stack.volumes = lambda: []  # type: ignore[method-assign]
    built = []
    monkeypatch.setattr(upgrade, "ensure_image", lambda settings, version, log: built.append(version))
    upgrade.choose_version(stack, "2.22.5", lambda _: None)
    assert built == ["2.22.5"] and stack.env_file.read_text() == "MLFLOW_IMAGE=mlflowkit/mlflow:2.22.5\n"
    upgrade.choose_version(stack, "3.17.2", lambda _: None)  # the kit's own version: the key goes
    assert stack.env_file.read_text() == ""
    with pytest.raises(KitError, match="MLflow 9.9.9 has no pins in this kit"):
        upgrade.choose_version(stack, "9.9.9", lambda _: None)


class FakeCompose:
    """Records the compose calls of an upgrade; ``fail`` makes the call whose args contain it fail."""

    def __init__(self, calls: list, fail: str | None) -> None:
        self.calls, self.fail = calls, fail

    def call(self, *args, **kwargs):
        self.calls.append(args)
        if self.fail and self.fail in args:
            raise CommandError(["docker", "compose", *args], 1, "", "alembic.util.exc.CommandError: boom")
        return "migrated\n"

    def up(self, services, **kwargs):
        self.calls.append(("up", *services))


def rigged(tmp_path, monkeypatch, fail: str | None):
    """An upgrade of a fake running proxied stack from 2.22.5, with backup and restore recorded."""
    calls: list = []
    stack = fake_stack(tmp_path)
    stack.env_file.write_text("MLFLOW_PORT=5040\nMLFLOW_IMAGE=mlflowkit/mlflow:2.22.5\n")
    stack.compose = lambda with_serve=False: FakeCompose(calls, fail)  # type: ignore[method-assign]
    stack.up = lambda **kwargs: calls.append(("stack.up",))  # type: ignore[method-assign]
    images_seen: list = []
    # The fake server runs the version its .env's image is tagged with (unset: the kit's images).
    monkeypatch.setattr(Stack, "server_version",
                        lambda s: (s.env().get("MLFLOW_IMAGE") or "mlflowkit/mlflow:3.17.2").rsplit(":", 1)[1])
    monkeypatch.setattr(upgrade, "image_exists", lambda image: True)
    monkeypatch.setattr(upgrade, "_validate", lambda s: images_seen.append(s.env().get("MLFLOW_IMAGE")))
    backups = SimpleNamespace(
        backup=lambda s, target, log: calls.append(("backup", target)) or SimpleNamespace(counts={"runs": 4}),
        restore=lambda s, source, log, force=False: calls.append(("restore", source, force,
                                                                  s.env().get("MLFLOW_IMAGE"))),
    )
    monkeypatch.setitem(sys.modules, "mlflowkit.backup", backups)  # `from mlflowkit import backup` finds these
    monkeypatch.setattr(mlflowkit, "backup", backups, raising=False)
    chosen = upgrade.Plan(stack=stack, current="2.22.5", target="3.17.2", image="mlflowkit/mlflow:3.17.2",
                          old_image="mlflowkit/mlflow:2.22.5", backup_dir=tmp_path / "backup")
    return stack, chosen, calls, images_seen


def test_a_good_upgrade_backs_up_stops_migrates_with_the_new_image_starts_and_validates(tmp_path, monkeypatch):
    stack, chosen, calls, images_seen = rigged(tmp_path, monkeypatch, fail=None)
    lines: list[str] = []
    upgrade.run(chosen, lines.append)
    kinds = [call[0] for call in calls]
    assert kinds == ["backup", "stop", "run", "up"]
    assert calls[2][-1] == upgrade.MIGRATE and calls[3][1:] == tuple(stack.topology.servers)
    # Validated on the kit's own images: .env names none any more (its servers and serving run two variants).
    assert images_seen == [None] and "MLFLOW_IMAGE" not in stack.env_file.read_text()
    assert [line.split("]")[0] for line in lines if line.startswith("upgrade [")][::2] == [
        f"upgrade [{n}/6" for n in range(1, 7)]


@pytest.mark.parametrize("failing, step", [("migrate", "migrate"), ("stop", "stop")])
def test_a_failed_step_puts_the_old_image_and_the_backup_back_and_says_why(failing, step, tmp_path, monkeypatch):
    stack, chosen, calls, _ = rigged(tmp_path, monkeypatch, fail=failing)
    with pytest.raises(KitError) as error:
        upgrade.run(chosen, lambda _: None)
    message = str(error.value)
    assert f"failed at step {step!r} (alembic.util.exc.CommandError: boom); rolled back: it runs MLflow 2.22.5" \
        in message and "\n" not in message
    restores = [call for call in calls if call[0] == "restore"]
    assert restores == [("restore", tmp_path / "backup", True, "mlflowkit/mlflow:2.22.5")]  # old image first
    assert stack.env()["MLFLOW_IMAGE"] == "mlflowkit/mlflow:2.22.5"
    assert calls[-1] == ("stack.up",)


def test_every_topology_with_a_database_server_can_be_upgraded():
    upgradable = [t.name for t in TOPOLOGIES.values() if upgrade.MIGRATE in t.one_shots and not t.balancer]
    assert {"postgres-s3", "proxied", "artifacts-only"} == set(upgradable)


def test_a_rollback_that_fails_too_says_where_the_backup_is(tmp_path, monkeypatch):
    stack, chosen, calls, _ = rigged(tmp_path, monkeypatch, fail="migrate")

    def broken_restore(*args, **kwargs):
        raise RuntimeError("S3 unreachable")

    monkeypatch.setattr(sys.modules["mlflowkit.backup"], "restore", broken_restore)
    with pytest.raises(KitError) as error:
        upgrade.run(chosen, lambda _: None)
    assert "failed at step 'migrate' (alembic.util.exc.CommandError: boom), and the rollback failed too " \
        "(RuntimeError: S3 unreachable)" in error.value.message
    assert f"`mlflowkit restore proxied --from {tmp_path / 'backup'} --force`" in error.value.hint
