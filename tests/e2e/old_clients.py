"""Plain MLflow clients of other versions for the upgrade tests: a venv per version, made once and cached.

A client venv installs the same hash-checked lock as the kit's image of that version
(``stacks/images/mlflow/mlflow-<version>.lock``; the kit's own version's is
``stacks/images/mlflow/requirements.lock``), so client and server share their pins. Venvs live in
``$MLFLOWKIT_CLIENT_CACHE`` (default ``~/.cache/mlflowkit/clients``), one per lock content: made by the first
session that needs them, reused by every later one.

:func:`populate` fills a stack through such a client (experiments, runs with params, tags, metric histories and
artifacts, a scikit-learn model registered with two versions and aliases) and returns what it wrote;
:func:`read_back` reads the same ids through any client; :func:`differences` compares two snapshots field by field.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflowkit import upgrade
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack

SCRIPT = Path(__file__).with_name("old_client_script.py")
MODEL_NAME = "upgrade-model"


def cache_dir() -> Path:
    return Path(os.environ.get("MLFLOWKIT_CLIENT_CACHE") or Path.home() / ".cache" / "mlflowkit" / "clients")


def lock_file(version: str, settings: Settings | None = None) -> Path:
    return upgrade.lock_file(settings or Settings(), version)


def client_python(version: str, *, timeout: float = 600) -> Path:
    """The python of a venv with MLflow ``version`` and its pinned companions (made once, then cached)."""
    lock = lock_file(version)
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    venv = cache_dir() / f"mlflow-{version}-{digest}"
    python = venv / "bin" / "python"
    done = venv / ".complete"  # written last: a venv without it was interrupted and is made again
    if done.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = Path(sys.executable).with_name("uv")  # seconds where pip takes a minute; in the kit's dev venv
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=timeout)
    subprocess.run([str(uv), "pip", "install", "--quiet", "--require-hashes", "-r", str(lock),
                    "--python", str(python)], check=True, timeout=timeout)
    done.write_text(f"{lock}\n")
    return python


@dataclass
class Written:
    """What :func:`populate` wrote: the ids it made, the client's version and the snapshot it read back."""

    ids: dict[str, Any]
    mlflow_version: str
    snapshot: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        model = self.snapshot["model"]
        return {"experiments": len(self.snapshot["experiments"]), "runs": len(self.snapshot["runs"]),
                "model_versions": len(model["versions"]), "aliases": len(model["aliases"])}


def _client_env(stack: Stack) -> dict[str, str]:
    """A plain environment: the stack's client variables and nothing else of MLflow, S3 or AWS."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {key: value for key, value in os.environ.items() if key in keep}
    env.update(stack.connection().environ())
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="2", MLFLOW_HTTP_REQUEST_TIMEOUT="60", DO_NOT_TRACK="true",
               MLFLOW_DISABLE_TELEMETRY="true", GIT_PYTHON_REFRESH="quiet")
    return env


def _run(python: Path, args: list[str], stack: Stack, *, stdin: str | None = None, timeout: float = 600) -> Written:
    proc = subprocess.run([str(python), str(SCRIPT), *args], env=_client_env(stack), input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{python} {SCRIPT.name} {args[0]} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return Written(result["ids"], result["mlflow_version"], result["snapshot"])


def populate(stack: Stack, version: str, *, prefix: str = "upgrade") -> Written:
    """Fill ``stack`` through a plain MLflow ``version`` client; what it wrote, as that client reads it back."""
    written = _run(client_python(version), ["write", prefix, MODEL_NAME], stack)
    assert written.mlflow_version == version, written.mlflow_version
    return written


def read_back(stack: Stack, written: Written, *, python: Path | None = None) -> Written:
    """The same ids read through a client (default: this interpreter's MLflow, the kit's version)."""
    payload = json.dumps({"ids": written.ids})
    return _run(python or Path(sys.executable), ["read"], stack, stdin=payload)


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every field where ``actual`` differs from ``expected``, as ``path: expected != actual`` lines."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        lines = []
        for key in sorted(set(expected) | set(actual), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                lines.append(f"{where}: missing after the upgrade")
            elif key not in expected:
                lines.append(f"{where}: not there before the upgrade ({actual[key]!r})")
            else:
                lines += differences(expected[key], actual[key], where)
        return lines
    if expected != actual:
        return [f"{path}: {expected!r} != {actual!r}"]
    return []
