"""Run a rendered chart as containers on one Docker network, the way a cluster would run it, and hand it to the
kit's validation as a stack.

What a cluster does is emulated, from the rendered objects only (nothing here knows the topology):

- a Secret's data becomes the environment (``secretKeyRef``) and files (secret volumes) of the pods that use it,
  a ConfigMap's data files (configMap volumes);
  ``$(VAR)`` in an env value is expanded from the entries before it, as the kubelet does;
- a pod is one container per replica: the pod's user, a read-only root filesystem, all capabilities dropped, no
  privilege escalation; ``emptyDir`` is a tmpfs, a claim a named volume; ``command``/``args`` replace the image's
  entrypoint/cmd as in Kubernetes; its readiness probe is the container's health check;
- a Service is a network alias on every container its selector matches (same port numbers: the chart's Services
  do not remap ports, which :func:`plan` checks);
- the order is Helm's: external stores (plain containers the caller passes, standing in for endpoints outside
  the cluster) first, then the chart's own stores, the install hook Jobs (pre-install ones — an external
  store's migration and bucket — and post-install ones, by weight) each to completion (pre-upgrade ones belong to
  an upgrade), then the Deployments, those without init containers first, each Deployment's init containers to
  completion before its containers. The serving Deployment starts when validation asks for it (a real one
  restarts until the model's alias exists).

Every Docker command goes through :mod:`mlflowkit.docker`. The tracking Service and the serving Service are
published on 127.0.0.1 (free ports) for the validation client; the first tracking replica answers it.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflowkit import docker
from mlflowkit.errors import KitError
from mlflowkit.serving import ServedModel, free_port
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import Topology, get

WORKLOADS = ("StatefulSet", "Deployment", "Job")
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Container:
    """One container to run: a pod's container (or init container) of one replica."""

    name: str  # the Docker container name
    component: str
    image: str
    user: str
    env: dict[str, str]
    entrypoint: list[str] | None
    args: list[str] | None
    aliases: list[str]
    tmpfs: list[str]
    volumes: list[str]  # docker -v specs (named volumes, read-only secret files)
    health: str | None  # a shell command
    publish: list[str] = field(default_factory=list)
    init: bool = False
    replica: int = 0


@dataclass
class Plan:
    network: str
    stores: list[Container]
    hooks: list[Container]  # install hook Jobs, in Helm's order
    servers: list[list[Container]]  # per Deployment: init containers first, then the replicas' containers
    serve: list[Container]
    secrets: dict[str, dict[str, str]]
    ports: dict[str, int]  # Service name (or "ingress") -> published host port
    ingress: list[Container] = field(default_factory=list)


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    return doc["spec"]["template"]["metadata"]["labels"]


def _env(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            out[entry["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            out[entry["name"]] = _VAR.sub(lambda m: out.get(m[1], m[0]), entry.get("value", ""))
    return out


def _health(container: dict[str, Any]) -> str | None:
    probe = container.get("readinessProbe")
    if not probe:
        return None
    if "exec" in probe:
        command = probe["exec"]["command"]
        assert command[:2] == ["sh", "-c"], command
        return str(command[2])
    get = probe["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    headers = "".join(f" -H '{h['name']}: {h['value']}'" for h in get.get("httpHeaders", []))
    return f"curl -fsS -o /dev/null{headers} 'http://127.0.0.1:{port}{get['path']}'"


def _containers(doc: dict[str, Any], prefix: str, secrets: dict[str, dict[str, str]],
                services: list[dict[str, Any]], files: Path) -> tuple[list[Container], list[Container]]:
    """(init containers, containers) of every replica of a workload."""
    pod = doc["spec"]["template"]["spec"]
    labels = _labels(doc)
    component = labels["app.kubernetes.io/component"]
    aliases = [s["metadata"]["name"] for s in services
               if all(labels.get(k) == v for k, v in s["spec"]["selector"].items())]
    for service in services:
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert isinstance(target, str) or target == port["port"], "a Service that remaps ports"
    security = pod["securityContext"]
    user = f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"
    replicas = doc["spec"].get("replicas", 1) if doc["kind"] != "Job" else 1
    claims = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
    sources = {v["name"]: v for v in pod.get("volumes", [])}
    inits, mains = [], []
    for replica in range(replicas):
        for kind, specs in (("init", pod.get("initContainers", [])), ("main", pod["containers"])):
            for spec in specs:
                tmpfs, volumes = [], []
                for mount in spec.get("volumeMounts", []):
                    source = sources.get(mount["name"], {})
                    if "emptyDir" in source:
                        tmpfs.append(mount["mountPath"])
                    elif mount["name"] in claims or "persistentVolumeClaim" in source:
                        claim = source.get("persistentVolumeClaim", {}).get("claimName") or \
                            f"{mount['name']}-{doc['metadata']['name']}-{replica}"
                        volumes.append(f"{prefix}-{claim}:{mount['mountPath']}")
                    elif "secret" in source or "configMap" in source:
                        where = files / doc["metadata"]["name"] / mount["name"]
                        where.mkdir(parents=True, exist_ok=True)
                        where.chmod(0o755)
                        ref = source.get("secret") or source["configMap"]
                        data = secrets[ref.get("secretName") or ref["name"]]
                        for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                            path = where / item["path"]
                            path.write_text(data[item["key"]])
                            path.chmod(0o644)
                        volumes.append(f"{where}:{mount['mountPath']}:ro")
                    else:
                        raise AssertionError(f"{doc['metadata']['name']}: volume {mount['name']} of an unknown kind")
                command = spec.get("command")
                container = Container(
                    name=f"{prefix}-{doc['metadata']['name']}-{replica}-{spec['name']}",
                    component=component, image=spec["image"], user=user, env=_env(spec, secrets),
                    entrypoint=command, args=spec.get("args"), aliases=aliases if kind == "main" else [],
                    tmpfs=tmpfs, volumes=volumes, health=_health(spec) if kind == "main" else None,
                    init=bool(pod.get("shareProcessNamespace")), replica=replica)
                (inits if kind == "init" else mains).append(container)
    return inits, mains


def _hook(doc: dict[str, Any]) -> list[str]:
    return doc["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(",")


def plan(docs: list[dict[str, Any]], prefix: str, files: Path, external: tuple[Container, ...] = ()) -> Plan:
    """The containers of a rendering, in the order a cluster with Helm would start them. ``external``: stores
    outside the cluster (their Secrets among ``docs``, as `kubectl create secret` would have made them)."""
    secrets = {d["metadata"]["name"]: dict(d.get("stringData") or {}) for d in docs if d["kind"] == "Secret"}
    secrets.update({d["metadata"]["name"]: dict(d.get("data") or {}) for d in docs if d["kind"] == "ConfigMap"})
    services = [d for d in docs if d["kind"] == "Service"]
    for doc in docs:
        assert doc["kind"] in ("Secret", "ConfigMap", "Service", "StatefulSet", "Deployment", "Job", "NetworkPolicy",
                               "PersistentVolumeClaim", "PodDisruptionBudget", "Ingress"), \
            f"not emulated: {doc['kind']}"
    stores, hooks, servers, serve = list(external), [], [], []
    # An install runs the pre-install and post-install hook Jobs (pre-upgrade ones belong to an upgrade).
    jobs = sorted((d for d in docs if d["kind"] == "Job" and {"pre-install", "post-install"} & set(_hook(d))),
                  key=lambda d: ("post-install" in _hook(d),
                                 int(d["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))))
    deployments = sorted((d for d in docs if d["kind"] == "Deployment"),
                         key=lambda d: bool(d["spec"]["template"]["spec"].get("initContainers")))
    for doc in [d for d in docs if d["kind"] == "StatefulSet"] + jobs + deployments:
        inits, mains = _containers(doc, prefix, secrets, services, files)
        component = _labels(doc)["app.kubernetes.io/component"]
        if doc["kind"] == "StatefulSet":
            stores += mains
        elif doc["kind"] == "Job":
            hooks += mains
        elif component == "serve":
            serve += mains
        else:
            servers.append(inits + mains)
    ports = {}
    for group in servers:
        first = next(c for c in group if c.aliases)
        for service in services:
            if service["metadata"]["name"] in first.aliases and \
                    _labels_of(service)["app.kubernetes.io/component"] == "mlflow":
                port = service["spec"]["ports"][0]["port"]
                ports[service["metadata"]["name"]] = free_port()
                first.publish.append(f"127.0.0.1:{ports[service['metadata']['name']]}:{port}")
    for service in services:
        if _labels_of(service)["app.kubernetes.io/component"] == "serve" and serve:
            port = service["spec"]["ports"][0]["port"]
            ports[service["metadata"]["name"]] = free_port()
            serve[0].publish.append(f"127.0.0.1:{ports[service['metadata']['name']]}:{port}")
    ingress = [_ingress(doc, prefix, secrets, files) for doc in docs if doc["kind"] == "Ingress"]
    for controller in ingress:
        ports["ingress"] = free_port()
        controller.publish.append(f"127.0.0.1:{ports['ingress']}:{INGRESS_PORT}")
    return Plan(f"{prefix}-net", stores, hooks, servers, serve, secrets, ports, ingress)


INGRESS_IMAGE = "mlflowkit/haproxy:2.6"  # the kit's HAProxy (stacks/images/haproxy) as the ingress controller
INGRESS_PORT = 8443


def _ingress(doc: dict[str, Any], prefix: str, secrets: dict[str, dict[str, str]], files: Path) -> Container:
    """An ingress controller serving one rendered Ingress: HAProxy with one backend per Service a path names
    (every replica behind it, found through Docker's DNS), Prefix paths matched longest first as Kubernetes
    does, TLS with the tls.crt/tls.key of the rule's tlsSecret. The rule's host is not matched (one rule per
    emulated Ingress: clients reach it on 127.0.0.1); the Host header is passed on as a controller does."""
    (rule,) = doc["spec"]["rules"]
    paths = sorted(rule["http"]["paths"], key=lambda p: -len(p["path"]))
    assert all(p["pathType"] == "Prefix" for p in paths), paths
    where = files / doc["metadata"]["name"] / "ingress"
    where.mkdir(parents=True, exist_ok=True)
    where.chmod(0o755)
    bind = f":{INGRESS_PORT}"
    for tls in doc["spec"].get("tls", []):
        data = secrets[tls["secretName"]]
        (where / "tls.pem").write_text(data["tls.crt"].rstrip("\n") + "\n" + data["tls.key"])
        (where / "tls.pem").chmod(0o644)  # the test's own throwaway key, readable by HAProxy's user
        bind += " ssl crt /etc/ingress/tls.pem alpn http/1.1"
    frontend = ["global", "    log stdout format raw local0 info", "defaults", "    mode http", "    log global",
                "    option httplog", "    timeout connect 5s", "    timeout client 300s", "    timeout server 300s",
                "resolvers docker", "    nameserver dns 127.0.0.11:53", "    hold valid 2s",
                "frontend ingress", f"    bind {bind}"]
    backends: dict[str, list[str]] = {}
    for number, path in enumerate(paths):
        service = path["backend"]["service"]
        backend = f"{service['name']}-{service['port']['number']}"
        if path["path"] == "/":
            frontend.append(f"    default_backend {backend}")
        else:
            frontend += [f"    acl path{number} path_beg {path['path']}", f"    use_backend {backend} if path{number}"]
        backends[backend] = [f"backend {backend}", "    balance roundrobin",
                             f"    server-template replica 1-4 {service['name']}:{service['port']['number']} "
                             "resolvers docker init-addr none check inter 2s"]
    config = frontend + [line for lines in backends.values() for line in lines]
    (where / "haproxy.cfg").write_text("\n".join(config) + "\n")
    (where / "haproxy.cfg").chmod(0o644)
    scheme = "https" if doc["spec"].get("tls") else "http"
    return Container(
        name=f"{prefix}-ingress", component="ingress", image=INGRESS_IMAGE, user="990:990", env={},
        entrypoint=None, args=["haproxy", "-W", "-db", "-f", "/etc/ingress/haproxy.cfg"], aliases=[],
        tmpfs=["/tmp", "/run/haproxy"], volumes=[f"{where}:/etc/ingress:ro"],
        health=f"curl -fsS -k -o /dev/null {scheme}://127.0.0.1:{INGRESS_PORT}/health")


def _labels_of(doc: dict[str, Any]) -> dict[str, str]:
    return doc["metadata"]["labels"]


def _argv(container: Container, network: str) -> list[str]:
    argv = ["docker", "run", "-d", "--name", container.name, "--network", network, "--user", container.user,
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pull", "never"]
    for alias in container.aliases:
        argv += ["--network-alias", alias]
    uid, gid = container.user.split(":")
    for path in container.tmpfs:  # an emptyDir: writable by the pod's user and fsGroup (as the kubelet makes it)
        argv += ["--tmpfs", f"{path}:rw,mode=1777,uid={uid},gid={gid}"]
    for volume in container.volumes:
        argv += ["-v", volume]
    for key in container.env:
        argv += ["-e", key]  # values through the environment of the docker CLI: never on a command line
    for publish in container.publish:
        argv += ["-p", publish]
    if container.health:
        argv += ["--health-cmd", container.health, "--health-interval", "2s", "--health-timeout", "5s",
                 "--health-retries", "90", "--health-start-period", "120s"]
    if container.init:
        argv.append("--init")
    if container.entrypoint:
        argv += ["--entrypoint", container.entrypoint[0]]
    argv.append(container.image)
    argv += (container.entrypoint or [])[1:] + (container.args or [])
    return argv


class Cluster:
    """The containers of one rendering; :meth:`start` brings them up in order, :meth:`remove` takes all away."""

    def __init__(self, the_plan: Plan, prefix: str, timeout: float = 300) -> None:
        self.plan, self.prefix, self.timeout = the_plan, prefix, timeout
        self.started: list[str] = []

    def _run(self, container: Container) -> None:
        docker.run(_argv(container, self.plan.network), timeout=60,
                   env=docker.engine_environ(container.env))
        self.started.append(container.name)

    def _inspect(self, name: str, template: str) -> str:
        return docker.run(["docker", "inspect", "-f", template, name], timeout=30).stdout.strip()

    def _wait(self, containers: list[Container], *, exited: bool) -> None:
        deadline = time.monotonic() + self.timeout
        for container in containers:
            while True:
                state = self._inspect(container.name, "{{.State.Status}} {{.State.ExitCode}} "
                                                      "{{if .State.Health}}{{.State.Health.Status}}{{end}}")
                status, code, *health = state.split()
                if exited and status == "exited":
                    if code != "0":
                        raise KitError(f"{container.name} exited {code}.", details=self.logs(container.name))
                    break
                if not exited and health == ["healthy"]:
                    break
                if status == "exited" or health == ["unhealthy"]:
                    raise KitError(f"{container.name} is {status} {' '.join(health)} (exit {code}).",
                                   details=self.logs(container.name))
                if time.monotonic() > deadline:
                    raise KitError(f"{container.name} not {'done' if exited else 'healthy'} after "
                                   f"{self.timeout:.0f} s.", details=self.logs(container.name))
                time.sleep(1)

    def start(self) -> None:
        docker.run(["docker", "network", "create", self.plan.network], timeout=30)
        for container in self.plan.stores:
            self._run(container)
        self._wait(self.plan.stores, exited=False)
        for container in self.plan.hooks:  # post-install hooks, one at a time, each to completion
            self._run(container)
            self._wait([container], exited=True)
        for group in self.plan.servers:
            # Each pod runs its init containers in order; the pods of a Deployment start together, so the k-th
            # init container of every replica runs at once (replicas race on an empty store, as in a cluster).
            inits = [c for c in group if c.health is None and not c.aliases]
            chains = [[c for c in inits if c.replica == r] for r in sorted({c.replica for c in inits})]
            for step in zip(*chains, strict=True):
                for container in step:
                    self._run(container)
                self._wait(list(step), exited=True)
            for container in group:
                if container not in inits:
                    self._run(container)
        self._wait([c for group in self.plan.servers for c in group if c.aliases], exited=False)
        for container in self.plan.ingress:  # the controller once its backends are ready
            self._run(container)
        self._wait(self.plan.ingress, exited=False)

    def start_serving(self) -> None:
        for container in self.plan.serve:
            self._run(container)
        self._wait(self.plan.serve, exited=False)

    def stop_serving(self) -> None:
        for container in self.plan.serve:
            docker.run(["docker", "rm", "-f", container.name], timeout=60)
            if container.name in self.started:
                self.started.remove(container.name)

    def logs(self, name: str | None = None, tail: int = 40) -> str:
        out = []
        for container in [name] if name else self.started:
            try:
                proc = docker.run(["docker", "logs", "--tail", str(tail), container], timeout=30)
                out.append(f"--- {container}\n{proc.stdout}{proc.stderr}")
            except KitError as exc:
                out.append(f"--- {container}: {exc}")
        return "\n".join(out)

    def exec(self, component: str, command: list[str], timeout: float = 120) -> str:
        container = next(c for c in self.containers() if c.component == component and c.health)
        return docker.run(["docker", "exec", container.name, *command], timeout=timeout).stdout

    def containers(self) -> list[Container]:
        return [*self.plan.stores, *self.plan.hooks, *[c for g in self.plan.servers for c in g], *self.plan.serve]

    def remove(self) -> None:
        """Every container, volume and the network of this prefix (whatever got started before a failure)."""
        def listed(*argv: str) -> list[str]:
            return docker.run(["docker", *argv], timeout=30).stdout.split()

        containers = listed("ps", "-aq", "--filter", f"name=^{self.prefix}-")
        if containers:
            docker.run(["docker", "rm", "-f", "-v", *containers], timeout=120)
        volumes = listed("volume", "ls", "-q", "--filter", f"name=^{self.prefix}-")
        if volumes:
            docker.run(["docker", "volume", "rm", "-f", *volumes], timeout=60)
        if listed("network", "ls", "-q", "--filter", f"name=^{self.plan.network}$"):
            docker.run(["docker", "network", "rm", self.plan.network], timeout=30)


# --- the kit's validation against it ---------------------------------------------------------------------------

@dataclass
class State:
    """What the validation child needs to reach the emulated release (written as JSON)."""

    topology: str
    prefix: str
    values: dict[str, str]  # a stack's .env: ports, database, bucket, auth
    containers: dict[str, str]  # component -> a container of it (for exec)
    serve: list[dict[str, Any]]
    ca: str | None = None  # clients reach the tracking server through the Ingress over TLS, trusting this CA


class _Exec:
    """What the validation asks of ``stack.compose()``: ``exec`` into a service's container."""

    def __init__(self, containers: dict[str, str]) -> None:
        self.containers = containers

    def exec(self, service: str, command: list[str], *, timeout: float | None = None, input: str | None = None) -> str:
        return docker.run(["docker", "exec", "-i", self.containers[service], *command], timeout=timeout or 120,
                          input=input).stdout


class ChartStack(Stack):
    """The emulated release as the kit's validation sees a stack."""

    def __init__(self, topology: Topology, state: State, settings: Settings | None = None) -> None:
        super().__init__(topology, settings)
        self.state = state

    def env(self) -> dict[str, str]:
        return dict(self.state.values)

    def compose(self, *, with_serve: bool = False) -> Any:  # noqa: ARG002 - the Stack signature
        return _Exec(self.state.containers)

    def s3_object_exists(self, bucket: str, key: str) -> bool:
        probe = ("import sys, boto3, botocore.exceptions, os\n"
                 "s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n"
                 "try:\n    s3.head_object(Bucket=sys.argv[1], Key=sys.argv[2])\n"
                 "except botocore.exceptions.ClientError:\n    sys.exit(3)\n")
        try:  # inside a container that holds the S3 keys, as in the Compose stack: the client holds none
            _Exec(self.state.containers).exec("s3-client", ["python", "-c", probe, bucket, key])
        except docker.CommandError as exc:
            if exc.returncode == 3:
                return False
            raise
        return True

    def _cluster(self) -> Cluster:
        serve = [Container(**c) for c in self.state.serve]
        return Cluster(Plan("", [], [], [], serve, {}, {}), self.state.prefix)

    @contextmanager
    def serving(self) -> Iterator[ServedModel]:
        cluster = self._cluster()
        cluster.plan.network = f"{self.state.prefix}-net"
        try:
            cluster.start_serving()
            served = ServedModel(f"http://127.0.0.1:{self.state.values['SERVE_PORT']}",
                                 timeout=self.settings.client_timeout)
            served.wait(timeout=60)
            yield served
        finally:
            cluster.stop_serving()

    def ui_url(self) -> str:
        """The Ingress over TLS when the rendering has one, else the tracking Service as published."""
        return f"{'https' if self.state.ca else 'http'}://127.0.0.1:{self.state.values['MLFLOW_PORT']}"

    def ca_path(self) -> Path | None:
        return Path(self.state.ca) if self.state.ca else None

    def logs(self, services: list[str] | None = None, tail: int | None = None) -> str:
        names = list(self.state.containers.values())
        return "\n".join(docker.run(["docker", "logs", "--tail", str(tail or 40), n], timeout=30).stderr
                         for n in names)


def state_of(cluster: Cluster, topology: str, docs: list[dict[str, Any]], ca: Path | None = None) -> State:
    """The .env-like values and containers the validation child needs; with an Ingress (TLS signed by ``ca``)
    the client goes through it."""
    the_plan = cluster.plan
    tracking = next(name for name in the_plan.ports if name.endswith("-mlflow"))
    serving = next(name for name in the_plan.ports if name.endswith("-serve"))
    servers = [c for group in the_plan.servers for c in group if c.aliases]
    server = next(c for c in servers if c.component == "mlflow")
    postgres = next(c for c in the_plan.stores if c.component == "postgres")
    s3_client = next(c for c in servers if "AWS_SECRET_ACCESS_KEY" in c.env)
    values = {"MLFLOW_PORT": str(the_plan.ports.get("ingress", the_plan.ports[tracking])),
              "SERVE_PORT": str(the_plan.ports[serving]),
              "POSTGRES_USER": postgres.env["POSTGRES_USER"], "POSTGRES_DB": postgres.env["POSTGRES_DB"],
              "S3_BUCKET": s3_client.env["S3_BUCKET"]}
    if "MLFLOW_AUTH_ADMIN_USERNAME" in server.env:
        values.update(MLFLOW_AUTH_ARGS="--app-name basic-auth",
                      MLFLOW_AUTH_ADMIN_USERNAME=server.env["MLFLOW_AUTH_ADMIN_USERNAME"],
                      MLFLOW_AUTH_ADMIN_PASSWORD=server.env["MLFLOW_AUTH_ADMIN_PASSWORD"])
    return State(topology, cluster.prefix, values,
                 {"postgres": postgres.name, "mlflow": server.name, "s3-client": s3_client.name},
                 [asdict(c) for c in the_plan.serve], str(ca) if ca and the_plan.ingress else None)


def main(argv: list[str]) -> None:
    """``python -m tests.chart.dynamic <state.json> <report.json>``: the kit's validation, in a clean process."""
    from mlflowkit.validate import validate

    state = State(**json.loads(Path(argv[0]).read_text()))
    report = validate(ChartStack(get(state.topology), state), ui=False)
    Path(argv[1]).write_text(json.dumps(asdict(report)))


if __name__ == "__main__":
    main(sys.argv[1:])
