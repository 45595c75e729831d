"""The `metrics` profile (issue 16): Prometheus scrapes every MLflow server of a stack and its SeaweedFS;
validation proves it.

One stack, proxied with --auth (so Prometheus must authenticate to /metrics) and two uvicorn workers (so the
counter is the sum of both workers' files in the server's multiprocess directory), brought up with --metrics.
"""

from __future__ import annotations

import time

import pytest

from mlflowkit.errors import KitError
from mlflowkit.topology import METRICS_SERVICE, TOPOLOGIES
from mlflowkit.validate import check_targets, steps_for, validate_isolated

pytestmark = pytest.mark.e2e


def test_metrics_profile_scrapes_every_server_and_a_stopped_one_fails_the_step(make_stack):
    import requests

    stack = make_stack(TOPOLOGIES["proxied"], MLFLOW_WORKERS="2")
    stack.up(auth=True, metrics=True)
    assert stack.metrics_running
    assert any(m.state.service == METRICS_SERVICE and m.state.health == "healthy" for m in stack.members())

    # Prometheus reads /metrics with the stack's admin: anonymous, the server refuses it like any other call.
    anonymous = requests.get(f"http://127.0.0.1:{stack.env()['MLFLOW_PORT']}/metrics", timeout=10)
    assert anonymous.status_code == 401, anonymous.status_code

    report = validate_isolated(stack, ui=False)
    table = "\n".join(f"{s.name}: {'PASS' if s.ok else 'FAIL'} {s.detail}\n{s.logs}" for s in report.steps)
    assert report.ok, f"validation failed:\n{table}\n\nlogs:\n{stack.logs(tail=40)}"
    names = [s.name for s in report.steps]
    assert names == [name for name, _ in steps_for(stack, ui=False)] and "metrics" in names
    metrics = next(s for s in report.steps if s.name == "metrics")
    assert metrics.detail.startswith("2 target(s) up"), metrics.detail  # the tracking server and SeaweedFS
    seaweedfs = requests.get(f"{stack.metrics_url()}/api/v1/query", params={"query": 'up{job="seaweedfs"}'},
                             timeout=10).json()["data"]["result"]
    assert [(r["metric"]["instance"], r["value"][1]) for r in seaweedfs] == [("s3:9327", "1")], seaweedfs

    # A server and SeaweedFS down: the step's check of the targets fails and names both (once Prometheus has
    # scraped each again).
    stack.compose().call("stop", "mlflow", "s3")
    down = ("http://mlflow:5000/metrics is down", "http://s3:9327/metrics is down")
    deadline, detail = time.monotonic() + 60, ""
    while not all(target in detail for target in down):
        assert time.monotonic() < deadline, f"mlflow and s3 not seen down 60 s after they stopped: {detail}"
        time.sleep(1)
        try:
            check_targets(stack, timeout=10)
        except KitError as exc:
            detail = str(exc)
    assert "Hint:" in detail and "mlflowkit status proxied" in detail, detail
