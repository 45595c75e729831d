"""The time ledger (tests/ledger.py) and the grouping of tests on pytest-xdist workers (tests/conftest.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import ledger

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_sums_both_tiers_per_file_slowest_first_and_flags_a_file_over_its_share():
    quick = {"tier": "test", "wall_seconds": 300.0,
             "files": {"tests/unit/a.py": {"seconds": 12.0, "tests": 3}, "tests/e2e/test_stacks.py":
                       {"seconds": 90.0, "tests": 1}}}
    slow = {"tier": "test-slow", "wall_seconds": 1800.0,
            "files": {"tests/e2e/test_stacks.py": {"seconds": 2300.0, "tests": 14},
                      "tests/e2e/new.py": {"seconds": 120.0, "tests": 2}}}
    lines = ledger.table([quick, slow])
    rows = [line.split() for line in lines[1:4]]
    assert [row[0] for row in rows] == ["tests/e2e/test_stacks.py", "tests/e2e/new.py", "tests/unit/a.py"]
    assert rows[0][1:4] == ["39.8", "15", f"{ledger.SHARES['tests/e2e/test_stacks.py']:.1f}"]
    assert "OVER" in lines[1] and "OVER" in lines[2] and "OVER" not in lines[3]  # 39.8 > 36; 2.0 > 0.5; 0.2
    assert lines[-2] == "tier test: 4 tests, 5.0 min wall (1.7 min of test time)"
    assert lines[-1] == "tier test-slow: 16 tests, 30.0 min wall (40.3 min of test time)"


def test_a_run_prints_its_ledger_and_writes_it_as_json(pytester: pytest.Pytester):
    pytester.makepyfile(test_one="def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    out = pytester.path / "ledger.json"
    result = pytester.runpytest("-p", "tests.ledger", "--ledger-json", str(out), "--ledger-tier", "mine")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*time ledger*", "test_one.py *2 *0.5", "tier mine: 2 tests*"])
    data = json.loads(out.read_text())
    assert data["tier"] == "mine" and data["files"]["test_one.py"]["tests"] == 2


def test_an_xdist_group_runs_on_one_worker_and_the_others_spread(pytester: pytest.Pytester, monkeypatch):
    """Two real workers (`--dist loadgroup`, as the Makefile runs the suite): a group of six tests lands on one
    worker, whichever it is, while ungrouped tests use both. Without the fix in tests/conftest.py, pytest 9 with
    xdist 3.8 spreads the group (seen: g1 on gw0, g2 on gw1)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    record = ("import os, time\n\ndef note(name):\n    time.sleep(0.2)\n"
              "    with open(os.environ['WHERE'], 'a') as f:\n"
              "        f.write(name + ' ' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n")
    pytester.makepyfile(
        test_grouped=record + "import pytest\npytestmark = pytest.mark.xdist_group('shared')\n"
        + "".join(f"\ndef test_g{n}():\n    note('g{n}')\n" for n in range(6)),
        test_free=record + "".join(f"\ndef test_f{n}():\n    note('f{n}')\n" for n in range(8)))
    where = pytester.path / "where.txt"
    monkeypatch.setenv("WHERE", str(where))
    result = pytester.runpytest_subprocess("-p", "tests.conftest", "-p", "xdist", "-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=14)
    seen = dict(line.split() for line in where.read_text().splitlines())
    assert len({seen[f"g{n}"] for n in range(6)}) == 1, seen
    assert {seen[f"f{n}"] for n in range(8)} == {"gw0", "gw1"}, seen
