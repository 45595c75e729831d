"""The tutorials' shape, without an engine: one per topology, each with a diagram, its commands, a walk-through
that predicts with both APIs, mistakes that are run, and links that resolve. (tests/e2e/test_tutorials.py runs
them.)"""

from __future__ import annotations

import re

import pytest

from mlflowkit.topology import TOPOLOGIES
from tests.tutorial_blocks import ROOT, TUTORIALS, marked_fences, runnable_blocks

NAMES = list(TOPOLOGIES)


@pytest.mark.parametrize("name", NAMES)
def test_tutorial_has_diagram_commands_walkthrough_and_runnable_mistakes(name):
    path = TUTORIALS / f"{name}.md"
    text = path.read_text()
    assert f"(MLflow scenario {TOPOLOGIES[name].scenario})" in text.splitlines()[0]
    assert "```mermaid" in text
    assert f"make stack-{name}" in text
    blocks = runnable_blocks(path)
    assert len(blocks) == marked_fences(path), "every <!-- run --> marker must sit right above a fence"
    codes = [b.code for b in blocks]
    assert any(f"mlflowkit up {name}" in c for c in codes)
    assert any(f"mlflowkit env {name}" in c for c in codes)
    assert f"mlflowkit down {name}" in codes[-1], "the last block takes the stack down"
    kit = [b for b in blocks if "kit" in b.sessions]
    assert any("serve_local" in b.code and "[0, 2]" in b.expect for b in kit), "kit: serve and predict"
    assert any("Client(stack_connection(" in b.code for b in kit)
    assert any("mlflow models serve -m models:/" in b.code and '{"predictions": [0, 2]}' in b.expect
               for b in blocks), "plain MLflow: serve and POST /invocations"
    assert any("mlflow.register_model" in b.code for b in blocks if "plain" in b.sessions)
    mistakes = text.split("## 4. Common mistakes", 1)
    assert len(mistakes) == 2, "a 'Common mistakes' section"
    assert "<!-- run" in mistakes[1].split("## 5.")[0], "at least one mistake is run"


@pytest.mark.parametrize("name", NAMES)
def test_start_here_links_the_tutorial(name):
    assert f"]({name}.md)" in (TUTORIALS / "00-start-here.md").read_text()


def test_relative_links_of_the_tutorials_resolve():
    for path in [*TUTORIALS.glob("*.md"), ROOT / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links to missing {target}"


def test_runner_keeps_exports_and_sessions_checks_promises_and_stops_background_processes(tmp_path):
    import os

    from tests.tutorial_blocks import Block, TutorialRunner, check

    doc = tmp_path / "doc.md"
    doc.write_text("""<!-- run expect="hello" -->
```bash
export GREETING=hello
echo $GREETING
sleep 300 &
echo $! > sleeper.pid
```
<!-- run session=a expect="hello 1" -->
```python
import os
n = 1
print(os.environ["GREETING"], n)
```
<!-- run session=a fails="ZeroDivisionError" -->
```python
n / 0
```
<!-- run fails="[exit 3]" -->
```bash
exit 3
```
""")
    blocks = runnable_blocks(doc)
    runner = TutorialRunner({"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, tmp_path)
    try:
        outcomes = [o for block in blocks for o in runner.run(block)]
    finally:
        runner.close()
    assert [check(o) for o in outcomes] == [None] * 4, [(check(o), o.output) for o in outcomes]
    pid = int((tmp_path / "sleeper.pid").read_text())
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in _status(pid), "a block's background job must be stopped"
    wrong = Block("x", "bash", "echo nope\n", expect=("yes",))
    runner = TutorialRunner({"PATH": os.environ["PATH"]}, tmp_path)
    assert "lacks ['yes']" in check(runner.run(wrong)[0])


def _status(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return handle.read().lower()
    except FileNotFoundError:
        return "zombie"
