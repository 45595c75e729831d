"""The time ledger: minutes per test file and for the whole run, printed at the end of every pytest run.

A file's minutes are the sum of its tests' setup, call and teardown (with pytest-xdist, summed over workers: what
the file costs, not when it ended). Each file has a share of CI's time (:data:`SHARES`, minutes; the table in
docs/development.md): a file over its share is flagged ``OVER`` in the log, so the run that makes a file grow
says so. ``--ledger-json PATH`` also writes the ledger as JSON (CI prints both tiers' ledgers together from it:
``python -m tests.ledger a.json b.json``).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Minutes each file may take in a full run, summed over workers (docs/development.md). A file that is not listed
# has DEFAULT_SHARE. Raise a share in the same commit that makes a file slower, and say why.
DEFAULT_SHARE = 0.5
SHARES: dict[str, float] = {  # test minutes (the slow tier on three workers since 2026-12-08: each test ~30 % longer
    # than on two): the runs of 2026-12-07/08 + ~10 %
    "tests/e2e/test_stacks.py": 36.0,  # with each topology's tutorial since 2026-12-07
    "tests/e2e/test_ha.py": 18.0,
    "tests/e2e/test_upgrade.py": 25.0,
    "tests/e2e/test_migrate.py": 14.0,
    "tests/e2e/test_tutorials.py": 6.5,  # the day-two ones (each topology's: test_stacks); 3.4-4.1 min in runs
    "tests/e2e/test_backup.py": 12.5,
    "tests/e2e/test_chart_dynamic.py": 6.5,
    "tests/e2e/test_ui.py": 4.5,
    "tests/e2e/test_reliability.py": 3.0,
    "tests/e2e/test_gc.py": 3.0,
    "tests/e2e/test_metrics.py": 2.5,
    "tests/e2e/test_bench.py": 2.0,
    "tests/e2e/test_ha_own_certificate.py": 2.0,
    "tests/e2e/test_in_process.py": 1.5,
    "tests/e2e/test_plugin.py": 1.5,
    "tests/e2e/test_image_size.py": 1.0,
    "tests/unit/test_chart.py": 2.0,
    "tests/unit/test_client.py": 1.0,  # real MLflow clients against local servers: 0.5 min in the 2026-12-08 runs
    "tests/unit/test_chart_policy.py": 1.0,
    "tests/unit/test_tutorial_docs.py": 1.0,
}


@dataclass
class Row:
    seconds: float = 0.0
    tests: set[str] = field(default_factory=set)
    failed: int = 0


@dataclass
class Ledger:
    tier: str
    rows: dict[str, Row] = field(default_factory=lambda: defaultdict(Row))
    started: float = field(default_factory=time.monotonic)

    def add(self, report: pytest.TestReport) -> None:
        row = self.rows[report.nodeid.split("::", 1)[0]]
        row.seconds += report.duration
        row.tests.add(report.nodeid)
        row.failed += int(report.failed)

    def as_json(self) -> dict:
        return {"tier": self.tier, "wall_seconds": round(time.monotonic() - self.started, 1),
                "files": {path: {"seconds": round(row.seconds, 1), "tests": len(row.tests)}
                          for path, row in self.rows.items()}}


def table(ledgers: list[dict]) -> list[str]:
    """The ledger as lines: every file (slowest first) with its minutes, tests and share, then each tier."""
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for ledger in ledgers:
        for path, row in ledger["files"].items():
            files[path][0] += row["seconds"]
            files[path][1] += row["tests"]
    lines = [f"{'file':<44} {'min':>6} {'tests':>6} {'share':>6}"]
    for path, (seconds, tests) in sorted(files.items(), key=lambda item: -item[1][0]):
        share = SHARES.get(path, DEFAULT_SHARE)
        flag = "  OVER its share" if seconds / 60 > share else ""
        lines.append(f"{path:<44} {seconds / 60:6.1f} {int(tests):6d} {share:6.1f}{flag}")
    for ledger in ledgers:
        total = sum(row["seconds"] for row in ledger["files"].values())
        count = sum(row["tests"] for row in ledger["files"].values())
        lines.append(f"tier {ledger['tier']}: {count} tests, {ledger['wall_seconds'] / 60:.1f} min wall "
                     f"({total / 60:.1f} min of test time)")
    return lines


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ledger", "the time ledger (tests/ledger.py)")
    group.addoption("--ledger-json", default=None, help="also write the time ledger to this JSON file")
    group.addoption("--ledger-tier", default=None, help="the tier's name in the ledger (default: the -m expression)")


class _Recorder:
    """One run's ledger, registered on that run's config (a pytester run inside a run keeps its own)."""

    def __init__(self, ledger: Ledger, json_path: str | None) -> None:
        self.ledger, self.json_path = ledger, json_path

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.ledger.add(report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.ledger.rows:
            return
        data = self.ledger.as_json()
        terminalreporter.section("time ledger (minutes per file; tests/ledger.py)")
        for line in table([data]):
            terminalreporter.write_line(line)
        if self.json_path:
            Path(self.json_path).write_text(json.dumps(data, indent=1) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its reports reach the controller's ledger
        return
    tier = config.getoption("--ledger-tier") or config.getoption("-m") or "all"
    config.pluginmanager.register(_Recorder(Ledger(tier), config.getoption("--ledger-json")))


def main(paths: list[str]) -> int:
    """``python -m tests.ledger A.json [B.json …]``: the ledgers of several runs (CI's tiers) as one table."""
    ledgers = [json.loads(Path(p).read_text()) for p in paths if Path(p).exists()]
    print("\n".join(table(ledgers)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
