"""Executable docs: every ```python block of docs/client.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_client_tour_runs(tmp_path, monkeypatch):
    blocks = python_blocks(ROOT / "docs" / "client.md")
    assert len(blocks) >= 5, "the tour lost its code blocks"
    monkeypatch.chdir(tmp_path)  # a SQLite client puts artifacts under ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"docs/client.md block {number}", "exec"), namespace)  # noqa: S102
        except Exception as exc:
            raise AssertionError(f"docs/client.md block {number} failed:\n{block}") from exc
    predictions = namespace["predictions"]
    assert list(predictions) == list(namespace["model"].predict(namespace["data"].data.head(3)))
    assert namespace["uri"] == "models:/iris-classifier@champion"
    assert mlflow.active_run() is None
