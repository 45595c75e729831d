"""Every topology, for real: up → validate (log, register, alias, load, serve, predict, where it landed) →
down keeping volumes → up → the earlier run and model version are still there → validate again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlflowkit.errors import KitError
from mlflowkit.topology import TOPOLOGIES
from mlflowkit.validate import Report, steps_for, validate_isolated

pytestmark = pytest.mark.e2e


def assert_passed(report: Report, stack) -> None:
    table = "\n".join(f"{s.name}: {'PASS' if s.ok else 'FAIL'} {s.detail}\n{s.logs}" for s in report.steps)
    assert report.ok, f"validation of {report.topology} failed:\n{table}\n\nlogs:\n{stack.logs(tail=40)}"
    assert [s.name for s in report.steps] == [name for name, _ in steps_for(stack)]


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_stack_validates_and_keeps_its_data_across_down_and_up(name, make_stack):
    stack = make_stack(TOPOLOGIES[name])
    stack.up()
    first = validate_isolated(stack)
    assert_passed(first, stack)

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
