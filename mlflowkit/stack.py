"""Bring a topology's stack up and down, and ask it how it is: the orchestration behind the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlflowkit import envfile, images, people, tls, workspaces
from mlflowkit.client import Connection
from mlflowkit.docker import Compose, check_engine, engine_environ, run
from mlflowkit.errors import CommandError, KitError, PortTaken
from mlflowkit.serving import ServedModel, free_port
from mlflowkit.settings import Settings
from mlflowkit.topology import (
    BROWSER_BLOCKED_PORTS,
    IMAGE_VARIABLE,
    LOCAL_ARTIFACTS,
    METRICS_PROFILE,
    METRICS_SERVICE,
    METRICS_SWITCH,
    TOPOLOGIES,
    WORKSPACES_SWITCH,
    Backend,
    Topology,
)

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ServiceState:
    service: str
    state: str  # running | exited | …
    health: str  # healthy | starting | unhealthy | "" (no healthcheck)
    exit_code: int
    ports: str
    replica: int = 1  # Compose's container number: 1..N for a service with replicas
    addresses: tuple[str, ...] = ()  # its IP addresses on the stack's networks
    restarts: int = 0  # how often the engine restarted it (its restart policy)


@dataclass(frozen=True)
class Member:
    """One container of a stack as `mlflowkit status` shows it: which replica, what it does, how it is."""

    name: str  # "mlflow" or, for a replicated service, "mlflow #2"
    role: str  # "tracking replica (lb: UP)", "database", "one-shot", …
    state: ServiceState


def label_ports(published: str, topology: Topology, values: dict[str, str]) -> str:
    """``"127.0.0.1:5052, 127.0.0.1:5051"`` -> ``"127.0.0.1:5052 (ARTIFACTS_PORT), 127.0.0.1:5051 (SERVE_PORT)"``:
    which of the stack's port variables each published address is."""
    names = {values.get(port.variable): port.variable for port in topology.ports}
    items = [item for item in published.split(", ") if item]
    return ", ".join(f"{item} ({names[item.rsplit(':', 1)[1]]})" if item.rsplit(":", 1)[1] in names else item
                     for item in items)


class Stack:
    """One topology's compose project on this machine."""

    def __init__(self, topology: Topology, settings: Settings | None = None, log: Log = _stderr) -> None:
        self.topology = topology
        self.settings = settings or Settings()
        self.log = log

    @property
    def project(self) -> str:
        return self.settings.project(self.topology.name)

    @property
    def compose_file(self) -> Path:
        return self.settings.stack_dir(self.topology.name) / "compose.yaml"

    @property
    def env_file(self) -> Path:
        return self.settings.env_file(self.topology.name)

    def compose(self, *, with_serve: bool = False, with_metrics: bool = False,
                with_one_shots: bool = False) -> Compose:
        """The stack's Compose project: its compose file, a user's override, and only the .env's values (plus
        what the CLI needs to find the engine) as the environment — nothing else of the caller's shell.
        ``with_one_shots``: the profile of one-shots run on demand too (to take them down with the stack).
        ``with_metrics``: the metrics profile too (Prometheus). Its scrape targets are derived from the topology
        and the .env's ports, then the stores it scrapes (a .env's own METRICS_TARGETS wins); a port variable
        missing from an older .env is the declared default."""
        profiles = ((self.topology.serve_profile,) if with_serve else ()) + (
            (METRICS_PROFILE,) if with_metrics and self.topology.has_metrics else ()) + (
            (self.topology.one_shots_profile,) if with_one_shots and self.topology.one_shots_profile else ())
        env_file = self.env_file if self.env_file.exists() else None
        values = self.env() if env_file is not None else {}
        if self.topology.has_metrics and env_file is not None:
            derived = {port.variable: str(port.default) for port in self.topology.ports}
            derived["METRICS_TARGETS"] = ",".join(
                self.topology.metrics_targets(values) + self.topology.store_metrics_targets)
            values = {**derived, **values}
        files = (self.compose_file, *self.settings.override_files(self.topology.name))
        return Compose(files=files, project=self.project, env_file=env_file, profiles=profiles,
                       env=engine_environ(values), timeout=self.settings.command_timeout)

    def env(self) -> dict[str, str]:
        return envfile.load(self.env_file, self.topology)

    # --- lifecycle -------------------------------------------------------------------------------------

    def up(self, *, keep: bool = False, auth: bool = False, free_ports: bool = False, metrics: bool = False,
           workspaces: bool = False) -> None:
        """Build missing images, write .env, ``up --wait``; on failure show logs and remove what started.

        ``free_ports``: a stack whose .env is new publishes on free 127.0.0.1 ports instead of the defaults
        (tests and parallel runs); an existing .env keeps its ports.
        ``metrics``: every MLflow server exposes /metrics and the metrics profile runs (Prometheus scraping them),
        waited for like the rest; kept in .env (MLFLOW_METRICS), so a later `up` keeps it (remove the key to stop).
        ``workspaces``: MLflow's workspaces (mlflowkit/workspaces.py), kept in .env the same way.
        """
        if auth and not self.topology.supports_auth:
            raise KitError(f"--auth is not available for {self.topology.name}.",
                           hint="it protects MLflow servers; file and sqlite have none (their data is a local file).")
        if workspaces and not self.topology.supports_workspaces:
            raise KitError(f"--workspaces is not available for {self.topology.name}.",
                           hint="MLflow's workspaces need a SQL store behind the stack's one MLflow server: "
                                + ", ".join(sorted(t.name for t in TOPOLOGIES.values() if t.supports_workspaces))
                                + ".")
        if workspaces or (self.env_file.exists() and self.workspaces_enabled):
            self._check_workspaces_image()
        if metrics and not self.topology.has_metrics:
            raise KitError(f"--metrics is not available for {self.topology.name}.",
                           hint="it scrapes MLflow servers; file and sqlite run only a UI (clients write the store).")
        check_engine()
        images.ensure(self.settings, self.log)
        if free_ports and not self.env_file.exists():
            envfile.ensure(self.env_file, self.topology, self.settings.bind_address,
                           self.settings.data_dir(self.topology.name), auth=auth, workspaces=workspaces,
                           ports={port.variable: free_port() for port in self.topology.ports})
        values = envfile.ensure(self.env_file, self.topology, self.settings.bind_address,
                                self.settings.data_dir(self.topology.name), auth=auth, workspaces=workspaces)
        if self.topology.uses_data_dir:
            self._prepare_data_dir(values)
        if self.topology.tls:
            values = self._prepare_tls(values)
        self._check_budget(values)
        if metrics and not values.get(METRICS_SWITCH):
            envfile.set_value(self.env_file, METRICS_SWITCH, "true")
            values[METRICS_SWITCH] = "true"
        metrics = bool(values.get(METRICS_SWITCH)) and self.topology.has_metrics  # a stack that has it keeps it
        running = {s.service for s in self.states() if s.state == "running"}
        if not metrics and METRICS_SERVICE in running:  # MLFLOW_METRICS removed from .env: its scraper goes too
            self.compose(with_metrics=True).call("rm", "--stop", "--force", METRICS_SERVICE)
        self._check_ports(values, running | (set() if metrics else {METRICS_SERVICE}))
        self.log(f"up: starting {self.project}" + (" with metrics" if metrics else "")
                 + f" (timeout {self.settings.up_timeout:.0f} s)")
        try:
            self.compose(with_metrics=metrics).up(timeout=self.settings.up_timeout)
        except CommandError as exc:
            failure = self._failure_report()
            if not keep:
                self.log("up: failed; removing the containers it started (volumes kept; --keep keeps them)")
                self.compose(with_serve=True, with_metrics=True, with_one_shots=True).down()
            raise KitError(f"{self.topology.name} did not come up: {exc.message}",
                           hint="see the service logs above; `mlflowkit up --keep` leaves them for inspection.",
                           details=failure) from None
        self.log(f"up: {self.topology.name} is up")

    def down(self, *, volumes: bool = False) -> None:
        """Stop and remove the containers; ``volumes``: the stack's data too (named volumes, and a local
        topology's store and artifacts under MLFLOW_DATA_DIR — nothing else in that directory)."""
        check_engine()
        if not self.states() and not (volumes and (self.volumes() or self.local_data())):
            raise KitError(f"{self.topology.name} is not up (no containers in project {self.project}).",
                           hint="`mlflowkit status` lists what runs.")
        self.compose(with_serve=True, with_metrics=True, with_one_shots=True).down(volumes=volumes)
        for path in self.local_data() if volumes else []:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if volumes and self.passwords.directory.is_dir():  # the users they let in went with the volumes
            shutil.rmtree(self.passwords.directory)
        self.log(f"down: {self.topology.name} stopped" + (", volumes removed" if volumes else ", volumes kept"))

    def local_data(self) -> list[Path]:
        """A local topology's data under MLFLOW_DATA_DIR that exists: its store (mlruns, mlruns.db) and its
        artifacts (mlartifacts). Empty for the others, and without a .env (no directory is known)."""
        if not self.topology.uses_data_dir or not self.env_file.exists():
            return []
        data = Path(self.env()["MLFLOW_DATA_DIR"])
        if not data.is_absolute():
            return []
        paths = [data / str(self.topology.backend.local_path), data / LOCAL_ARTIFACTS]
        return [path for path in paths if path.exists() or path.is_symlink()]

    def serve(self) -> ServedModel:
        """(Re)start the serving service on the model's current alias and wait for ``/ping``: asked from here
        every 0.25 s, not through the healthcheck's 2 s interval (`up --wait` saw a ready server ~1-2 s late)."""
        values = self.env()
        port = int(values[self.topology.port("SERVE_PORT").variable])
        service = self.topology.serve_service
        if self.auth_enabled:  # its own user, which only reads (made or its password set: after a restore too)
            people.ensure(self.user_server(), values["MLFLOW_SERVE_USERNAME"], values["MLFLOW_SERVE_PASSWORD"])
        self.log(f"serve: starting {service} on 127.0.0.1:{port}")
        served = ServedModel(f"http://127.0.0.1:{port}", timeout=self.settings.client_timeout)
        try:
            # --no-deps: the stack is up; re-running its one-shots (migrations) would only cost time.
            self.compose(with_serve=True).up([service], timeout=self.settings.up_timeout, recreate=True,
                                             no_deps=True, progress=False, wait=False)
            served.wait(timeout=self.settings.up_timeout, alive=lambda: self._serving_alive(service))
        except KitError as exc:  # compose's CommandError, or no /ping in time
            logs = self.logs([service], tail=60)
            self.stop_serving()  # nothing half-started left behind
            raise KitError(f"the serving service did not become healthy: {exc.message}", details=logs) from None
        return served

    def _serving_alive(self, service: str) -> bool:
        """Running and never restarted (the service restarts a scoring server that exits: a model that cannot
        load would loop)."""
        state = next((s for s in self.states() if s.service == service), None)
        return state is not None and state.state == "running" and state.restarts == 0

    def s3_object_exists(self, bucket: str, key: str) -> bool:
        """Asked from inside the stack (the one-shot that holds the S3 keys), so clients need none."""
        probe = ("import sys, boto3, botocore.exceptions, os\n"
                 "s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n"
                 "try:\n    s3.head_object(Bucket=sys.argv[1], Key=sys.argv[2])\n"
                 "except botocore.exceptions.ClientError:\n    sys.exit(3)\n")
        try:
            self.compose().call("run", "--rm", "--no-deps", "--entrypoint", "python", "create-bucket",
                                "-c", probe, bucket, key)
        except CommandError as exc:
            if exc.returncode == 3:
                return False
            raise
        return True

    @contextmanager
    def serving(self) -> Iterator[ServedModel]:
        """The serving service on the model's current alias, for the block; stopped afterwards."""
        served = self.serve()
        try:
            yield served
        finally:
            self.stop_serving()

    def stop_serving(self) -> None:
        compose = self.compose(with_serve=True)
        compose.call("rm", "--stop", "--force", self.topology.serve_service)

    # --- inspection ------------------------------------------------------------------------------------

    def states(self) -> list[ServiceState]:
        """The project's containers, from the engine (needs neither .env nor compose file)."""
        timeout = self.settings.command_timeout
        ids = run(["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter",
                   f"label=com.docker.compose.project={self.project}"], timeout=timeout).stdout.split()
        if not ids:
            return []
        try:
            out = run(["docker", "inspect", *ids], timeout=timeout).stdout
        except CommandError as exc:  # a container removed meanwhile: the others are still printed
            out = exc.stdout if exc.stdout.strip().startswith("[") else "[]"
        return sorted((_state(item) for item in json.loads(out)), key=lambda state: (state.service, state.replica))

    def members(self) -> list[Member]:
        """Every container with its role; each replica with its health as the load balancer sees it, each
        PostgreSQL node of a Patroni cluster with its role in it (leader, sync replica, replica)."""
        states = self.states()
        replicated = {r.service for r in self.topology.replicas}
        balancer = self.topology.balancer
        running = {s.service for s in states if s.state == "running"}
        view = self.balancer_view() if balancer in running and replicated else {}
        nodes = self.topology.patroni.nodes if self.topology.patroni else ()
        cluster = self.database_roles([node for node in nodes if node in running])
        members = []
        for s in states:
            role = self.topology.role(s.service) or ("one-shot" if s.service in self.topology.one_shots else "")
            role = role or ("metrics (profile metrics)" if s.service == METRICS_SERVICE else "")
            if s.service in replicated:
                seen = next((view[address] for address in s.addresses if address in view), "not in its pool")
                role += f" ({balancer}: {seen})"
            if s.service in nodes:
                role += f" ({cluster.get(s.service, 'not in the cluster')})"
            name = f"{s.service} #{s.replica}" if s.service in replicated else s.service
            members.append(Member(name, role, s))
        return members

    def volumes(self) -> list[str]:
        out = run(["docker", "volume", "ls", "--quiet", "--filter",
                   f"label=com.docker.compose.project={self.project}"],
                  timeout=self.settings.command_timeout).stdout
        return out.split()

    def logs(self, services: list[str] | None = None, tail: int | None = None) -> str:
        return self.compose(with_serve=True, with_metrics=True).logs(services or [], tail=tail)

    @property
    def metrics_running(self) -> bool:
        """The metrics profile's Prometheus runs (`up --metrics`): validation then checks what it scrapes."""
        return self.topology.has_metrics and any(
            s.service == METRICS_SERVICE and s.state == "running" for s in self.states())

    def metrics_url(self) -> str:
        """Prometheus's address on this host (PROMETHEUS_PORT)."""
        port = self.topology.port("PROMETHEUS_PORT")
        return f"http://127.0.0.1:{self.env().get(port.variable) or port.default}"

    def connection(self) -> Connection:
        """How a client on this host reaches the stack (what `mlflowkit env` prints)."""
        values = self.env()
        timeout = self.settings.client_timeout
        if not self.topology.has_tracking_server:
            data = values["MLFLOW_DATA_DIR"]
            backend = self.topology.backend
            # SQLite has no server to say where artifacts go (MLflow would use ./mlruns): beside the database.
            artifacts = f"file://{data}/{LOCAL_ARTIFACTS}" if backend is Backend.SQLITE else None
            return Connection(backend.local_uri(data), artifact_location=artifacts, timeout=timeout)
        s3 = self.topology.client_needs_s3_credentials
        auth = bool(values.get("MLFLOW_AUTH_ARGS"))
        ca = self.ca_path()
        return Connection(
            self.ui_url(), timeout=timeout,
            s3_endpoint_url=f"http://127.0.0.1:{values['S3_PORT']}" if s3 else None,
            aws_access_key_id=values["AWS_ACCESS_KEY_ID"] if s3 else None,
            aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"] if s3 else None,
            username=values["MLFLOW_AUTH_ADMIN_USERNAME"] if auth else None,
            password=values["MLFLOW_AUTH_ADMIN_PASSWORD"] if auth else None,
            server_cert_path=str(ca) if ca else None,
        )

    def server_version(self) -> str:
        """The MLflow version the stack's server (the UI server of the local topologies) reports (``/version``)."""
        import requests

        connection = self.connection()
        auth = (connection.username, connection.password or "") if connection.username else None
        try:
            response = requests.get(f"{self.ui_url()}/version", auth=auth, timeout=connection.timeout,
                                    verify=connection.server_cert_path or True)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise KitError(f"the {self.topology.name} MLflow server does not answer /version: {exc}",
                           hint=f"`mlflowkit status {self.topology.name}`, `mlflowkit up {self.topology.name}`.",
                           ) from None
        return response.text.strip()

    @property
    def auth_enabled(self) -> bool:
        return bool(self.env().get("MLFLOW_AUTH_ARGS"))

    @property
    def workspaces_enabled(self) -> bool:
        return self.env().get(WORKSPACES_SWITCH, "").lower() == "true"

    # --- people (--auth) -------------------------------------------------------------------------------

    @property
    def passwords(self) -> people.Passwords:
        """The passwords `mlflowkit users` made for this stack's people (beside its .env)."""
        return people.Passwords(self.settings.state_dir(self.topology.name) / "people")

    def user_server(self) -> people.Server:
        """The MLflow server that keeps the stack's users, as its admin reaches it from here: the tracking server
        (ha's replicas share one users database, artifacts-only's artifacts server the tracking server's)."""
        self._require_auth()
        values = self.env()
        return self._tracking_server((values["MLFLOW_AUTH_ADMIN_USERNAME"], values["MLFLOW_AUTH_ADMIN_PASSWORD"]))

    def _tracking_server(self, admin: tuple[str, str] | None) -> people.Server:
        connection = self.connection()
        return people.Server("tracking", self.ui_url(), admin, connection.server_cert_path or True,
                             connection.timeout)

    def _check_workspaces_image(self) -> None:
        """The MLflow this stack runs (its .env's image; none named: the kit's) has workspaces."""
        workspaces.check_image((self.env() if self.env_file.exists() else {}).get(IMAGE_VARIABLE, ""))

    def add_person(self, name: str) -> str:
        """Make ``name`` a user (`mlflowkit users add`); on a stack with workspaces, also a ``user`` of the
        default workspace, which every person could write to before workspaces. Returns the new password."""
        server = self.user_server()
        password = people.add(server, self.passwords, name)
        if self.workspaces_enabled:
            workspaces.grant(server, workspaces.DEFAULT, name, workspaces.Level.USER)
        return password

    def workspace_server(self) -> people.Server:
        """The server whose workspaces `mlflowkit workspaces` manages: the users' server as its admin; without
        --auth, anyone (workspaces then keep teams' lists apart, not their data)."""
        if not self.workspaces_enabled:
            raise KitError(f"{self.topology.name} runs without --workspaces.",
                           hint=f"`mlflowkit up {self.topology.name} --auth --workspaces` (a stack with data keeps "
                                "it, in the default workspace).")
        return self.user_server() if self.auth_enabled else self._tracking_server(None)

    def _require_auth(self) -> None:
        if not self.auth_enabled:
            raise KitError(f"{self.topology.name} runs without --auth: it has no users, every client is anonymous.",
                           hint=f"`mlflowkit up {self.topology.name} --auth` on a new stack "
                                "(or after `down --volumes`).")

    def client_connection(self, user: str | None = None, admin: bool = False,
                          workspace: str | None = None) -> Connection:
        """Whose connection a client gets (`mlflowkit env`, ``stack_connection``): on a stack with --auth, a
        person's own (``user``) or, asked for by name, the admin's; on one without, the stack's. ``workspace``:
        in that workspace (a stack with --workspaces; checked to exist)."""
        from dataclasses import replace

        connection = self._whose_connection(user, admin)
        if workspace is None:
            return connection
        if workspace not in {w.name for w in workspaces.listed(self.workspace_server())}:
            raise KitError(f"{workspace} is not a workspace of {self.topology.name}.",
                           hint=f"`mlflowkit workspaces list {self.topology.name}` shows them.")
        return replace(connection, workspace=workspace)

    def _whose_connection(self, user: str | None, admin: bool) -> Connection:
        name = self.topology.name
        if user and admin:
            raise KitError("give a user or the admin, not both.")
        if user:
            return self.person_connection(user)
        if self.auth_enabled and not admin:
            raise KitError(f"{name} runs with --auth: say whose connection to use.",
                           hint=f"a person's (`mlflowkit users add {name} NAME`, then `mlflowkit env {name} --user "
                                f"NAME` or stack_connection('{name}', user='NAME')), or the admin's (--admin, "
                                "admin=True).")
        if admin and not self.auth_enabled:
            raise KitError(f"{name} runs without --auth: it has no admin.", hint=f"`mlflowkit env {name}`.")
        return self.connection()

    def person_connection(self, name: str) -> Connection:
        """How ``name`` reaches the stack: the stack's connection with their user name and password, not the admin's."""
        from dataclasses import replace

        self._require_auth()
        password = self.passwords.get(name)
        if password is None:
            raise KitError(f"the kit holds no password for {name} on {self.topology.name}.",
                           hint=f"`mlflowkit users add {self.topology.name} {name}` (a new user) or "
                                f"`mlflowkit users reset {self.topology.name} {name}` (a new password).")
        return replace(self.connection(), username=name, password=password)

    def ui_url(self) -> str:
        scheme = "https" if self.topology.tls else "http"
        return f"{scheme}://127.0.0.1:{self.env()['MLFLOW_PORT']}"

    def _prepare_data_dir(self, values: dict[str, str]) -> None:
        """Create the shared directory before Compose would (as root) and check it is absolute."""
        data = Path(values["MLFLOW_DATA_DIR"])
        if not data.is_absolute():
            raise KitError(f"MLFLOW_DATA_DIR must be an absolute path, not {data}.",
                           hint=f"fix it in {self.env_file}.")
        for sub in (data, data / LOCAL_ARTIFACTS):
            sub.mkdir(parents=True, exist_ok=True)
        # The store itself is MLflow's to create: a file store made over an existing directory has no Default
        # experiment (experiment 0), and MLflow's quickstart (no experiment set) fails on it. An empty one (what
        # earlier kits made here) goes, so the next server or client creates the store whole.
        store = data / str(self.topology.backend.local_path)
        if store.is_dir() and not any(store.iterdir()):
            store.rmdir()

    def _prepare_tls(self, values: dict[str, str]) -> dict[str, str]:
        """The load balancer's certificate (and the local CA that signs it) in TLS_DIR; the load balancer runs
        as this user, who owns the key. Keys missing from .env are added, values a user set are kept."""
        wanted = {"TLS_DIR": str(self.settings.state_dir(self.topology.name) / "tls"),
                  "LB_UID": str(os.getuid()), "LB_GID": str(os.getgid())}
        for key, value in wanted.items():
            if not values.get(key):
                envfile.set_value(self.env_file, key, value)
                values[key] = value
        names = ["localhost", "127.0.0.1", str(self.topology.balancer)]
        bind = values.get("BIND_ADDRESS", "127.0.0.1")
        names += [bind] if bind not in ("0.0.0.0", "::", "") else []
        names += [name.strip() for name in values.get("TLS_NAMES", "").split(",") if name.strip()]
        tls.ensure(Path(values["TLS_DIR"]), list(dict.fromkeys(names)))
        return values

    def _check_budget(self, values: dict[str, str]) -> None:
        """A replicated stack's database connections must fit PgBouncer's and PostgreSQL's limits."""
        budget = self.topology.budget(values, auth=bool(values.get("MLFLOW_AUTH_ARGS")))
        problems = budget.problems() if budget else []
        if problems:
            raise KitError(f"{self.topology.name}: connection budget exceeded: {'; '.join(problems)}.",
                           hint=f"in {self.env_file}: fewer MLFLOW_REPLICAS/ARTIFACTS_REPLICAS or MLFLOW_WORKERS, a "
                                "smaller MLFLOW_DB_POOL_SIZE/MLFLOW_DB_MAX_OVERFLOW, or higher "
                                "PGBOUNCER_MAX_CLIENT_CONN / POSTGRES_MAX_CONNECTIONS.")
        if budget:
            self.log(f"up: connection budget: servers {budget.clients}/{budget.client_limit} to PgBouncer, "
                     f"PgBouncer {budget.servers}/{budget.server_limit} to PostgreSQL")

    def ca_path(self) -> Path | None:
        """The CA certificate clients of a TLS stack trust (MLFLOW_TRACKING_SERVER_CERT_PATH)."""
        if not self.topology.tls:
            return None
        return tls.Files(Path(self.env().get("TLS_DIR") or self.settings.state_dir(self.topology.name) / "tls")).ca

    def balancer_view(self) -> dict[str, str]:
        """The replicas as the load balancer sees them: their IP address -> ``UP``/``DOWN``/… (HAProxy's
        statistics, read inside its container); empty when there is no balancer or it does not answer."""
        if not self.topology.balancer:
            return {}
        try:
            out = self.compose().exec(self.topology.balancer, ["curl", "-fsS", "http://127.0.0.1:8404/stats;csv"],
                                      timeout=30)
        except CommandError:
            return {}
        return parse_haproxy_csv(out, {r.backend for r in self.topology.replicas})

    def database_roles(self, nodes: list[str]) -> dict[str, str]:
        """The Patroni cluster's members as it sees them: name -> ``leader``/``sync replica``/``replica`` (with
        the state when it is not running), asked of the first of ``nodes`` whose REST API answers (inside its
        container: the API is not published); empty when none does."""
        patroni = self.topology.patroni
        if patroni is None:
            return {}
        for node in nodes:
            try:
                out = self.compose().exec(node, ["curl", "-fsS", f"http://127.0.0.1:{patroni.api_port}/cluster"],
                                          timeout=30)
            except CommandError:
                continue
            return parse_patroni_cluster(out)
        return {}

    def _check_ports(self, values: dict[str, str], running: set[str]) -> None:
        address = values.get("BIND_ADDRESS", "127.0.0.1")
        for port in self.topology.ports:
            if port.service in running:
                continue
            number = int(values.get(port.variable, port.default))
            if number in BROWSER_BLOCKED_PORTS:
                self.log(f"up: warning: {port.variable}={number} is a port browsers refuse to open (the Fetch "
                         f"standard's bad ports); choose another in {self.env_file}")
            if not port_free(address, number):
                raise PortTaken(address, number, port.variable, str(self.env_file))

    def _failure_report(self) -> str:
        """The last log lines of every service that is not running healthy or exited 0."""
        try:
            states = self.states()
        except CommandError:
            return ""
        bad = [s.service for s in states
               if s.health == "unhealthy" or (s.state == "exited" and s.exit_code != 0)
               or (s.state == "running" and s.health == "starting")]
        if not bad:
            bad = [s.service for s in states]
        try:
            return self.logs(bad, tail=40)
        except CommandError as exc:
            return exc.details or ""


def _state(container: dict) -> ServiceState:
    """A ``docker inspect`` document: compose labels, State (Status, ExitCode, Health) and published ports."""
    state = container.get("State") or {}
    labels = (container.get("Config") or {}).get("Labels") or {}
    published = []
    networks = ((container.get("NetworkSettings") or {}).get("Networks") or {}).values()
    addresses = tuple(n["IPAddress"] for n in networks if n and n.get("IPAddress"))
    for bindings in ((container.get("NetworkSettings") or {}).get("Ports") or {}).values():
        for binding in bindings or []:
            host = binding.get("HostIp") or "0.0.0.0"
            published.append(f"[{host}]:{binding['HostPort']}" if ":" in host else f"{host}:{binding['HostPort']}")
    return ServiceState(
        service=labels.get("com.docker.compose.service", container.get("Name", "").lstrip("/")),
        state=state.get("Status", ""),
        health=(state.get("Health") or {}).get("Status", ""),
        exit_code=int(state.get("ExitCode") or 0),
        ports=", ".join(dict.fromkeys(published)),
        replica=int(labels.get("com.docker.compose.container-number") or 1),
        addresses=addresses,
        restarts=int(container.get("RestartCount") or 0),
    )


def parse_haproxy_csv(text: str, backends: set[str]) -> dict[str, str]:
    """HAProxy's ``stats;csv``: the address (IP, port dropped) -> status of each server of ``backends`` that has
    one (server-template slots without a replica have no address)."""
    import csv

    lines = text.lstrip("# ").splitlines()
    view = {}
    for row in csv.DictReader(lines):
        if row.get("pxname") in backends and row.get("svname") not in ("FRONTEND", "BACKEND") and row.get("addr"):
            view[row["addr"].rsplit(":", 1)[0]] = row.get("status", "")
    return view


_PATRONI_ROLES = {"leader": "leader", "sync_standby": "sync replica", "replica": "replica",
                  "standby_leader": "standby leader"}


def parse_patroni_cluster(text: str) -> dict[str, str]:
    """Patroni's ``GET /cluster``: member name -> its role in words, and its state when that is not running
    (``replica, starting``); {} for what is not that document."""
    try:
        members = json.loads(text).get("members") or []
    except (ValueError, AttributeError):
        return {}
    view = {}
    for member in members:
        role = _PATRONI_ROLES.get(member.get("role", ""), member.get("role", "?"))
        state = member.get("state", "")
        view[member.get("name", "?")] = role if state in ("running", "streaming") else f"{role}, {state or '?'}"
    return view


def port_free(address: str, port: int) -> bool:
    """True when nothing listens on ``address:port`` (so a container can publish it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address if address != "0.0.0.0" else "", port))
        except OSError:
            return False
    return True
