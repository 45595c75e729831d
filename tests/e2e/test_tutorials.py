"""The tutorials run: every marked block of docs/tutorials/<topology>.md, in order, against a real stack.

Blocks say `mlflowkit up <topology>` as a reader would type it; here they reach an isolated project (prefix
``mlflowkit-e2e-tutorial``, .env in a temp directory), never a developer's own stack — on the topology's *default*
ports and settings, as `make stack-<topology>` brings it up.
A developer's own stack of the same topology holds those ports: `up` then fails in one line naming the port.
Whatever happens, the stack is taken down with its volumes and every process a block started is stopped.
A topology's tutorial shares its xdist group with that topology's stack test (also on the defaults): one worker
runs them one after the other. The day-two tutorials, which use several topologies, run on free ports.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import pytest

from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES
from tests.e2e.conftest import PREFIX, defaults_group, seed_env
from tests.tutorial_blocks import TUTORIALS, TutorialRunner, check, runnable_blocks

pytestmark = pytest.mark.e2e

PROJECT_PREFIX = f"{PREFIX}-tutorial"


def tutorial_env(settings: Settings, tmp_path) -> dict[str, str]:
    """A reader's shell: the venv on PATH, no MLflow/AWS variables or AWS files of this machine, and the
    settings that point `mlflowkit` at the isolated project."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "AWS_", "PYTEST_", "MLFLOWKIT_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = os.path.dirname(os.path.dirname(sys.executable))
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
               AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"), AWS_EC2_METADATA_DISABLED="true")
    env.update(settings.environ())
    return env


# Day-two tutorials: each uses several topologies (its file name is not one).
DAY_TWO = {"move-sqlite-to-proxied": ("sqlite", "proxied"), "upgrade-2-22-to-3-17": ("postgres-s3",)}


@pytest.mark.parametrize("name", [*(pytest.param(name, marks=defaults_group(name)) for name in TOPOLOGIES),
                                  *DAY_TWO])
def test_tutorial_runs(name, e2e_settings, tmp_path, capsys):
    path = TUTORIALS / f"{name}.md"
    blocks = runnable_blocks(path)
    assert blocks, f"{path} has no runnable blocks"
    settings = dataclasses.replace(e2e_settings, project_prefix=PROJECT_PREFIX)
    topologies = [TOPOLOGIES[each] for each in DAY_TWO.get(name, (name,))]
    for topology in topologies:  # a topology's own tutorial on its defaults; a day-two one on free ports
        seed_env(settings, topology, default_ports=name not in DAY_TWO)
    workdir = tmp_path / "work"
    workdir.mkdir()
    runner = TutorialRunner(tutorial_env(settings, tmp_path), workdir)
    start = time.monotonic()
    try:
        for block in blocks:
            for outcome in runner.run(block):
                problem = check(outcome)
                with capsys.disabled():
                    print(f"\n  {outcome.seconds:5.1f} s  {block.source}"
                          + (f" [{outcome.session}]" if outcome.session else ""), end="", flush=True)
                assert problem is None, f"{problem}:\n--- block ---\n{block.code}--- output ---\n" \
                                        f"{outcome.output[-6000:]}"
        for topology in topologies:
            assert not Stack(topology, settings).states(), "the tutorial must end by taking its stacks down"
    finally:
        runner.close()
        (tmp_path / "transcript.txt").write_text("".join(  # what each block printed, for a failed run
            f"=== {o.block.source} [{o.session or 'bash'}] ok={o.ok} {o.seconds:.1f} s\n{o.output}\n"
            for o in runner.outcomes))
        for topology in topologies:
            stack = Stack(topology, settings)
            if stack.states() or stack.volumes():
                stack.down(volumes=True)
        with capsys.disabled():
            print(f"\n  {time.monotonic() - start:5.1f} s  {name} in all", flush=True)
