"""The `metrics` step's reading of Prometheus' answers (shapes as Prometheus 2.42's HTTP API gives them)."""

from __future__ import annotations

from types import SimpleNamespace

from mlflowkit import validate
from mlflowkit.topology import TOPOLOGIES


def targets(*health: str) -> dict:
    return {"status": "success", "data": {"activeTargets": [
        {"scrapeUrl": f"http://server{i}:5000/metrics", "health": h, "lastError": "" if h == "up" else "EOF"}
        for i, h in enumerate(health)], "droppedTargets": []}}


def test_every_target_must_be_up_and_there_must_be_one():
    assert validate.target_problems(targets("up", "up")) == []
    assert validate.target_problems(targets("up", "down")) == ["http://server1:5000/metrics is down: EOF"]
    assert validate.target_problems(targets("unknown")) == ["http://server0:5000/metrics is unknown: EOF"]
    assert validate.target_problems(targets()) == ["Prometheus has no active scrape target"]


def test_the_counter_is_the_instant_querys_value_and_zero_before_any_sample():
    answer = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {},
                                                                                "value": [1795709420.6, "3"]}]}}
    assert validate.query_value(answer) == 3.0
    assert validate.query_value({"status": "success", "data": {"resultType": "vector", "result": []}}) == 0.0


def test_the_metrics_step_comes_with_the_profile_only():
    stack = SimpleNamespace(topology=TOPOLOGIES["proxied"], auth_enabled=False)
    without = [name for name, _ in validate.steps_for(stack, ui=False, metrics=False)]  # type: ignore[arg-type]
    with_profile = [name for name, _ in validate.steps_for(stack, ui=True, metrics=True)]  # type: ignore[arg-type]
    assert "metrics" not in without and with_profile == [*without, "metrics", "ui"]
