"""The bench cannot rot: a quick run on postgres-s3 measures every section and writes JSON, table and plots."""

from __future__ import annotations

import json

import pytest

from mlflowkit.bench.run import QUICK, run_bench

pytestmark = pytest.mark.e2e


def test_quick_bench_measures_every_section_and_writes_its_report(e2e_settings, tmp_path):
    path, table = run_bench(["postgres-s3"], QUICK, e2e_settings, tmp_path / "out", log=print)
    data = json.loads(path.read_text())
    figures = data["figures"]
    sections = {f["section"] for f in figures}
    assert sections == {"boot", "footprint", "tracking", "floor", "artifacts", "serving"}, sections
    measured = [f for f in figures if f["value"] is not None]
    assert all(f["value"] > 0 for f in measured), [f for f in measured if f["value"] <= 0]
    assert all(f["extra"].get("errors", 0) == 0 for f in figures), [f for f in figures if f["extra"].get("errors")]
    tracking = [f for f in figures if f["section"] == "tracking"]
    assert tracking and all(f["limit"] and f["ratio"] for f in tracking)
    boot = {f["case"] for f in figures if f["section"] == "boot"}
    assert {"up --wait, total", "database ready", "S3 ready", "mlflow: stores prepared", "server serving"} <= boot
    assert data["machine"]["cores"] >= 1 and data["machine"]["mlflow"] == "3.17.2"
    assert "| tracking | postgres-s3 | batch 10, 1 client |" in table
    plots = {p.name for p in path.parent.glob("*.png")}
    assert {"artifacts-MB-per-s.png", "boot-s.png", "tracking-rows-per-s.png", "serving-ms.png"} <= plots, plots
    assert (path.parent / "table.md").read_text().strip() == table.strip()
    # the bench leaves no stack of its own behind
    from mlflowkit.docker import run

    project = f"label=com.docker.compose.project={e2e_settings.project_prefix}-bench-postgres-s3"
    left = run(["docker", "ps", "--all", "--quiet", "--filter", project], timeout=30).stdout
    assert left.strip() == ""
