"""checkov in its own venv, made once from charts/checkov.lock and cached (never in the kit's venv: checkov
pins boto3 1.35 and packaging 23). The pattern of tests/e2e/old_clients.py: one venv per lock content under
``$MLFLOWKIT_TOOLS_CACHE`` (default ``~/.cache/mlflowkit/tools``), complete once ``.complete`` exists."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parents[2] / "charts" / "checkov.lock"
VERSION = "3.3.30"


def cache_dir() -> Path:
    return Path(os.environ.get("MLFLOWKIT_TOOLS_CACHE") or Path.home() / ".cache" / "mlflowkit" / "tools")


def checkov(*, timeout: float = 900) -> Path:
    """The checkov executable of a venv made from the hash-pinned lock (made once, then reused)."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    venv = cache_dir() / f"checkov-{VERSION}-{digest}"
    done = venv / ".complete"  # written last: a venv without it was interrupted and is made again
    if done.exists():
        return venv / "bin" / "checkov"
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=timeout)
    subprocess.run([str(uv), "pip", "install", "--quiet", "--require-hashes", "-r", str(LOCK),
                    "--python", str(venv / "bin" / "python")], check=True, timeout=timeout)
    done.write_text(f"{LOCK}\n")
    return venv / "bin" / "checkov"
