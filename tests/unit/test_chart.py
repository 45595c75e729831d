"""charts/mlflowkit, proven offline: Helm's own lint and render (helm-python-sdk, no cluster), every rendered
object validated strictly against the Kubernetes schemas of the oldest and newest minor the chart supports, and
the contract with the Compose stacks (images, commands, arguments, environment names, ports, health checks).
The policy scan (checkov) is in test_chart_policy.py."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mlflowkit.topology import TOPOLOGIES
from tests.chart.render import (
    CHART,
    FACTS,
    NAMESPACE,
    RELEASE,
    REPLICA_PORT,
    TABLE_END,
    TABLE_START,
    by_kind,
    chart_topologies,
    documents,
    facts_text,
    pod_spec,
    values_table,
    workload,
)
from tests.unit.test_topology import ROOT, STACKS, effective

NAMES = list(chart_topologies())
# The Kubernetes minors the chart supports (Chart.yaml kubeVersion: >=1.25): kubernetes-validate's oldest and newest.
OLDEST, NEWEST = "1.25", "1.37"
FULL = f"{RELEASE}-mlflowkit"

# Edge values rendered for every topology: one pod vs pools of three (shared auth) vs an autoscaled pool,
# auth on/off, in-chart vs external stores (generated vs existing Secrets), every optional part on.
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "single-auth": {"auth": {"enabled": True}, "serve": {"enabled": True}},
    "ha-auth": {"tracking": {"replicas": 3}, "artifacts": {"replicas": 3}, "auth": {"enabled": True},
                "serve": {"enabled": True}, "gc": {"enabled": True},
                "ingress": {"enabled": True, "className": "nginx", "artifactsHost": "artifacts.example.com",
                            "tlsSecret": "mlflow-tls"}},
    "hpa-external": {"tracking": {"autoscaling": {"enabled": True}}, "artifacts": {"autoscaling": {"enabled": True}},
                     "auth": {"enabled": True}, "gc": {"enabled": True},
                     "postgresql": {"enabled": False, "external": {"host": "db.example.com"}},
                     "s3": {"enabled": False, "external": {"endpoint": "https://s3.example.com"}}},
    "external-existing-secrets": {
        "tracking": {"replicas": 3}, "auth": {"enabled": True, "existingSecret": "my-auth"},
        "postgresql": {"enabled": False, "existingSecret": "my-db", "external": {"host": "db.example.com"}},
        "s3": {"enabled": False, "existingSecret": "my-s3", "external": {"endpoint": "https://s3.example.com"}},
        "networkPolicy": {"enabled": False}, "images": {"registry": "registry.example.com/", "pullSecrets": ["pull"]}},
}


def values(topology: str, case: str) -> dict[str, Any]:
    """A case's values for a topology; a replicated one (external stores required) acknowledges the in-chart
    single-pod stores where the case keeps them (its refusal: test_replicated_topology_requires_external_stores)."""
    out = {**CASES[case], "topology": topology}
    if TOPOLOGIES[topology].replicas and out.get("postgresql", {}).get("enabled", True):
        out["acknowledgeSinglePodStores"] = True
    return out


# --- one source of truth ---------------------------------------------------------------------------------------

def test_topology_facts_are_generated_from_the_declarations():
    assert FACTS.read_text() == facts_text(), "run: .venv/bin/python -m tests.chart.render --write"


def test_schema_names_exactly_the_chart_topologies():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["topology"]["enum"] == NAMES
    # Every declared server topology on PostgreSQL, the replicated one included.
    assert set(NAMES) == {n for n, t in TOPOLOGIES.items() if t.has_tracking_server and t.backend.value == "postgresql"}
    assert any(TOPOLOGIES[n].replicas for n in NAMES)


@pytest.mark.parametrize(("file", "service"), [("postgres.yaml", "migrate"), ("s3.yaml", "create-bucket")])
def test_one_shot_scripts_run_the_compose_ones(file, service):
    """Both run the image's plugin module that prepares the stores (the servers of Compose run it too)."""
    command = yaml.safe_load((STACKS / "common" / file).read_text())["services"][service]["command"]
    assert command[:2] == ["python", "-m"]
    assert f'runpy.run_module("{command[2]}", run_name="__main__")' in (CHART / "files" / "prepare.py").read_text()


@pytest.mark.parametrize("topology", [n for n in NAMES if TOPOLOGIES[n].pooling])
def test_a_pooled_topologys_migration_is_its_compose_one(topology):
    """It also makes the users database beside MLflow's (one for every pod of both pools)."""
    command = effective(topology)["services"]["migrate"]["command"]
    assert (CHART / "files" / "migrate_users.py").read_text() == command[2]


def test_docs_values_table_is_the_schema():
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip("\n") + "\n"
    assert table == values_table(), "regenerate: .venv/bin/python -m tests.chart.render --table"


def test_every_value_has_a_schema_entry_and_the_defaults_validate():
    from helm_python.chart import Chart

    chart = Chart.load(CHART)
    chart.validate_schema({})
    table = values_table()
    leaves = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and node and not path.endswith(("resources", "annotations", "Labels")):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else key)
        else:
            leaves.append(path)

    walk(yaml.safe_load((CHART / "values.yaml").read_text()), "")
    missing = [leaf for leaf in leaves if f"| `{leaf}` |" not in table]
    assert not missing


# --- lint, render, validate ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("topology", NAMES)
def test_lint_is_clean(topology, case):
    from helm_python.chart import lint

    result = lint(CHART, values(topology, case), strict=True, namespace=NAMESPACE)
    assert result["errors"] == []
    # Helm's only remark: Chart.yaml has no icon (severity 1, informational).
    assert [m for m in result["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("topology", NAMES)
def test_every_object_is_valid_kubernetes(topology, case):
    docs = documents(values(topology, case))
    assert docs
    for version in (OLDEST, NEWEST):
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc.message} at {exc.path}")


@pytest.mark.parametrize("topology", NAMES)
def test_an_upgrade_renders_the_same_objects(topology):
    """``helm upgrade`` renders what an install does (secrets are looked up, not regenerated, in a cluster)."""
    def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((d["kind"], d["metadata"]["name"]) for d in docs)

    install = documents(values(topology, "ha-auth"))
    upgrade = documents(values(topology, "ha-auth"), upgrade=True)
    assert kinds(install) == kinds(upgrade)
    for doc in upgrade:
        kubernetes_validate.validate(doc, NEWEST, strict=True)


def test_unknown_topology_and_unknown_values_are_refused():
    from helm_python.chart import lint

    for bad in ({"topology": "sqlite"}, {"topology": "proxied", "tracking": {"replica": 2}},
                {"topology": "proxied", "tracking": {"allowedHosts": ["*"]}}):
        assert lint(CHART, bad)["errors"], bad


def test_external_stores_need_their_endpoints():
    from helm_python.errors import HelmError

    with pytest.raises(HelmError, match="postgresql.external.host is required"):
        documents({"topology": "proxied", "postgresql": {"enabled": False}})
    with pytest.raises(HelmError, match="basic_auth.ini"):
        documents({"topology": "proxied", "tracking": {"replicas": 2}, "auth": {"enabled": True},
                   "postgresql": {"enabled": False, "existingSecret": "db", "external": {"host": "db"}}})


# --- what each rendering guarantees ----------------------------------------------------------------------------

def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("topology", NAMES)
def test_non_root_read_only_with_resources_and_probes(topology, case):
    for doc in documents(values(topology, case)):
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
            continue
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        for container in containers(doc):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
            assert security["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
            names = [entry["name"] for entry in container.get("env", [])]
            assert len(names) == len(set(names)), f"{doc['metadata']['name']}: an environment variable twice"
        if doc["kind"] in ("Deployment", "StatefulSet"):
            main = spec["containers"][0]
            assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(main), doc["metadata"]["name"]


@pytest.mark.parametrize("topology", NAMES)
def test_migration_and_bucket_run_before_the_servers(topology):
    """External stores: hook Jobs before install and every upgrade. In-chart stores (which do not exist before
    install): the servers' init containers run the same one-shots at install, the Jobs before each upgrade."""
    stack = effective(topology)["services"]
    for case, hook in (("defaults", "pre-upgrade"), ("hpa-external", "pre-install,pre-upgrade")):
        docs = documents(values(topology, case))
        for component in TOPOLOGIES[topology].one_shots:
            job = workload(docs, component)
            assert job["kind"] == "Job"
            assert job["metadata"]["annotations"]["helm.sh/hook"] == hook, (case, component)
        # The secrets the hooks read exist before them.
        for secret in by_kind(docs, "Secret"):
            assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
            assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
        inits = {c["name"]: (server, c) for server in server_names(topology)
                 for c in pod_spec(workload(docs, server)).get("initContainers", [])}
        inits.pop("bootstrap-auth", None)  # a pool's shared users database (test_shared_auth_state_…)
        if case != "defaults":
            assert not inits
            continue
        assert set(inits) == set(TOPOLOGIES[topology].one_shots), inits
        for name, (server, init) in inits.items():
            compose = stack[name]
            command, ran = compose["command"], init["args"][3]
            assert init["args"][:2] == ["sh", "-c"], name
            assert ran == command[2] if command[1] == "-c" else f'run_module("{command[2]}"' in ran, name
            assert env_names(init) - EXTRA_ENV == set(compose["environment"]), name
            # The server that runs it is one that holds that store's credentials anyway.
            own = {"MLFLOW_AUTH_DATABASE"}  # the name of the users database the migration makes (pooled)
            assert env_names(init) - own <= env_names(pod_spec(workload(docs, server))["containers"][0]), name


def server_names(topology: str) -> list[str]:
    """The MLflow servers the chart runs (a replicated topology's pools; its balancer and stores are not)."""
    return list(TOPOLOGIES[topology].servers)


def env_names(container: dict[str, Any]) -> set[str]:
    return {entry["name"] for entry in container.get("env", [])}


@pytest.mark.parametrize("topology", NAMES)
def test_shared_auth_state_only_with_more_than_one_pod(topology):
    single = documents(values(topology, "single-auth"))
    pool = documents(values(topology, "ha-auth"))
    servers = server_names(topology)
    replicated = bool(TOPOLOGIES[topology].replicas)
    for server in servers:
        one = pod_spec(workload(single, server))
        if replicated:  # one users database in PostgreSQL even at one pod per pool (the pools scale)
            assert "PGDATABASE" in env_names(one["containers"][0])
            assert not any(v.get("persistentVolumeClaim") for v in one["volumes"])
        else:
            assert "MLFLOW_AUTH_CONFIG_PATH" not in env_names(one["containers"][0])
            assert any(v.get("persistentVolumeClaim") for v in one["volumes"]), "one pod keeps users on a volume"
        many = pod_spec(workload(pool, server))
        assert "MLFLOW_AUTH_CONFIG_PATH" in env_names(many["containers"][0])
        assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in env_names(many["containers"][0])
        assert not any(v.get("persistentVolumeClaim") for v in many["volumes"])
        # The shared database's schema and admin are made once before the server, not raced by its replicas.
        assert "bootstrap-auth" in [c["name"] for c in many["initContainers"]]
        assert ("bootstrap-auth" in [c["name"] for c in one.get("initContainers", [])]) == replicated
        assert workload(pool, server)["spec"]["replicas"] == 3
    if replicated:  # the ini names PgBouncer and holds no secret: a ConfigMap (libpq reads PG* from the env)
        ini = next(c for c in by_kind(pool, "ConfigMap") if c["metadata"]["name"] == f"{FULL}-auth-ini")
        ini = ini["data"]["basic_auth.ini"]
        assert f"?host={FULL}-pgbouncer&port=6432" in ini
        assert "basic_auth.ini" not in next(s for s in by_kind(pool, "Secret")
                                            if s["metadata"]["name"] == f"{FULL}-auth")["stringData"]
    else:
        ini = next(s for s in by_kind(pool, "Secret") if s["metadata"]["name"] == f"{FULL}-auth")
        ini = ini["stringData"]["basic_auth.ini"]
        assert f"@{FULL}-postgres:5432/mlflow" in ini
    image_ini = (STACKS / "images" / "mlflow" / "basic_auth.ini").read_text()
    settings = [line for line in image_ini.splitlines() if line and not line.startswith("#")]
    assert [line for line in settings if not line.startswith("database_uri")] == \
           [line for line in ini.splitlines() if line and not line.startswith("database_uri")]
    assert {pdb["metadata"]["name"] for pdb in by_kind(pool, "PodDisruptionBudget")} == \
           {f"{FULL}-{server}" for server in (*servers, *(["pgbouncer"] if TOPOLOGIES[topology].pooling else []))}
    assert {p["metadata"]["name"] for p in by_kind(single, "PodDisruptionBudget")} <= {f"{FULL}-pgbouncer"}
    hpa = documents(values(topology, "hpa-external"))
    assert {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(hpa, "HorizontalPodAutoscaler")} == \
           {f"{FULL}-{server}" for server in servers}
    assert all("replicas" not in workload(hpa, server)["spec"] for server in servers)


@pytest.mark.parametrize("topology", NAMES)
def test_only_mlflow_servers_and_their_jobs_reach_the_stores(topology):
    docs = documents(values(topology, "ha-auth"))
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "NetworkPolicy")}
    pooled = TOPOLOGIES[topology].pooling is not None
    stores = ("postgres", "s3", *(["pgbouncer"] if pooled else []))
    assert set(policies) == {f"{FULL}-{store}" for store in stores}
    allowed = {}
    for store in stores:
        rule = policies[f"{FULL}-{store}"]["spec"]["ingress"][0]
        if "from" not in rule:
            assert store == "s3" and TOPOLOGIES[topology].client_needs_s3_credentials  # clients write S3 directly
            continue
        allowed[store] = rule["from"][0]["podSelector"]["matchLabels"]
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        labels = (doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"])["template"][
            "metadata"]["labels"]
        component = labels["app.kubernetes.io/component"]
        env = set().union(*(env_names(c) for c in containers(doc)))
        # Which store a pod's containers address: by host in their values (a pooled server's store URI and
        # users database name PgBouncer; its migration, PostgreSQL itself), by credentials for S3.
        text = " ".join(str(e.get("value", "")) for c in containers(doc) for e in c.get("env", []))
        for store, selector in allowed.items():
            reaches = all(labels.get(k) == v for k, v in selector.items())
            if store == "s3":
                needs = "AWS_SECRET_ACCESS_KEY" in env
            elif pooled:
                needs = f"@{FULL}-{store}:" in text or (store == "pgbouncer" and "PGDATABASE" in env) or \
                    (store == "postgres" and "POSTGRES_HOST" in env)
            else:
                needs = "MLFLOW_BACKEND_STORE_URI" in env or "MLFLOW_AUTH_CONFIG_PATH" in env
            assert reaches == needs, (component, store)
            if reaches:
                assert component in (*server_names(topology), *TOPOLOGIES[topology].one_shots, "gc",
                                     *(["pgbouncer"] if pooled else [])), component


@pytest.mark.parametrize("topology", NAMES)
def test_proxied_topologies_give_clients_no_s3_keys(topology):
    docs = documents(values(topology, "ha-auth"))
    serve = workload(docs, "serve")["spec"]["template"]["spec"]["containers"][0]
    assert ("AWS_SECRET_ACCESS_KEY" in env_names(serve)) == TOPOLOGIES[topology].client_needs_s3_credentials
    if topology == "artifacts-only":
        tracking = workload(docs, "mlflow")["spec"]["template"]["spec"]["containers"][0]
        assert "AWS_SECRET_ACCESS_KEY" not in env_names(tracking)


# --- the contract with the Compose stack -----------------------------------------------------------------------

# Environment a container has in the chart beyond its Compose service's: the parts MLFLOW_BACKEND_STORE_URI is
# composed from ($(POSTGRES_USER), $(POSTGRES_PASSWORD): the password comes from a Secret, Compose interpolates
# it from .env), PostgreSQL's data directory below the volume root, and the shared users database's config.
EXTRA_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "PGDATA", "MLFLOW_AUTH_CONFIG_PATH", "POSTGRES_HOST"}
# A replicated topology's clients reach it over TLS at its load balancer in Compose; on Kubernetes TLS ends at the
# Ingress, and in-cluster clients (the serving Deployment) reach the tracking Service over plain HTTP.
BALANCED_ONLY_ENV = {"MLFLOW_TRACKING_SERVER_CERT_PATH"}
HOST_HEADER = re.compile(r" -H 'Host: ([^']*)'")


def compose_names(topology: str) -> dict[str, str]:
    """Compose service name -> the chart's Service (in-cluster host) name (a balancer -> the tracking Service)."""
    names = {service: f"{FULL}-{service}" for service in ("mlflow", "artifacts", "serve", "postgres", "s3",
                                                         "pgbouncer")}
    balancer = TOPOLOGIES[topology].balancer
    if balancer:
        names[balancer] = f"{FULL}-mlflow"
    return names


def chart_services(topology: str) -> list[str]:
    """The Compose services the chart runs as its own workloads. A replicated topology's balancer is the
    cluster's Services and Ingress, and its stores (clustered in Compose) are external on Kubernetes."""
    t = TOPOLOGIES[topology]
    if not t.replicas:
        return [*t.services, *t.one_shots, t.serve_service]
    return [*server_names(topology), *(["pgbouncer"] if t.pooling else []), *t.one_shots, t.serve_service]


def check_text(test: list[str]) -> str:
    """A Compose healthcheck test as the shell line a Kubernetes exec probe runs (sh -c), without the script that
    paces Compose's checks (stacks/common/health.sh; a probe's periodSeconds is Kubernetes' own)."""
    line = test[1] if test[0] == "CMD-SHELL" else " ".join(test[1:])
    return re.sub(r"\s+", " ", line.replace("$$", "$")).replace(f"{PACED} ", "")


PACED = "sh /etc/mlflowkit/health"  # how every Compose healthcheck runs its check (stacks/common/health.yaml)


def allowed(host: str, hosts: str) -> bool:
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in hosts.split(","))


@pytest.mark.parametrize("topology", NAMES)
def test_containers_match_the_compose_stack(topology):
    artifacts_host = f"{FULL}-artifacts"
    stack = effective(topology, MLFLOW_AUTH_ARGS="--app-name basic-auth", ARTIFACTS_HOST=artifacts_host)["services"]
    docs = documents(values(topology, "single-auth"))
    names = compose_names(topology)
    t = TOPOLOGIES[topology]
    # Optional Compose profiles other than serving (metrics) are not part of the chart.
    stack = {name: spec for name, spec in stack.items()
             if not spec.get("profiles") or name in (t.serve_service, *t.one_shots)}
    assert set(stack) == {*t.services, *t.one_shots, "serve"}
    left_out = set(stack) - set(chart_services(topology))
    assert left_out == (set(t.services) - set(chart_services(topology)) if t.replicas else set())
    assert t.balancer is None or t.balancer in left_out
    balanced = {f"{t.balancer}:{p.container_port}": f"{FULL}-mlflow:{p.container_port and REPLICA_PORT}"
                for p in t.ports if p.service == t.balancer}
    for service in chart_services(topology):
        compose = stack[service]
        doc = workload(docs, service)
        container = pod_spec(doc)["containers"][0]
        where = f"{topology}/{service}"
        assert container["image"] == compose["image"], where
        # Compose's command is the image's CMD: the chart passes it as args, so the image's entrypoint runs too.
        assert container.get("args") == compose.get("command"), where
        assert container.get("command") == compose.get("entrypoint"), where
        compose_env = set(compose.get("environment") or {}) - (BALANCED_ONLY_ENV if t.balancer else set())
        chart_env = env_names(container)
        assert compose_env - chart_env == set(), f"{where}: missing {compose_env - chart_env}"
        assert chart_env - compose_env <= EXTRA_ENV, f"{where}: extra {chart_env - compose_env}"
        # Values that are not secrets: the same, with Compose service names as the chart's Service names.
        chart_values = {e["name"]: e.get("value") for e in container.get("env", [])}
        for key in ("MLFLOW_S3_ENDPOINT_URL", "S3_BUCKET", "MLFLOW_TRACKING_URI", "POSTGRES_DB", "POSTGRES_USER"):
            if key in compose_env:
                value = compose["environment"][key]
                for old, new in balanced.items():  # TLS at the Ingress: in-cluster clients speak HTTP
                    value = value.replace(f"https://{old}", f"http://{new}")
                expected = re.sub(r"//([\w-]+):", lambda m: f"//{names.get(m[1], m[1])}:", value)
                assert chart_values[key] == expected, f"{where}: {key}"
        for key in ("PGUSER", "PGDATABASE", "MLFLOW_AUTH_DATABASE", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
                    "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE",
                    "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "MLFLOWKIT_DB_WAIT_SECONDS", "PGBOUNCER_MAX_CLIENT_CONN",
                    "PGBOUNCER_POOL_SIZE"):
            if key in compose_env:
                assert chart_values[key] == compose["environment"][key], f"{where}: {key}"
        if "MLFLOW_BACKEND_STORE_URI" in compose_env:  # the same host and port, credentials from the Secret
            host = re.search(r"@([\w-]+):(\d+)/", compose["environment"]["MLFLOW_BACKEND_STORE_URI"])
            assert host
            assert chart_values["MLFLOW_BACKEND_STORE_URI"] == \
                f"postgresql+psycopg2://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@{names[host[1]]}:{host[2]}/mlflow"
        # Ports: what Compose's container listens on (its published targets; artifacts-only's serving service
        # shares the artifacts server's network, whose ports list carries it).
        ports = {p["containerPort"] for p in container.get("ports", [])}
        targets = {p["target"] for p in compose.get("ports") or []}
        if compose.get("network_mode", "").startswith("service:"):
            targets = {port.container_port for port in TOPOLOGIES[topology].ports if port.variable == "SERVE_PORT"}
        elif topology == "artifacts-only" and service == "artifacts":
            targets -= {TOPOLOGIES[topology].port("SERVE_PORT").container_port}
        if targets:
            assert ports == targets, where
        # Health: the readiness probe checks what Compose's healthcheck checks.
        check = compose.get("healthcheck", {}).get("test")
        probe = container.get("readinessProbe")
        assert bool(check) == bool(probe), where
        if not check:
            continue
        if "exec" in probe:
            line = probe["exec"]["command"][2]
            assert probe["exec"]["command"][:2] == ["sh", "-c"]
            assert HOST_HEADER.sub("", line) == HOST_HEADER.sub("", check_text(check)), where
            for host in HOST_HEADER.findall(line):  # a Host header the server accepts
                assert allowed(host, chart_values["MLFLOW_SERVER_ALLOWED_HOSTS"]), f"{where}: {host}"
            compose_hosts = HOST_HEADER.findall(check_text(check))
            assert [names.get(h.split(":")[0], h.split(":")[0]) + ":" + h.split(":")[1] for h in compose_hosts] == \
                HOST_HEADER.findall(line)[:len(compose_hosts)], where
        else:
            port = probe["httpGet"]["port"]
            number = next(p["containerPort"] for p in container["ports"] if p["name"] == port) \
                if isinstance(port, str) else port
            assert check_text(check).endswith(f"http://127.0.0.1:{number}{probe['httpGet']['path']}"), where
            compose_host = re.search(r"-H Host: (\S+)", check_text(check))
            for header in probe["httpGet"].get("httpHeaders", []):  # the pool's own Service, as the balancer's
                assert compose_host and header["name"] == "Host", where
                assert allowed(header["value"], chart_values["MLFLOW_SERVER_ALLOWED_HOSTS"]), where
                assert header["value"] == f"{FULL}-{service}:{number}", where
        liveness = container["livenessProbe"].get("httpGet", {})
        for header in liveness.get("httpHeaders", []):
            assert header["name"] == "Host" and allowed(header["value"], chart_values["MLFLOW_SERVER_ALLOWED_HOSTS"])


@pytest.mark.parametrize("topology", NAMES)
def test_allowed_hosts_keep_compose_defaults_and_add_only_this_release(topology):
    stack = effective(topology)["services"]
    docs = documents(values(topology, "ha-auth"))
    for server in server_names(topology):
        compose = stack[server]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
        chart = next(e["value"] for e in pod_spec(workload(docs, server))["containers"][0]["env"]
                     if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS").split(",")
        local = [h for h in compose if h.startswith(("localhost", "127.0.0.1"))]
        assert chart[:len(local)] == local
        assert "*" not in chart and all(h.startswith(f"{FULL}-") or h in local or h.endswith("example.com")
                                        for h in chart), chart


# --- the replicated topology -----------------------------------------------------------------------------------

REPLICATED = [n for n in NAMES if TOPOLOGIES[n].replicas]
EXTERNAL = {"postgresql": {"enabled": False, "external": {"host": "db.example.com"}},
            "s3": {"enabled": False, "external": {"endpoint": "https://s3.example.com"}}}


@pytest.mark.parametrize("topology", REPLICATED)
def test_replicated_topology_requires_external_stores(topology):
    """Highly available PostgreSQL and S3 are an operator's or a cloud's: the chart's single pods are refused
    unless acknowledged in so many words."""
    from helm_python.errors import HelmError

    for stores in ({}, {"postgresql": EXTERNAL["postgresql"]}, {"s3": EXTERNAL["s3"]}):
        with pytest.raises(HelmError, match="needs highly available PostgreSQL and S3 from outside the chart"):
            documents({"topology": topology, **stores})
    external = documents({"topology": topology, **EXTERNAL})
    assert not list(by_kind(external, "StatefulSet"))
    acknowledged = documents({"topology": topology, "acknowledgeSinglePodStores": True})
    assert {d["metadata"]["name"] for d in by_kind(acknowledged, "StatefulSet")} == {f"{FULL}-postgres", f"{FULL}-s3"}


def chart_budget_fails(topology: str, settings: dict[str, Any]) -> str | None:
    from helm_python.errors import HelmError

    try:
        documents({"topology": topology, **EXTERNAL, **settings})
    except HelmError as exc:
        assert "connection budget" in str(exc) and "Hint:" in str(exc), str(exc)
        return str(exc)
    return None


@pytest.mark.parametrize("topology", [n for n in NAMES if TOPOLOGIES[n].pooling])
def test_connection_budget_is_the_declarations(topology):
    """The chart's render-time check adds up what Topology.budget adds up (one PgBouncer pod there): it fails
    exactly where the declaration finds a problem, with a clear message."""
    t = TOPOLOGIES[topology]
    pooling = t.pooling
    assert pooling is not None
    tracking, artifacts = (r.variable for r in t.replicas)
    grid = [(pods, workers, auth, pool, client_limit, per_db, max_conn)
            for pods in (1, 2, 8) for workers in (1, 4) for auth in (False, True) for pool in (2, 10)
            for client_limit in (100, 400) for per_db in (20, 50) for max_conn in (60, 100)]
    fails = 0
    for pods, workers, auth, pool, client_limit, per_db, max_conn in grid:
        env = {tracking: str(pods), artifacts: str(pods), pooling.workers[0]: str(workers),
               pooling.pool_size[0]: str(pool), pooling.max_overflow[0]: "3",
               pooling.client_limit[0]: str(client_limit), pooling.per_database[0]: str(per_db),
               pooling.server_limit[0]: str(max_conn)}
        budget = t.budget(env, auth=auth)
        assert budget is not None
        pool_values = {"replicas": pods, "workers": workers}
        settings = {"tracking": pool_values, "artifacts": pool_values,
                    "auth": {"enabled": auth}, "postgresql": {**EXTERNAL["postgresql"], "maxConnections": max_conn},
                    "pgbouncer": {"replicas": 1, "mlflowPoolSize": pool, "mlflowMaxOverflow": 3,
                                  "maxClientConn": client_limit, "maxDbConnections": per_db}}
        message = chart_budget_fails(topology, settings)
        assert bool(message) == bool(budget.problems()), (env, auth, budget.problems(), message)
        fails += bool(message)
    assert 0 < fails < len(grid)
    # Autoscaled pools count at their maximum; PgBouncer pods each open their own connections.
    assert chart_budget_fails(topology, {"tracking": {"autoscaling": {"enabled": True, "maxReplicas": 50}}})
    assert chart_budget_fails(topology, {"pgbouncer": {"replicas": 3}})
    assert chart_budget_fails(topology, {}) is None


@pytest.mark.parametrize("topology", [n for n in NAMES if TOPOLOGIES[n].pooling])
def test_pooling_defaults_are_the_compose_stacks(topology):
    """values.yaml's limits are the declaration's (Compose's) defaults; PgBouncer's per-database limit is split
    over its pods, so the defaults pass the budget."""
    p = TOPOLOGIES[topology].pooling
    assert p is not None
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    b = defaults["pgbouncer"]
    assert (b["mlflowPoolSize"], b["mlflowMaxOverflow"], b["maxClientConn"]) == \
        (p.pool_size[1], p.max_overflow[1], p.client_limit[1])
    assert b["replicas"] * b["maxDbConnections"] == p.per_database[1]
    assert defaults["postgresql"]["maxConnections"] == p.server_limit[1]
    assert defaults["tracking"]["workers"] == defaults["artifacts"]["workers"] == p.workers[1]


@pytest.mark.parametrize("topology", REPLICATED)
def test_ingress_routes_artifact_calls_to_the_artifacts_pool(topology):
    """What the Compose stack's balancer does: MLflow's artifact routes to the artifacts pool, the rest to the
    tracking pool, one host, TLS at the Ingress; both pools accept that host."""
    docs = documents({"topology": topology, **EXTERNAL, "ingress": {"enabled": True, "tlsSecret": "tls",
                                                                     "artifactsHost": "ignored.example.com"}})
    (ingress,) = by_kind(docs, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert routes == {"/api/2.0/mlflow-artifacts/": f"{FULL}-artifacts",
                      "/ajax-api/2.0/mlflow-artifacts/": f"{FULL}-artifacts", "/": f"{FULL}-mlflow"}
    assert ingress["spec"]["tls"] == [{"secretName": "tls", "hosts": [rule["host"]]}]
    for server in server_names(topology):
        env = {e["name"]: e.get("value") for e in pod_spec(workload(docs, server))["containers"][0]["env"]}
        assert allowed(rule["host"], env["MLFLOW_SERVER_ALLOWED_HOSTS"])
        assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_workspaces_reach_the_tracking_server_where_the_topology_has_them_and_fail_elsewhere_naming_those():
    from helm_python.errors import HelmError

    offered = sorted(t.name for t in TOPOLOGIES.values() if t.supports_workspaces and t.name in NAMES)
    for topology in NAMES:
        if topology in offered:
            for enabled in (True, False):
                docs = documents({"topology": topology, "auth": {"enabled": True}, "workspaces": {"enabled": enabled}})
                env = {e["name"]: e.get("value") for e in pod_spec(workload(docs, "mlflow"))["containers"][0]["env"]}
                assert env["MLFLOW_ENABLE_WORKSPACES"] == str(enabled).lower(), (topology, enabled)
        else:
            with pytest.raises(HelmError, match=f"topology {topology} has no workspaces.*{', '.join(offered)}"):
                documents({"topology": topology, "workspaces": {"enabled": True}, "acknowledgeSinglePodStores": True})
