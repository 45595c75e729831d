"""The tutorials run: every marked block of docs/tutorials/<name>.md, in order, against real stacks.

Blocks say `mlflowkit up <topology>` as a reader would type it; here they reach an isolated project (an
``mlflowkit-e2e`` prefix, .env in a temp directory), never a developer's own stack. Whatever happens, the stacks
are taken down with their volumes and every process a block started is stopped.

Each topology's own tutorial runs in tests/e2e/test_stacks.py, on its *default* ports, on the stack
`make stack-<topology>` brought up and validated (a reader's path: the tutorial's first step says so); a
developer's own stack of the topology holds those ports, and `up` then fails in one line naming the port. The
day-two tutorials, which use several topologies, run here on free ports.
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
from tests.e2e.conftest import PREFIX, seed_env
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


def live(request: pytest.FixtureRequest, text: str) -> None:
    """``text`` on the terminal as it happens, past pytest's capture (which a test's own sys.stderr stays under:
    the capsys fixture would give the validation's child process a stderr without a file descriptor)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(text, end="", flush=True)


def run_tutorial(name: str, settings: Settings, tmp_path, request: pytest.FixtureRequest) -> None:
    """Every runnable block of docs/tutorials/<name>.md in order, in a reader's shell pointed at ``settings``;
    the tutorial must end with its stacks taken down (each is taken down with its volumes whatever happens)."""
    path = TUTORIALS / f"{name}.md"
    blocks = runnable_blocks(path)
    assert blocks, f"{path} has no runnable blocks"
    topologies = [TOPOLOGIES[each] for each in DAY_TWO.get(name, (name,))]
    workdir = tmp_path / "work"
    workdir.mkdir()
    runner = TutorialRunner(tutorial_env(settings, tmp_path), workdir)
    start = time.monotonic()
    try:
        for block in blocks:
            for outcome in runner.run(block):
                problem = check(outcome)
                live(request, f"\n  {outcome.seconds:5.1f} s  {block.source}"
                     + (f" [{outcome.session}]" if outcome.session else ""))
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
        live(request, f"\n  {time.monotonic() - start:5.1f} s  {name} in all\n")


@pytest.mark.parametrize("name", list(DAY_TWO))
def test_day_two_tutorial_runs(name, e2e_settings, tmp_path, request):
    """On free ports, in projects of their own. (Each topology's own tutorial runs in test_stacks, on the stack
    `make stack-<topology>` brought up and proved: the reader's path.)"""
    settings = dataclasses.replace(e2e_settings, project_prefix=PROJECT_PREFIX)
    for topology in DAY_TWO[name]:
        seed_env(settings, TOPOLOGIES[topology])
    run_tutorial(name, settings, tmp_path, request)
