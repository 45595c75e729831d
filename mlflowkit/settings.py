"""Settings: one dataclass whose fields default from environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_ROOT = PACKAGE_DIR.parent
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass(frozen=True)
class Settings:
    """Where the kit's files are, what to build from, and how long to wait for things."""

    root: Path = field(default_factory=lambda: Path(_env("MLFLOWKIT_ROOT", str(DEFAULT_ROOT))))
    base_image: str = field(default_factory=lambda: _env("BASE_IMAGE", "debian:bookworm-slim"))
    ca_bundle: str = field(default_factory=lambda: _env("HOST_CA_BUNDLE", ""))
    bind_address: str = field(default_factory=lambda: _env("BIND_ADDRESS", "127.0.0.1"))
    # Compose projects are "<prefix>-<topology>"; tests use their own prefix so they never touch a user's stack.
    project_prefix: str = field(default_factory=lambda: _env("MLFLOWKIT_PROJECT_PREFIX", "mlflowkit"))
    # Where each stack's .env lives; unset: beside its compose.yaml (where plain `docker compose` finds it).
    env_dir: str = field(default_factory=lambda: _env("MLFLOWKIT_ENV_DIR", ""))
    build_timeout: float = field(default_factory=lambda: _env_float("MLFLOWKIT_BUILD_TIMEOUT", 1800))
    up_timeout: float = field(default_factory=lambda: _env_float("MLFLOWKIT_UP_TIMEOUT", 300))
    client_timeout: float = field(default_factory=lambda: _env_float("MLFLOWKIT_CLIENT_TIMEOUT", 60))
    command_timeout: float = field(default_factory=lambda: _env_float("MLFLOWKIT_COMMAND_TIMEOUT", 120))

    @property
    def stacks_dir(self) -> Path:
        return self.root / "stacks"

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
