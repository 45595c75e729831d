"""Settings: one dataclass whose fields default from environment variables.

Where things are: the stack definitions (compose files, image build contexts) ship inside the package
(``mlflowkit/stacks`` in a wheel) or sit in the checkout (``stacks/``); the kit's *state* — each stack's generated
``.env`` and local data directory — lives under :attr:`Settings.home`. From a checkout the home defaults to
``stacks/`` itself, so ``stacks/<topology>/.env`` sits beside its ``compose.yaml`` where plain
``docker compose`` finds it; an installed kit defaults to ``$XDG_DATA_HOME/mlflowkit`` (``~/.local/share``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mlflowkit.errors import KitError

PACKAGE_DIR = Path(__file__).resolve().parent
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_BASE_IMAGE = "debian:bookworm-slim"


def packaged_stacks() -> Path | None:
    """``mlflowkit/stacks`` of an installed wheel; None in a checkout (editable installs included)."""
    inside = PACKAGE_DIR / "stacks"
    return inside if (inside / "images").is_dir() else None


def checkout_root() -> Path | None:
    """The source checkout this package runs from, if it does."""
    root = PACKAGE_DIR.parent
    return root if packaged_stacks() is None and (root / "stacks" / "images").is_dir() else None


def default_home() -> str:
    root = checkout_root()
    if root is not None:
        return str(root / "stacks")
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data) / "mlflowkit")


def _from_env(variable: str, default: Any) -> Any:
    """A field read from ``variable`` (when set and non-empty), else ``default`` (a value or a callable).

    A value of the wrong kind is one clear line naming the variable, not a traceback.
    """

    def read() -> Any:
        fallback = default() if callable(default) else default
        raw = os.environ.get(variable)
        if not raw:
            return fallback
        kind = type(fallback)
        try:
            value = kind(raw)
        except ValueError:
            raise KitError(f"{variable}={raw!r} is not a {'number' if kind is float else kind.__name__}.",
                           hint=f"set {variable} to a number of seconds (or unset it for {fallback}).") from None
        if kind is float and value <= 0:
            raise KitError(f"{variable}={raw!r} must be a positive number of seconds.")
        return value

    return field(default_factory=read, metadata={"env": variable})


@dataclass(frozen=True)
class Settings:
    """Where the kit's files and state are, what to build from, and how long to wait for things."""

    # Where the kit keeps each stack's generated .env and local data: <home>/<topology>/{.env,data}.
    home: str = _from_env("MLFLOWKIT_HOME", default_home)
    # "" = not chosen: the base the images were built from (their label), else DEFAULT_BASE_IMAGE.
    base_image: str = _from_env("BASE_IMAGE", "")
    ca_bundle: str = _from_env("HOST_CA_BUNDLE", "")
    bind_address: str = _from_env("BIND_ADDRESS", "127.0.0.1")
    # Compose projects are "<prefix>-<topology>"; tests use their own prefix so they never touch a user's stack.
    project_prefix: str = _from_env("MLFLOWKIT_PROJECT_PREFIX", "mlflowkit")
    build_timeout: float = _from_env("MLFLOWKIT_BUILD_TIMEOUT", 1800.0)
    up_timeout: float = _from_env("MLFLOWKIT_UP_TIMEOUT", 300.0)
    client_timeout: float = _from_env("MLFLOWKIT_CLIENT_TIMEOUT", 60.0)
    command_timeout: float = _from_env("MLFLOWKIT_COMMAND_TIMEOUT", 120.0)
    validate_timeout: float = _from_env("MLFLOWKIT_VALIDATE_TIMEOUT", 900.0)

    def environ(self) -> dict[str, str]:
        """These settings as the environment variables they come from (to hand to a child process)."""
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) != ""}

    @property
    def stacks_dir(self) -> Path:
        """The compose files and image build contexts (read-only: nothing is written here but by `home`)."""
        packaged = packaged_stacks()
        return packaged if packaged is not None else PACKAGE_DIR.parent / "stacks"

    @property
    def images_compose_file(self) -> Path:
        return self.stacks_dir / "images" / "compose.yaml"

    def stack_dir(self, topology: str) -> Path:
        return self.stacks_dir / topology

    def state_dir(self, topology: str) -> Path:
        return Path(self.home) / topology

    def env_file(self, topology: str) -> Path:
        return self.state_dir(topology) / ".env"

    def data_dir(self, topology: str) -> Path:
        """Default host directory of a local store (file, SQLite, shared artifacts); .env may move it."""
        return self.state_dir(topology) / "data"

    def override_files(self, topology: str) -> list[Path]:
        """A user's ``compose.override.yaml`` beside the stack's compose file or in its state directory,
        honoured as plain Compose would honour the one beside ``compose.yaml``."""
        candidates = dict.fromkeys([self.stack_dir(topology) / "compose.override.yaml",
                                    self.state_dir(topology) / "compose.override.yaml"])
        return [path for path in candidates if path.is_file()]

    def results_dir(self) -> Path:
        """Where `mlflowkit bench` writes by default: benchmarks/results in a checkout, else under home."""
        root = checkout_root()
        return root / "benchmarks" / "results" if root is not None else Path(self.home) / "bench"

    def backup_dir(self, topology: str) -> Path:
        """A new backup's default directory: <home>/backups/<topology>-<UTC time>."""
        from datetime import datetime, timezone

        return Path(self.home) / "backups" / f"{topology}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"

    def project(self, topology: str) -> str:
        return f"{self.project_prefix}-{topology}"

    def effective_ca_bundle(self) -> Path | None:
        """The CA bundle handed to image builds: HOST_CA_BUNDLE, else the system's, else none."""
        if self.ca_bundle:
            return Path(self.ca_bundle)
        return SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.is_file() else None
