"""Settings: one dataclass whose fields default from environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_ROOT = PACKAGE_DIR.parent
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _from_env(variable: str, default: str | float) -> field:
    """A field read from ``variable`` (when set and non-empty) with ``default``; remembers its variable."""
    kind = type(default)
    return field(default_factory=lambda: kind(os.environ.get(variable) or default), metadata={"env": variable})


@dataclass(frozen=True)
class Settings:
    """Where the kit's files are, what to build from, and how long to wait for things."""

    root: str = _from_env("MLFLOWKIT_ROOT", str(DEFAULT_ROOT))
    base_image: str = _from_env("BASE_IMAGE", "debian:bookworm-slim")
    ca_bundle: str = _from_env("HOST_CA_BUNDLE", "")
    bind_address: str = _from_env("BIND_ADDRESS", "127.0.0.1")
    # Compose projects are "<prefix>-<topology>"; tests use their own prefix so they never touch a user's stack.
    project_prefix: str = _from_env("MLFLOWKIT_PROJECT_PREFIX", "mlflowkit")
    # Where each stack's .env lives; unset: beside its compose.yaml (where plain `docker compose` finds it).
    env_dir: str = _from_env("MLFLOWKIT_ENV_DIR", "")
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
        return Path(self.root) / "stacks"

    @property
    def images_compose_file(self) -> Path:
        return self.stacks_dir / "images" / "compose.yaml"

    def stack_dir(self, topology: str) -> Path:
        return self.stacks_dir / topology

    def env_file(self, topology: str) -> Path:
        if self.env_dir:
            return Path(self.env_dir) / f"{topology}.env"
        return self.stack_dir(topology) / ".env"

    def data_dir(self, topology: str) -> Path:
        """Default host directory of a local store (file, SQLite, shared artifacts); .env may move it."""
        if self.env_dir:
            return Path(self.env_dir) / f"{topology}-data"
        return self.stack_dir(topology) / "data"

    def project(self, topology: str) -> str:
        return f"{self.project_prefix}-{topology}"

    def effective_ca_bundle(self) -> Path | None:
        """The CA bundle handed to image builds: HOST_CA_BUNDLE, else the system's, else none."""
        if self.ca_bundle:
            return Path(self.ca_bundle)
        return SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.is_file() else None
