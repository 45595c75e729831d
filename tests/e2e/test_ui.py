"""The MLflow UI in a real headless browser (Debian's chromium + chromedriver; no skip: without them these tests
fail with the install hint). The parametrized stack test runs the `ui` step on every topology wherever a browser
is installed; here it is asked for explicitly: behind --auth, and on a stack whose UI is broken while its REST
API works — which every other step passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflowkit.docker import run
from mlflowkit.topology import TOPOLOGIES
from mlflowkit.validate import Report, report_dir, steps_for, validate_isolated

pytestmark = pytest.mark.e2e


def assert_passed(report: Report, stack) -> None:
    table = "\n".join(f"{s.name}: {'PASS' if s.ok else 'FAIL'} {s.detail}\n{s.logs}" for s in report.steps)
    assert report.ok, f"validation of {report.topology} failed:\n{table}\n\nlogs:\n{stack.logs(tail=40)}"
    assert [s.name for s in report.steps] == [name for name, _ in steps_for(stack, ui=True)]


def test_ui_behind_the_login_shows_run_model_and_trace(make_stack):
    stack = make_stack(TOPOLOGIES["proxied"])
    stack.up(auth=True)
    report = validate_isolated(stack, ui=True)
    assert_passed(report, stack)
    step = report.steps[-1]
    assert step.name == "ui" and "after the login" in step.detail and "none failed" in step.detail, step.detail
    screenshot = report_dir(stack.settings, "proxied") / "run-page.png"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000


def _ui_bundle_dir(image: str) -> str:
    """Where the server image keeps the UI's JavaScript bundle."""
    code = "import mlflow.server, os; print(os.path.dirname(mlflow.server.__file__) + '/js/build/static/js')"
    return run(["docker", "run", "--rm", "--entrypoint", "python", image, "-c", code], timeout=60).stdout.strip()


def test_a_ui_that_loads_blank_fails_the_ui_step_only(make_stack, e2e_settings):
    """An empty directory over the UI's JavaScript: index.html loads, the app does not; the API is untouched."""
    from mlflowkit import images

    topology = TOPOLOGIES["sqlite"]
    stack = make_stack(topology)
    image = next(name for name in images.names(e2e_settings) if "/mlflow:" in name)
    override = Path(e2e_settings.state_dir(topology.name)) / "compose.override.yaml"
    override.write_text(f"services:\n  mlflow:\n    tmpfs: ['{_ui_bundle_dir(image)}:mode=755']\n")
    stack.up()
    report = validate_isolated(stack, ui=True)
    names = [name for name, _ in steps_for(stack, ui=True)]
    assert [s.name for s in report.steps] == names, [f"{s.name}: {s.detail}" for s in report.steps]
    assert all(s.ok for s in report.steps[:-1]) and not report.steps[-1].ok
    failure = report.steps[-1]
    assert "did not show" in failure.detail, failure.detail
    assert "/static/js/" in failure.logs and "answered 404" in failure.logs, failure.logs


def test_the_browser_refuses_the_listed_ports_and_none_of_the_stacks_defaults():
    """Chromium itself, against BROWSER_BLOCKED_PORTS: every default port of every topology opens (a refused
    connection, or a page where something listens), and a sample of the list — SIP's 5060/5061 that ha once
    published among them — is refused as ERR_UNSAFE_PORT before any connection is tried."""
    from selenium.common.exceptions import WebDriverException

    from mlflowkit import ui
    from mlflowkit.topology import BROWSER_BLOCKED_PORTS

    def refused(port: int) -> bool:
        try:
            b.open(f"http://127.0.0.1:{port}/")
            shown = b.text()
        except WebDriverException as exc:  # e.g. ERR_CONNECTION_REFUSED: nothing listens there
            shown = exc.msg or ""
        return "ERR_UNSAFE_PORT" in shown

    b = ui.browser()
    defaults = {port.default for topology in TOPOLOGIES.values() for port in topology.ports}
    sample = {5060, 5061, 6000, 6566, 10080, 25}
    assert sample <= BROWSER_BLOCKED_PORTS
    seen = {port: refused(port) for port in sorted(defaults | sample)}
    assert seen == {port: port in BROWSER_BLOCKED_PORTS for port in seen}, seen
    assert [port for port in sorted(defaults) if seen[port]] == []
