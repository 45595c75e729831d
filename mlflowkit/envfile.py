"""The stack's ``.env``: generated secrets and ports, kept private (mode 0600) and never overwritten.

Values already in the file win: a user who moved a port or rotated a password keeps it. Only missing keys are
added. The file is read the way Compose reads an ``--env-file`` (python-dotenv's parser: ``export``, quotes,
escapes, inline ``# comments``, ``${VAR}`` from earlier lines); a line that is not ``KEY=VALUE`` is refused with
its line number, a port that is not a port with its variable and file.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from dotenv.parser import parse_stream

from mlflowkit.errors import EnvFileError
from mlflowkit.topology import WORKSPACES_SWITCH, Backend, Topology

_REFERENCE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")
_NEEDS_QUOTES = re.compile(r"[\s#'\"\\$]")


def parse(text: str, source: str = ".env") -> dict[str, str]:
    """``KEY=VALUE`` lines as Compose reads them; unquoted and double-quoted values see earlier keys."""
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.string.strip()
            raise EnvFileError(
                f"{source}:{binding.original.line}: not a KEY=VALUE line: {line[:60]!r}.",
                hint="fix or delete that line (mlflowkit adds missing keys itself).",
            )
        if binding.key is None:  # a comment or a blank line
            continue
        value = binding.value or ""
        if not _single_quoted(binding.original.string):
            value = _REFERENCE.sub(lambda m: _resolve(m, values), value)
        values[binding.key] = value
    return values


def _single_quoted(line: str) -> bool:
    return line.split("=", 1)[-1].lstrip().startswith("'")


def _resolve(match: re.Match[str], known: Mapping[str, str]) -> str:
    name = match[1] or match[3]
    default = match[2]
    value = known.get(name, "")
    return value if value or default is None else default


def check_ports(values: Mapping[str, str], topology: Topology, source: str) -> None:
    """Every published port of the topology is a number in 1..65535: one line naming the first that is not."""
    for port in topology.ports:
        raw = values.get(port.variable)
        if raw is None:
            continue
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise EnvFileError(f"{source}: {port.variable}={raw!r} is not a TCP port.",
                               hint=f"set {port.variable} to a number from 1 to 65535 (default {port.default}).")


def auth_values() -> dict[str, str]:
    """What `--auth` adds: MLflow's basic-auth app, a generated admin, the key its CSRF protection signs with."""
    return {
        "MLFLOW_AUTH_ARGS": "--app-name basic-auth",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(24),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
        # The serving service's own user: it runs model code from the registry, so it reads (MLflow's default
        # permission) and holds no admin password (made by the kit: Stack.serve).
        "MLFLOW_SERVE_USERNAME": "serving",
        "MLFLOW_SERVE_PASSWORD": secrets.token_urlsafe(24),
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
    values.update({name: secrets.token_urlsafe(24) for name in topology.secrets})
    return values


def render(values: Mapping[str, str], topology: Topology) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"# {topology.name}: written by mlflowkit on {stamp}. Private (mode 0600), git-ignored: never commit.\n"
        "# Edit values freely (ports, BIND_ADDRESS); mlflowkit only adds keys that are missing.\n"
    )
    return header + "".join(f"{key}={_quote(value)}\n" for key, value in values.items())


def _quote(value: str) -> str:
    """Single quotes (taken literally by Compose) where a value has spaces, #, quotes or $."""
    if not _NEEDS_QUOTES.search(value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def ensure(path: Path, topology: Topology, bind_address: str = "127.0.0.1",
           data_dir: Path | None = None, auth: bool = False, ports: Mapping[str, int] | None = None,
           workspaces: bool = False) -> dict[str, str]:
    """Create or complete ``path``; return its values. Existing values are kept, the mode forced to 0600.

    ``auth`` adds the basic-auth keys; a stack that has them keeps them (remove them to turn auth off) and gets
    the ones a newer kit added. ``workspaces`` switches MLflow's workspaces on (kept the same way).
    ``ports`` replaces the declared default of those port variables (where the file does not set them).
    """
    existing = parse(path.read_text(), str(path)) if path.exists() else {}
    check_ports(existing, topology, str(path))
    wanted = {**defaults(topology, bind_address, data_dir), **{k: str(v) for k, v in (ports or {}).items()},
              **(auth_values() if auth or existing.get("MLFLOW_AUTH_ARGS") else {}),
              **({WORKSPACES_SWITCH: "true"} if workspaces else {})}
    missing = {k: v for k, v in wanted.items() if k not in existing}
    if not path.exists():
        _write_private(path, render(missing, topology))
    elif missing:  # appended: the user's own lines and comments stay as they wrote them
        text = path.read_text()
        added = "".join(f"{key}={_quote(value)}\n" for key, value in missing.items())
        _write_private(path, text + ("" if text.endswith("\n") or not text else "\n") + added)
    existing = {**existing, **missing}
    os.chmod(path, 0o600)
    return existing


def load(path: Path, topology: Topology) -> dict[str, str]:
    """The values of an existing ``.env``, with any missing keys reported as an error."""
    if not path.exists():
        raise EnvFileError(
            f"{path} does not exist: the {topology.name} stack was never brought up here.",
            hint=f"run `mlflowkit up {topology.name}`.",
        )
    values = parse(path.read_text(), str(path))
    check_ports(values, topology, str(path))
    return values


def set_value(path: Path, key: str, value: str | None) -> None:
    """Set (or, with None, remove) ``key`` in an existing ``.env``: every other line kept as written, the key's
    own line(s) dropped and ``KEY=value`` appended; written private through a new file (a missing file is
    made with that one line: `up` adds the rest and keeps it)."""
    text = path.read_text() if path.exists() else ""
    kept = "".join(binding.original.string for binding in parse_stream(io.StringIO(text)) if binding.key != key)
    if kept and not kept.endswith("\n"):
        kept += "\n"
    if value is not None:
        kept += f"{key}={_quote(value)}\n"
    _write_private(path, kept)


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` through a new temporary file that is private (0600) from its creation on: never a
    readable copy, whatever a stale file of the same name had."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".env-", suffix=".tmp")  # mode 0600, O_EXCL
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
