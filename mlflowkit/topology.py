"""The storage topologies, declared once.

Everything else — the CLI's choices, Makefile targets, the README table, the e2e test's parameters and the
contract test against ``stacks/<name>/compose.yaml`` — is derived from :data:`TOPOLOGIES`.
"""

from __future__ import annotations

from collections.abc import Mapping
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


# The database's address in every PostgreSQL stack (in a replicated one, a router to the leader): where the kit's
# pg_dump, pg_restore and psql run.
DATABASE_SERVICE = "postgres"
# The services that hold data (PostgreSQL, S3) rather than run MLflow.
STORE_SERVICES = frozenset({DATABASE_SERVICE, "s3"})
# Where the local topologies keep artifacts, under MLFLOW_DATA_DIR.
LOCAL_ARTIFACTS = "mlartifacts"
# The optional metrics profile (stacks/common/metrics.yaml): its service, and the port an MLflow server listens
# on inside the stack's network when no port variable says otherwise (its /metrics is scraped there).
METRICS_PROFILE = "metrics"
ONE_SHOTS_PROFILE = "one-shots"  # one-shots run on demand only (Topology.one_shots_profile)
METRICS_SERVICE = "prometheus"
IMAGE_VARIABLE = "MLFLOW_IMAGE"  # the stack's .env picks its MLflow image with it (stacks/common/images.yaml)
WORKSPACES_SWITCH = "MLFLOW_ENABLE_WORKSPACES"  # set in .env (`up --workspaces`): MLflow's workspaces on its servers
METRICS_SWITCH = "MLFLOW_METRICS"  # set in .env (`up --metrics`): the servers run with --expose-prometheus
SERVER_PORT = 5000
# Ports browsers refuse to open (the Fetch standard's "bad ports", which Chromium and Firefox both enforce: e.g.
# 5060/5061, SIP): a UI published on one cannot be opened. No default port may be one (a contract test), and
# `mlflowkit up` warns about a .env that chose one.
BROWSER_BLOCKED_PORTS = frozenset({
    1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109,
    110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530,
    531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190,
    5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
})


@dataclass(frozen=True)
class Scrape:
    """A store that publishes Prometheus metrics inside the stack's network: the metrics profile scrapes it in a
    job of its own (no credentials), and validation expects it up beside the MLflow servers."""

    job: str  # the scrape job in stacks/common/metrics.yaml (it keeps this target of METRICS_TARGETS)
    service: str
    port: int  # the service's metrics port (its command in stacks/common says the same)


# SeaweedFS of the S3 stacks (stacks/common/s3.yaml, `weed mini -metricsPort`): master, volume server, filer and S3
# gateway in one process, one endpoint. PostgreSQL has none (it takes an exporter): not scraped.
SEAWEEDFS_METRICS = Scrape("seaweedfs", "s3", 9327)


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
class Replicas:
    """A service that runs as several identical replicas behind the stack's load balancer."""

    service: str
    variable: str  # the .env variable that holds how many (Compose's deploy.replicas)
    default: int
    role: str  # what `mlflowkit status` calls each of them
    backend: str  # the load balancer's backend (HAProxy) that sends them requests
    # SQLAlchemy engines (each with its own pool) one server process opens on PostgreSQL with --auth (one
    # fewer without: the users store): tracking + registry + users for a tracking server, users for artifacts.
    engines: int


@dataclass(frozen=True)
class Patroni:
    """PostgreSQL under Patroni: nodes that elect their leader through etcd, behind a router (the service named
    ``postgres``, the database's address) that sends connections to the leader. `mlflowkit status` asks a node's
    REST API (``/cluster``) which one leads."""

    nodes: tuple[str, ...]  # the PostgreSQL nodes; each is its Patroni member name too
    consensus: tuple[str, ...]  # the etcd members
    api_port: int = 8008  # Patroni's REST API, inside the stack's network only
    consensus_port: int = 2379  # etcd's client API (its HTTP gateway too), inside the stack's network only


@dataclass(frozen=True)
class Pooling:
    """Database connections of a replicated topology: every server's pools go through PgBouncer, whose own
    connections go to PostgreSQL. Each limit is a .env variable with its default (the compose file's)."""

    workers: tuple[str, int] = ("MLFLOW_WORKERS", 1)  # uvicorn worker processes per replica
    pool_size: tuple[str, int] = ("MLFLOW_DB_POOL_SIZE", 2)  # per engine (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE)
    max_overflow: tuple[str, int] = ("MLFLOW_DB_MAX_OVERFLOW", 3)  # per engine, beyond the pool
    client_limit: tuple[str, int] = ("PGBOUNCER_MAX_CLIENT_CONN", 400)  # PgBouncer: connections it accepts
    per_database: tuple[str, int] = ("PGBOUNCER_MAX_DB_CONNECTIONS", 40)  # PgBouncer -> PostgreSQL, per database
    server_limit: tuple[str, int] = ("POSTGRES_MAX_CONNECTIONS", 100)  # PostgreSQL's max_connections
    databases: int = 2  # MLflow's and the users database of --auth
    reserved: int = 3  # PostgreSQL's superuser_reserved_connections (its default)
    direct: int = 5  # connections that bypass PgBouncer: the migrate one-shot, psql checks, backups


@dataclass(frozen=True)
class Budget:
    """The connection budget of a replicated stack, computed from its declaration and .env."""

    clients: int  # connections every server process together may hold to PgBouncer
    client_limit: int
    servers: int  # connections PgBouncer and the direct users may hold to PostgreSQL
    server_limit: int  # max_connections less PostgreSQL's superuser reserve
    detail: str  # how ``clients`` adds up, for the error message

    def problems(self) -> list[str]:
        found = []
        if self.clients > self.client_limit:
            found.append(f"the MLflow servers may open {self.clients} database connections ({self.detail}), "
                         f"PgBouncer accepts {self.client_limit}")
        if self.servers > self.server_limit:
            found.append(f"PgBouncer and direct clients may open {self.servers} connections to PostgreSQL, "
                         f"which takes {self.server_limit}")
        return found


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
    one_shots: tuple[str, ...]  # services that run to completion: the schema's migration, the bucket's creation
    ports: tuple[Port, ...]
    checks: tuple[str, ...]  # what validation asserts beyond the common steps, in words
    serve_service: str = "serve"
    serve_profile: str = "serve"
    # Set: the one-shots are in this Compose profile, run on demand only (upgrade, backup, migrate); the servers
    # prepare the stores themselves as they start. None: `up` runs them first and the servers wait for them.
    one_shots_profile: str | None = None
    # Replicated topologies: the load balancer (its service; it publishes MLFLOW_PORT and holds the TLS
    # certificate), the replicated services behind it, and how their database connections are pooled.
    balancer: str | None = None
    replicas: tuple[Replicas, ...] = ()
    pooling: Pooling | None = None
    roles: tuple[tuple[str, str], ...] = ()  # (service, role) of the other services, for `mlflowkit status`
    # With --auth, where the users live: None, in a SQLite file on the tracking server's volume, which every MLflow
    # server of the stack mounts (users_server); else in this PostgreSQL database, one for every replica
    # ("{POSTGRES_DB}" stands for the .env's value).
    auth_database: str | None = None
    patroni: Patroni | None = None  # a replicated PostgreSQL (Patroni + etcd)
    secrets: tuple[str, ...] = ()  # .env variables `mlflowkit up` generates beyond the backend's and S3's
    scraped: tuple[Scrape, ...] = ()  # stores the metrics profile scrapes beside the MLflow servers

    @property
    def has_metrics(self) -> bool:
        """The stack includes the metrics profile (Prometheus publishes a port): its MLflow servers run with
        `--expose-prometheus`. Not file and sqlite (their MLflow is a UI; clients write the store themselves)."""
        return any(port.service == METRICS_SERVICE for port in self.ports)

    def metrics_targets(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """``host:port`` of each MLflow server inside the stack's network, what Prometheus scrapes; a server
        that listens on a port variable (the same number inside and out) at that variable's value in ``values``.
        A replicated server is its service's name: every replica answers it (Prometheus resolves them all)."""
        targets = []
        for service in self.servers:
            own = [port for port in self.ports if port.service == service and port.container_port is None]
            number = values.get(own[0].variable) or str(own[0].default) if own else str(SERVER_PORT)
            targets.append(f"{service}:{number}")
        return tuple(targets)

    @property
    def store_metrics_targets(self) -> tuple[str, ...]:
        """``host:port`` of each store Prometheus scrapes (:attr:`scraped`), inside the stack's network."""
        return tuple(f"{s.service}:{s.port}" for s in self.scraped)

    @property
    def tls(self) -> bool:
        """Clients reach the stack over HTTPS (the load balancer's certificate, signed by the stack's own CA
        unless the user brings one)."""
        return self.balancer is not None

    def role(self, service: str) -> str:
        for replicas in self.replicas:
            if replicas.service == service:
                return replicas.role
        return dict(self.roles).get(service, "")

    def budget(self, values: Mapping[str, str], *, auth: bool) -> Budget | None:
        """The stack's database connections against PgBouncer's and PostgreSQL's limits (None: not pooled).
        ``values``: the .env (a variable it does not set has the compose file's default)."""
        if self.pooling is None:
            return None
        p = self.pooling

        def read(setting: tuple[str, int]) -> int:
            raw = values.get(setting[0], "")
            return int(raw) if raw.strip().isdigit() else setting[1]

        workers, per_engine = read(p.workers), read(p.pool_size) + read(p.max_overflow)
        parts, clients = [], 0
        for r in self.replicas:
            count, engines = read((r.variable, r.default)), r.engines - (0 if auth else 1)
            clients += count * workers * engines * per_engine
            parts.append(f"{count} {r.service} x {workers} worker(s) x {engines} pool(s) x {per_engine}")
        servers = read(p.per_database) * p.databases + p.direct
        return Budget(clients=clients, client_limit=read(p.client_limit), servers=servers,
                      server_limit=read(p.server_limit) - p.reserved, detail=" + ".join(parts))

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
        """The services that run `mlflow server` (a replicated topology's pools; not its balancer or stores): what
        stops while a store is replaced."""
        return (tuple(r.service for r in self.replicas)
                or tuple(service for service in self.services if service not in STORE_SERVICES))

    @property
    def users_server(self) -> str:
        """With --auth and no auth_database: the server whose volume holds the users of every MLflow server of the
        stack (the tracking server; artifacts-only's artifacts server mounts the same volume)."""
        return self.port("MLFLOW_PORT").service

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
    def supports_workspaces(self) -> bool:
        """`mlflowkit up --workspaces`: MLflow's workspaces need a SQL store behind a tracking server. Not yet
        where a separate `--artifacts-only` server answers clients' artifact calls (artifacts-only, ha's artifacts
        pool): it would need MLflow's workspace store too, and is not proven."""
        return (self.has_tracking_server and self.backend is Backend.POSTGRESQL
                and self.servers == (self.users_server,))

    @property
    def client_needs_s3_credentials(self) -> bool:
        return self.artifact_mode is ArtifactMode.CLIENT_S3


def _ports(base: int, *extra: Port) -> tuple[Port, ...]:
    """MLflow (server or UI) on ``base``, the serving service on ``base + 1``: distinct per topology."""
    return (Port("MLFLOW_PORT", base, "mlflow", SERVER_PORT), Port("SERVE_PORT", base + 1, "serve", 5001), *extra)


def _metrics_port(base: int) -> Port:
    """Prometheus of the metrics profile on ``base + 9`` (the topology's MLflow port + 9)."""
    return Port("PROMETHEUS_PORT", base + 9, METRICS_SERVICE, 9090)


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
    ports=_ports(5030, _metrics_port(5030)),
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
    one_shots_profile=ONE_SHOTS_PROFILE,
    ports=(Port("MLFLOW_PORT", 5000, "mlflow", 5000), Port("SERVE_PORT", 5001, "serve", 5001),
           Port("S3_PORT", 8333, "s3", 8333), _metrics_port(5000)),
    checks=("artifact and model files are objects in the S3 bucket", "the run is a row in PostgreSQL"),
    scraped=(SEAWEEDFS_METRICS,),
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
    one_shots_profile=ONE_SHOTS_PROFILE,
    ports=_ports(5040, _metrics_port(5040)),
    checks=("the validation client runs with no S3 keys or endpoint (boto3 finds no credentials)",
            "artifact URIs are mlflow-artifacts:/", "objects in the bucket, uploaded by the server",
            "the run is a row in PostgreSQL"),
    scraped=(SEAWEEDFS_METRICS,),
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
    one_shots_profile=ONE_SHOTS_PROFILE,
    ports=(Port("MLFLOW_PORT", 5050, "mlflow", 5000), Port("SERVE_PORT", 5051, "artifacts", 5001),
           Port("ARTIFACTS_PORT", 5052, "artifacts", None), _metrics_port(5050)),
    checks=("the validation client runs with no S3 keys or endpoint (boto3 finds no credentials)",
            "tracking calls to the artifacts server are refused", "artifact URIs point at the artifacts server",
            "objects in the bucket, uploaded by the artifacts server", "the run is a row in PostgreSQL"),
    scraped=(SEAWEEDFS_METRICS,),
)

HA = Topology(
    name="ha",
    title="Replicated tracking and artifacts servers behind HAProxy (TLS), PgBouncer, a SeaweedFS cluster",
    scenario=6,
    summary="MLFLOW_REPLICAS tracking servers and ARTIFACTS_REPLICAS --artifacts-only servers behind HAProxy, "
    "which terminates TLS (a local CA the kit makes), health-checks them and retries on another replica; one "
    "auth database and Flask secret for all; PgBouncer before PostgreSQL, a leader and a synchronous replica "
    "under Patroni (etcd, automatic failover) with writes routed to the leader; S3 on three SeaweedFS volume "
    "servers that keep every file twice.",
    backend=Backend.POSTGRESQL,
    artifact_mode=ArtifactMode.PROXIED,
    has_tracking_server=True,
    services=("etcd-1", "etcd-2", "etcd-3", "postgres-1", "postgres-2", "postgres", "pgbouncer", "s3-master",
              "s3-volume-1", "s3-volume-2", "s3-volume-3", "s3", "artifacts", "mlflow", "lb"),
    one_shots=("create-bucket", "migrate"),
    ports=(Port("MLFLOW_PORT", 5070, "lb", 8443), Port("SERVE_PORT", 5071, "serve", 5001), _metrics_port(5070)),
    checks=("the validation client runs with no S3 keys or endpoint, over HTTPS through the load balancer",
            "artifact URIs are mlflow-artifacts:/", "objects in the bucket, uploaded by an artifacts replica",
            "the run is a row in PostgreSQL"),
    balancer="lb",
    replicas=(Replicas("mlflow", "MLFLOW_REPLICAS", 2, "tracking replica", "tracking", engines=3),
              Replicas("artifacts", "ARTIFACTS_REPLICAS", 2, "artifacts replica", "artifacts", engines=1)),
    pooling=Pooling(),
    roles=(("lb", "load balancer (TLS)"), ("pgbouncer", "connection pooler"),
           ("postgres", "database router (to the leader)"), ("postgres-1", "PostgreSQL node"),
           ("postgres-2", "PostgreSQL node"), ("etcd-1", "etcd member"), ("etcd-2", "etcd member"),
           ("etcd-3", "etcd member"),
           ("s3-master", "S3 master"), ("s3-volume-1", "S3 volume server"), ("s3-volume-2", "S3 volume server"),
           ("s3-volume-3", "S3 volume server"), ("s3", "S3 filer + gateway")),
    patroni=Patroni(nodes=("postgres-1", "postgres-2"), consensus=("etcd-1", "etcd-2", "etcd-3")),
    auth_database="{POSTGRES_DB}_auth",
    secrets=("POSTGRES_REPLICATION_PASSWORD", "PATRONI_API_PASSWORD"),
)

TOPOLOGIES: dict[str, Topology] = {
    t.name: t for t in (FILE, SQLITE, SERVER_FILE, POSTGRES_S3, PROXIED, ARTIFACTS_ONLY, HA)
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
        elif t.tls:
            needs = "`MLFLOW_TRACKING_URI` + the stack's CA (`MLFLOW_TRACKING_SERVER_CERT_PATH`)"
        else:
            needs = "`MLFLOW_TRACKING_URI` only"
        rows.append(f"| [`{t.name}`](stacks/{t.name}/README.md) | {t.scenario} | {t.title} | {needs} "
                    f"| `make stack-{t.name}` |")
    return "\n".join(rows) + "\n"
