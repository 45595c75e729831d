"""Shared by every test: nothing a test (or MLflow's defaults, ./mlruns and mlflow.db) writes lands in the repo."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
