"""checkov's policy scan of charts/mlflowkit, rendered for every topology and edge-value set: nothing fails but
the exceptions listed with their reasons in charts/checkov-skips.yaml, and each of those still fires (no stale
exception). checkov runs from its own cached venv (tests/chart/checkov.py), never the kit's."""

from __future__ import annotations

import json
import os
import subprocess

import yaml

from tests.chart.checkov import checkov
from tests.chart.render import CHART, documents
from tests.unit.test_chart import CASES, NAMES, values

SKIPS = CHART.parent / "checkov-skips.yaml"


def test_checkov_finds_nothing_but_the_listed_exceptions(tmp_path):
    for topology in NAMES:
        for case in CASES:
            (tmp_path / f"{topology}-{case}.yaml").write_text(yaml.safe_dump_all(documents(values(topology, case))))
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    proc = subprocess.run([str(checkov()), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download",
                           "--quiet", "--compact", "-o", "json"], capture_output=True, text=True, timeout=300,
                          env=env, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: findings (compared below)
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = {check["check_id"]: check for r in reports for check in r["results"]["failed_checks"]}
    passed = sum(r["summary"]["passed"] for r in reports)
    accepted = yaml.safe_load(SKIPS.read_text())
    assert all(len(reason) > 40 for reason in accepted.values()), "each exception says why"
    unexpected = {cid: f"{c['check_name']} ({c['file_path']}: {c['resource']})" for cid, c in failed.items()
                  if cid not in accepted}
    assert not unexpected, unexpected
    assert set(accepted) <= set(failed), f"stale exceptions: {set(accepted) - set(failed)}"
    assert passed > 1000
