"""The stack's ``.env``: generated secrets and ports, kept private (mode 0600) and never overwritten.

Values already in the file win: a user who moved a port or rotated a password keeps it. Only missing keys are
added. A line that is not ``KEY=VALUE`` is refused with its line number.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from mlflowkit.errors import EnvFileError
from mlflowkit.topology import Backend, Topology

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse(text: str, source: str = ".env") -> dict[str, str]:
    """``KEY=VALUE`` lines (comments and blanks skipped, one level of matching quotes removed)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise EnvFileError(
                f"{source}:{number}: not a KEY=VALUE line: {line[:60]!r}.",
                hint="fix or delete that line (mlflowkit adds missing keys itself).",
            )
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def auth_values() -> dict[str, str]:
    """What `--auth` adds: MLflow's basic-auth app, a generated admin, the key its CSRF protection signs with."""
    return {
        "MLFLOW_AUTH_ARGS": "--app-name basic-auth",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(24),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
    }


def defaults(topology: Topology, bind_address: str = "127.0.0.1", data_dir: Path | None = None) -> dict[str, str]:
    """Fresh values for every variable the topology's compose file reads: new random secrets each call."""
    values = {"BIND_ADDRESS": bind_address}
    values.update({port.variable: str(port.default) for port in topology.ports})
    if topology.uses_data_dir:
        # Containers that share files with the host client run as the host user: each side writes files the
        # other must modify (serving a local model writes into its directory).
        values.update(MLFLOW_DATA_DIR=str((data_dir or Path("data")).resolve()), MLFLOW_UID=str(os.getuid()),
                      MLFLOW_GID=str(os.getgid()))
    if topology.backend is Backend.POSTGRESQL:
        values.update(POSTGRES_USER="mlflow", POSTGRES_DB="mlflow", POSTGRES_PASSWORD=secrets.token_urlsafe(24))
    if topology.uses_s3:
        values.update(
            S3_BUCKET="mlflow",
            AWS_ACCESS_KEY_ID=secrets.token_hex(10),
            AWS_SECRET_ACCESS_KEY=secrets.token_hex(20),
        )
    return values


def render(values: Mapping[str, str], topology: Topology) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"# {topology.name}: written by mlflowkit on {stamp}. Private (mode 0600), git-ignored: never commit.\n"
        "# Edit values freely (ports, BIND_ADDRESS); mlflowkit only adds keys that are missing.\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in values.items())


def ensure(path: Path, topology: Topology, bind_address: str = "127.0.0.1",
           data_dir: Path | None = None, auth: bool = False) -> dict[str, str]:
    """Create or complete ``path``; return its values. Existing values are kept, the mode forced to 0600.

    ``auth`` adds the basic-auth keys; a stack that has them keeps them (remove them to turn auth off).
    """
    existing = parse(path.read_text(), str(path)) if path.exists() else {}
    wanted = {**defaults(topology, bind_address, data_dir), **(auth_values() if auth else {})}
    missing = {k: v for k, v in wanted.items() if k not in existing}
    if missing or not path.exists():
        merged = {**existing, **missing}
        # Write the new file privately from the start; never leave a readable copy behind.
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(render(merged, topology))
        os.replace(tmp, path)
        existing = merged
    os.chmod(path, 0o600)
    return existing


def load(path: Path, topology: Topology) -> dict[str, str]:
    """The values of an existing ``.env``, with any missing keys reported as an error."""
    if not path.exists():
        raise EnvFileError(
            f"{path} does not exist: the {topology.name} stack was never brought up here.",
            hint=f"run `mlflowkit up {topology.name}`.",
        )
    return parse(path.read_text(), str(path))
