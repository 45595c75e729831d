"""The storage topologies, declared once.

Everything else — the CLI's choices, Makefile targets, the README table, the e2e test's parameters and the
contract test against ``stacks/<name>/compose.yaml`` — is derived from :data:`TOPOLOGIES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ArtifactMode(str, Enum):
    """How artifact bytes travel between client and store."""

    CLIENT_S3 = "client-s3"  # the client reads and writes S3 itself (needs endpoint + keys)
    PROXIED = "proxied"  # the tracking server proxies S3 (mlflow-artifacts:/), client has no keys
    ARTIFACTS_SERVER = "artifacts-server"  # a separate --artifacts-only server proxies S3
    LOCAL = "local"  # a directory the client and the server both see


@dataclass(frozen=True)
class Port:
    """A port the stack publishes on the host: its .env variable, default and the service behind it."""

    variable: str
    default: int
    service: str
    container_port: int


@dataclass(frozen=True)
class Topology:
    """One storage topology: what runs, how a client connects and what validation must prove."""

    name: str
    title: str
    scenario: int  # the number of MLflow's tracking-server scenario it implements
    summary: str
    services: tuple[str, ...]  # long-running services `up --wait` must see healthy
    one_shots: tuple[str, ...]  # services that must run to completion first
    ports: tuple[Port, ...]
    artifact_mode: ArtifactMode
    backend: str  # "postgresql" | "sqlite" | "file"
    serve_service: str = "serve"
    serve_profile: str = "serve"
    tracking_service: str = "mlflow"
    checks: tuple[str, ...] = field(default_factory=tuple)  # what validation asserts beyond the common steps

    @property
    def project(self) -> str:
        """The compose project name: distinct per topology, so stacks can run side by side."""
        return f"mlflowkit-{self.name}"

    def port(self, variable: str) -> Port:
        for port in self.ports:
            if port.variable == variable:
                return port
        raise KeyError(f"{self.name} publishes no port {variable}")

    @property
    def client_needs_s3_credentials(self) -> bool:
        return self.artifact_mode is ArtifactMode.CLIENT_S3


POSTGRES_S3 = Topology(
    name="postgres-s3",
    title="Tracking server on PostgreSQL, artifacts in S3 written by the client",
    scenario=4,
    summary=(
        "mlflow server on PostgreSQL with --default-artifact-root s3://… --no-serve-artifacts; "
        "clients hold the S3 endpoint and keys and move artifact bytes themselves."
    ),
    services=("postgres", "s3", "mlflow"),
    one_shots=("create-bucket", "migrate"),
    ports=(
        Port("MLFLOW_PORT", 5000, "mlflow", 5000),
        Port("S3_PORT", 8333, "s3", 8333),
        Port("SERVE_PORT", 5001, "serve", 5001),
    ),
    artifact_mode=ArtifactMode.CLIENT_S3,
    backend="postgresql",
    checks=(
        "artifact and model files are objects in the S3 bucket (boto3)",
        "the run is a row in PostgreSQL's runs table",
    ),
)

TOPOLOGIES: dict[str, Topology] = {t.name: t for t in (POSTGRES_S3,)}


def get(name: str) -> Topology:
    """The topology called ``name``, or an error naming the valid ones."""
    from mlflowkit.errors import UnknownTopology

    try:
        return TOPOLOGIES[name]
    except KeyError:
        raise UnknownTopology(name, tuple(TOPOLOGIES)) from None
