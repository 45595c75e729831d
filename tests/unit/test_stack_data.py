"""A local topology's data under MLFLOW_DATA_DIR: what `down --volumes` deletes (its store and artifacts), and only
that. The deletion itself is proven on real stacks (tests/e2e/test_stacks.py)."""

from __future__ import annotations

import pytest

from mlflowkit import envfile
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import LOCAL_ARTIFACTS, TOPOLOGIES, Backend


@pytest.mark.parametrize("name", [name for name, t in TOPOLOGIES.items() if t.uses_data_dir])
def test_the_local_data_is_the_store_and_the_artifacts_and_nothing_else(name, tmp_path):
    stack = Stack(TOPOLOGIES[name], Settings(home=str(tmp_path / "home")))
    assert stack.local_data() == []  # no .env: no directory is known
    data = tmp_path / "data"
    envfile.ensure(stack.env_file, stack.topology, "127.0.0.1", data)
    (data / LOCAL_ARTIFACTS).mkdir(parents=True)
    (data / "notes.txt").write_text("the user's own file")
    store = data / str(stack.topology.backend.local_path)
    if stack.topology.backend is Backend.FILE:
        store.mkdir()
    else:
        store.write_bytes(b"")
    assert stack.local_data() == [store, data / LOCAL_ARTIFACTS]


@pytest.mark.parametrize("name", [name for name, t in TOPOLOGIES.items() if not t.uses_data_dir])
def test_a_topology_on_volumes_has_no_local_data(name, tmp_path):
    stack = Stack(TOPOLOGIES[name], Settings(home=str(tmp_path / "home")))
    envfile.ensure(stack.env_file, stack.topology, "127.0.0.1", tmp_path / "data")
    assert stack.local_data() == []
