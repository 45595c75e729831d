"""The installable kit: layers point one way, every declared dependency is used, the wheel carries the stacks."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mlflowkit"
# The client library: what users import into their own code. It must work without the orchestration.
CLIENT_LIBRARY = ("client.py", "serving.py")
ORCHESTRATION = {"stack", "docker", "images", "validate", "cli", "bench", "envfile", "pytest_plugin", "faults"}
IMPORT_NAMES = {"scikit-learn": "sklearn", "python-dotenv": "dotenv", "PyYAML": "yaml"}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", CLIENT_LIBRARY)
def test_the_client_library_never_imports_the_orchestration(module):
    bad = {name for name in imported_modules(PACKAGE / module)
           if name.startswith("mlflowkit.") and name.split(".")[1] in ORCHESTRATION}
    assert not bad, f"{module} imports {sorted(bad)}"


def declared(extra: str | None = None) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [re.match(r"[A-Za-z0-9_.-]+", spec)[0] for spec in specs]


def test_every_declared_dependency_is_imported_by_the_package():
    imported = {name.split(".")[0] for path in PACKAGE.rglob("*.py") for name in imported_modules(path)}
    unused = [name for name in declared() if IMPORT_NAMES.get(name, name).replace("-", "_") not in imported]
    assert not unused, f"declared in pyproject.toml but imported nowhere in mlflowkit/: {unused}"


def test_the_ui_extra_is_what_the_ui_step_imports():
    assert declared("ui") == ["selenium"]
    assert "selenium" in {name.split(".")[0] for name in imported_modules(PACKAGE / "ui.py")}


def test_the_library_declares_ranges_and_the_lock_pins_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    exact = [spec for spec in project["dependencies"] if "==" in spec]
    assert not exact, f"a library installed into users' environments declares ranges, not {exact}"
    lock = (ROOT / "requirements.lock").read_text()
    for name in declared() + declared("dev"):
        pattern = rf"^{re.escape(name)}==\S+ .*\\\n\s+--hash=sha256:"
        assert re.search(pattern, lock, flags=re.M | re.I), f"{name} is not pinned with hashes in requirements.lock"


def test_the_wheel_carries_the_stacks_and_no_generated_state(tmp_path):
    secret = ROOT / "stacks" / "proxied" / ".env"
    planted = not secret.exists()
    if planted:  # a developer's generated .env must never ship
        secret.write_text("AWS_SECRET_ACCESS_KEY=planted\n")
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                        "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    finally:
        if planted:
            secret.unlink()
    (wheel,) = tmp_path.glob("mlflowkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "stacks"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    missing = [path for path in tracked if f"mlflowkit/{path}" not in names]
    assert not missing, f"the wheel lacks {missing}: add them to [tool.setuptools.package-data]"
    assert not [name for name in names if name.endswith(".env") or "/data/" in name or "/.logs/" in name]
    assert {"mlflowkit/py.typed", "mlflowkit/__main__.py", "mlflowkit/bench/proxied-multipart.yaml"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]" in text and "mlflowkit = mlflowkit.pytest_plugin" in text
