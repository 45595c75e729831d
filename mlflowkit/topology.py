"""The storage topologies, declared once.

Everything else — the CLI's choices, Makefile targets, the README table, the e2e test's parameters and the
contract test against ``stacks/<name>/compose.yaml`` — is derived from :data:`TOPOLOGIES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Backend(str, Enum):
    """Where runs, metrics and the model registry live."""

    FILE = "file"
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"

    @property
    def local_path(self) -> str | None:
        """The store's path under MLFLOW_DATA_DIR (the compose files of the local topologies say the same)."""
        return {Backend.FILE: "mlruns", Backend.SQLITE: "mlruns.db"}.get(self)

    def local_uri(self, data_dir: str) -> str:
        """The tracking URI of a local store in ``data_dir``."""
        if self is Backend.SQLITE:
            return f"sqlite:///{data_dir}/{self.local_path}"
        if self is Backend.FILE:
            return f"file://{data_dir}/{self.local_path}"
        raise ValueError(f"{self.value} is not a local store")


# The services that hold data (PostgreSQL, S3) rather than run MLflow.
STORE_SERVICES = frozenset({"postgres", "s3"})
# Where the local topologies keep artifacts, under MLFLOW_DATA_DIR.
LOCAL_ARTIFACTS = "mlartifacts"


class ArtifactMode(str, Enum):
    """How artifact bytes travel between client and store."""

    LOCAL = "local"  # a directory the client (and any server) see at the same path
    CLIENT_S3 = "client-s3"  # the client reads and writes S3 itself (needs endpoint + keys)
    PROXIED = "proxied"  # the tracking server proxies S3 (mlflow-artifacts:/), the client has no keys
    ARTIFACTS_SERVER = "artifacts-server"  # a separate --artifacts-only server proxies S3


@dataclass(frozen=True)
class Port:
    """A port the stack publishes on the host: its .env variable, default and the service behind it."""

    variable: str
    default: int
    service: str  # the service that publishes it
    container_port: int | None  # None: the same number as published (the address must match on both sides)


@dataclass(frozen=True)
class Topology:
    """One storage topology: what runs, how a client connects and what validation must prove."""

    name: str
    title: str
    scenario: int  # the number of MLflow's tracking-server scenario it implements
    summary: str
    backend: Backend
    artifact_mode: ArtifactMode
    has_tracking_server: bool  # False: the client writes the store itself and `mlflow` is only a UI
    services: tuple[str, ...]  # long-running services `up --wait` must see healthy
    one_shots: tuple[str, ...]  # services that must run to completion first
    ports: tuple[Port, ...]
    checks: tuple[str, ...]  # what validation asserts beyond the common steps, in words
    serve_service: str = "serve"
    serve_profile: str = "serve"

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
    def servers(self) -> tuple[str, ...]:
        """The long-running MLflow services (tracking, artifacts, UI): what stops while a store is replaced."""
        return tuple(service for service in self.services if service not in STORE_SERVICES)

    @property
    def uses_s3(self) -> bool:
        return self.artifact_mode is not ArtifactMode.LOCAL

    @property
    def uses_data_dir(self) -> bool:
        """A host directory (MLFLOW_DATA_DIR) shared by client and containers at the same absolute path."""
        return self.backend is not Backend.POSTGRESQL

    @property
    def supports_auth(self) -> bool:
        """`mlflowkit up --auth`: MLflow's basic-auth app on every MLflow server of the stack (the tracking
        server, and the artifacts server of artifacts-only). Not where there is no server."""
        return self.has_tracking_server

    @property
    def client_needs_s3_credentials(self) -> bool:
        return self.artifact_mode is ArtifactMode.CLIENT_S3


def _ports(base: int, *extra: Port) -> tuple[Port, ...]:
    """MLflow (server or UI) on ``base``, the serving service on ``base + 1``: distinct per topology."""
    return (Port("MLFLOW_PORT", base, "mlflow", 5000), Port("SERVE_PORT", base + 1, "serve", 5001), *extra)


FILE = Topology(
    name="file",
    title="No server: the client writes a local file store; an MLflow UI reads it",
    scenario=1,
    summary="MLFLOW_TRACKING_URI=file:///…/mlruns on the client; the UI and the serving service bind-mount "
    "the same directory at the same path.",
    backend=Backend.FILE,
    artifact_mode=ArtifactMode.LOCAL,
    has_tracking_server=False,
    services=("mlflow",),
    one_shots=(),
    ports=_ports(5010),
    checks=("the run's meta.yaml, its artifact and the model's MLmodel are files under MLFLOW_DATA_DIR",),
)

SQLITE = Topology(
    name="sqlite",
    title="No server: the client writes a local SQLite database and artifact directory; an MLflow UI reads them",
    scenario=2,
    summary="MLFLOW_TRACKING_URI=sqlite:///…/mlruns.db on the client, artifacts in …/mlartifacts; the UI and "
    "the serving service bind-mount the same directory at the same path.",
    backend=Backend.SQLITE,
    artifact_mode=ArtifactMode.LOCAL,
    has_tracking_server=False,
    services=("mlflow",),
    one_shots=(),
    ports=_ports(5020),
    checks=("the run and the registered model are rows in mlruns.db", "artifact and model files on disk"),
)

SERVER_FILE = Topology(
    name="server-file",
    title="Tracking server on a file store; the client writes artifacts to a shared directory",
    scenario=3,
    summary="mlflow server --backend-store-uri <dir>/mlruns --default-artifact-root <dir>/mlartifacts "
    "--no-serve-artifacts; client and server see the directory at the same path.",
    backend=Backend.FILE,
    artifact_mode=ArtifactMode.LOCAL,
    has_tracking_server=True,
    services=("mlflow",),
    one_shots=(),
    ports=_ports(5030),
    checks=("artifacts are on disk where the server says they are (the run's artifact URI)",),
)

POSTGRES_S3 = Topology(
    name="postgres-s3",
    title="Tracking server on PostgreSQL, artifacts in S3 written by the client",
    scenario=4,
    summary="mlflow server on PostgreSQL with --default-artifact-root s3://… --no-serve-artifacts; "
    "clients hold the S3 endpoint and keys and move artifact bytes themselves.",
    backend=Backend.POSTGRESQL,
    artifact_mode=ArtifactMode.CLIENT_S3,
    has_tracking_server=True,
    services=("postgres", "s3", "mlflow"),
    one_shots=("create-bucket", "migrate"),
    ports=(Port("MLFLOW_PORT", 5000, "mlflow", 5000), Port("SERVE_PORT", 5001, "serve", 5001),
           Port("S3_PORT", 8333, "s3", 8333)),
    checks=("artifact and model files are objects in the S3 bucket", "the run is a row in PostgreSQL"),
)

PROXIED = Topology(
    name="proxied",
    title="Tracking server on PostgreSQL that proxies artifacts to S3; clients hold no S3 keys",
    scenario=5,
    summary="mlflow server --artifacts-destination s3-proxied://… --serve-artifacts; artifact URIs are "
    "mlflow-artifacts:/…, every byte goes through the server, S3 is not published.",
    backend=Backend.POSTGRESQL,
    artifact_mode=ArtifactMode.PROXIED,
    has_tracking_server=True,
    services=("postgres", "s3", "mlflow"),
    one_shots=("create-bucket", "migrate"),
    ports=_ports(5040),
    checks=("the validation client runs with no S3 keys or endpoint (boto3 finds no credentials)",
            "artifact URIs are mlflow-artifacts:/", "objects in the bucket, uploaded by the server",
            "the run is a row in PostgreSQL"),
)

ARTIFACTS_ONLY = Topology(
    name="artifacts-only",
    title="An --artifacts-only server proxies S3 beside a tracking server that serves no artifacts",
    scenario=6,
    summary="mlflow server --artifacts-only --artifacts-destination s3-proxied://…, and a tracking server on "
    "PostgreSQL with --default-artifact-root mlflow-artifacts://<artifacts host:port>/ --no-serve-artifacts.",
    backend=Backend.POSTGRESQL,
    artifact_mode=ArtifactMode.ARTIFACTS_SERVER,
    has_tracking_server=True,
    services=("postgres", "s3", "artifacts", "mlflow"),
    one_shots=("create-bucket", "migrate"),
    ports=(Port("MLFLOW_PORT", 5050, "mlflow", 5000), Port("SERVE_PORT", 5051, "artifacts", 5001),
           Port("ARTIFACTS_PORT", 5052, "artifacts", None)),
    checks=("the validation client runs with no S3 keys or endpoint (boto3 finds no credentials)",
            "tracking calls to the artifacts server are refused", "artifact URIs point at the artifacts server",
            "objects in the bucket, uploaded by the artifacts server", "the run is a row in PostgreSQL"),
)

TOPOLOGIES: dict[str, Topology] = {
    t.name: t for t in (FILE, SQLITE, SERVER_FILE, POSTGRES_S3, PROXIED, ARTIFACTS_ONLY)
}
# The README's first stack (`make stack-postgres-s3`) and the pytest plugin's topology when none is chosen.
DEFAULT = POSTGRES_S3.name


def get(name: str) -> Topology:
    """The topology called ``name``, or an error naming the valid ones."""
    from mlflowkit.errors import UnknownTopology

    try:
        return TOPOLOGIES[name]
    except KeyError:
        raise UnknownTopology(name, tuple(TOPOLOGIES)) from None


def markdown_table() -> str:
    """The README's topology table (a contract test keeps the README equal to it: `mlflowkit list --markdown`)."""
    rows = ["| topology | MLflow scenario | what it is | client needs | `make` |", "|---|---|---|---|---|"]
    for t in TOPOLOGIES.values():
        if not t.has_tracking_server:
            needs = "`MLFLOW_TRACKING_URI` of the local store"
        elif t.artifact_mode is ArtifactMode.LOCAL:
            needs = "`MLFLOW_TRACKING_URI` + the artifact directory at the same path"
        elif t.client_needs_s3_credentials:
            needs = "`MLFLOW_TRACKING_URI` + S3 endpoint and keys"
        else:
            needs = "`MLFLOW_TRACKING_URI` only"
        rows.append(f"| [`{t.name}`](stacks/{t.name}/README.md) | {t.scenario} | {t.title} | {needs} "
                    f"| `make stack-{t.name}` |")
    return "\n".join(rows) + "\n"
