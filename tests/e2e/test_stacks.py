"""Every topology, for real: up → validate (log, register, alias, load, serve, predict, where it landed) →
down keeping volumes → up → the earlier run and model version are still there → validate again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlflowkit.client import Client
from mlflowkit.errors import KitError
from mlflowkit.topology import TOPOLOGIES
from mlflowkit.validate import Report, steps_for, validate_isolated

pytestmark = pytest.mark.e2e


def assert_passed(report: Report, stack) -> None:
    table = "\n".join(f"{s.name}: {'PASS' if s.ok else 'FAIL'} {s.detail}\n{s.logs}" for s in report.steps)
    assert report.ok, f"validation of {report.topology} failed:\n{table}\n\nlogs:\n{stack.logs(tail=40)}"
    assert [s.name for s in report.steps] == [name for name, _ in steps_for(stack)]


def assert_missing_s3_keys_are_explained(stack) -> None:
    """A client of a topology whose clients write S3, but without the keys: one clear error, with the fix."""
    import tempfile

    conn = dataclasses.replace(stack.connection(), aws_access_key_id=None, aws_secret_access_key=None)
    client = Client(conn)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as handle:
        handle.write("x")
        handle.flush()
        with pytest.raises(KitError) as info, client.run("no-keys") as run:
            run.log_artifact(handle.name)
    assert "Unable to locate credentials" in str(info.value) or "NoCredentialsError" in str(info.value)
    assert "AWS_ACCESS_KEY_ID" in (info.value.hint or "")


@pytest.fixture
def no_ambient_aws(monkeypatch, tmp_path):
    """Nothing from this machine's AWS set-up may stand in for the keys a test withholds."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_ambient_aws")
@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_stack_validates_and_keeps_its_data_across_down_and_up(name, make_stack):
    stack = make_stack(TOPOLOGIES[name])
    stack.up()
    first = validate_isolated(stack)
    assert_passed(first, stack)
    if stack.topology.client_needs_s3_credentials:
        assert_missing_s3_keys_are_explained(stack)

    stack.down()  # volumes kept
    assert stack.states() == []
    if stack.topology.uses_data_dir:
        assert any(Path(stack.env()["MLFLOW_DATA_DIR"]).iterdir()), "the data directory must survive `down`"
    else:
        assert stack.volumes(), "named volumes must survive `down`"

    stack.up()
    second = validate_isolated(stack)
    assert_passed(second, stack)
    assert first.run_id in second.earlier_runs
    assert int(second.model_version) == int(first.model_version) + 1


def test_failed_up_shows_the_cause_and_leaves_no_container(make_stack, e2e_settings):
    settings = dataclasses.replace(e2e_settings, up_timeout=60)
    stack = make_stack(TOPOLOGIES["postgres-s3"], settings, MLFLOW_WORKERS="not-a-number")
    with pytest.raises(KitError) as info:
        stack.up()
    assert "did not come up" in str(info.value)
    assert "not-a-number" in (info.value.details or ""), info.value.details
    assert stack.states() == [], "a failed up must not leave containers behind"


def test_two_stacks_run_side_by_side_and_two_connections_do_not_interfere(make_stack):
    """Distinct projects, ports and stores; one process, two clients, interleaved calls."""
    file_stack, sqlite_stack = make_stack(TOPOLOGIES["file"]), make_stack(TOPOLOGIES["sqlite"])
    file_stack.up()
    sqlite_stack.up()
    a, b = Client(file_stack.connection()), Client(sqlite_stack.connection())
    with a.run("side-by-side") as run_a, b.run("side-by-side") as run_b:
        run_a.log_params({"stack": "file"})
        run_b.log_params({"stack": "sqlite"})
        run_a.log_metrics({"m": 1.0})
        run_b.log_metrics({"m": 2.0})
    assert [r.run_id for r in a.search_runs("side-by-side")] == [run_a.run_id]
    assert [r.run_id for r in b.search_runs("side-by-side")] == [run_b.run_id]
    assert a.get_run(run_a.run_id).data.params == {"stack": "file"}
    assert b.get_run(run_b.run_id).data.metrics == {"m": 2.0}
    for stack in (file_stack, sqlite_stack):
        assert {s.service: s.health for s in stack.states()} == {"mlflow": "healthy"}
