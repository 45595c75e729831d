"""Shared by every test: nothing a test (or MLflow's defaults, ./mlruns and mlflow.db) writes lands in the repo."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.ledger"]  # the time ledger printed at the end of every run


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]):
    """pytest-xdist's `--dist loadgroup` (the Makefile's) keeps an ``xdist_group``'s tests on one worker by adding
    ``@<group>`` to their node ids — as ``item._nodeid``, which pytest 9 no longer reads (it reads ``_id``): the
    group would be lost and its tests spread over both workers, each bringing up the module's shared stack. Once
    every hook has run, the suffixed id is made the one pytest reports (tests/unit/test_ledger.py proves the
    grouping on two real workers)."""
    result = yield
    for item in items:
        suffixed = getattr(item, "_nodeid", None)
        if isinstance(suffixed, str) and "@" in suffixed and suffixed != item.nodeid and hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(suffixed)
    return result
