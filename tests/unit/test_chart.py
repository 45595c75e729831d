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
    return {**CASES[case], "topology": topology}


# --- one source of truth ---------------------------------------------------------------------------------------

def test_topology_facts_are_generated_from_the_declarations():
    assert FACTS.read_text() == facts_text(), "run: .venv/bin/python -m tests.chart.render --write"


def test_schema_names_exactly_the_chart_topologies():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["topology"]["enum"] == NAMES
    assert set(NAMES) == {"postgres-s3", "proxied", "artifacts-only"}


@pytest.mark.parametrize(("script", "file", "service"), [("migrate.py", "postgres.yaml", "migrate"),
                                                         ("create_bucket.py", "s3.yaml", "create-bucket")])
def test_one_shot_scripts_are_the_compose_ones(script, file, service):
    command = yaml.safe_load((STACKS / "common" / file).read_text())["services"][service]["command"]
    assert command[:2] == ["python", "-c"]
    assert (CHART / "files" / script).read_text() == command[2]


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
        inits = {c["name"]: (server, c) for server in TOPOLOGIES[topology].servers
                 for c in pod_spec(workload(docs, server)).get("initContainers", [])}
        inits.pop("bootstrap-auth", None)  # a pool's shared users database (test_shared_auth_state_…)
        if case != "defaults":
            assert not inits
            continue
        assert set(inits) == set(TOPOLOGIES[topology].one_shots), inits
        for name, (server, init) in inits.items():
            compose = stack[name]
            assert init["args"][:2] == ["sh", "-c"] and init["args"][3] == compose["command"][2], name
            assert env_names(init) - EXTRA_ENV == set(compose["environment"]), name
            # The server that runs it is one that holds that store's credentials anyway.
            assert env_names(init) <= env_names(pod_spec(workload(docs, server))["containers"][0]), name


def env_names(container: dict[str, Any]) -> set[str]:
    return {entry["name"] for entry in container.get("env", [])}


@pytest.mark.parametrize("topology", NAMES)
def test_shared_auth_state_only_with_more_than_one_pod(topology):
    single = documents(values(topology, "single-auth"))
    pool = documents(values(topology, "ha-auth"))
    servers = TOPOLOGIES[topology].servers
    for server in servers:
        one = pod_spec(workload(single, server))
        assert "MLFLOW_AUTH_CONFIG_PATH" not in env_names(one["containers"][0])
        assert any(v.get("persistentVolumeClaim") for v in one["volumes"]), "a single pod keeps users on a volume"
        many = pod_spec(workload(pool, server))
        assert "MLFLOW_AUTH_CONFIG_PATH" in env_names(many["containers"][0])
        assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in env_names(many["containers"][0])
        assert not any(v.get("persistentVolumeClaim") for v in many["volumes"])
        # The shared database's schema and admin are made once before the server, not raced by its replicas.
        assert "bootstrap-auth" in [c["name"] for c in many["initContainers"]]
        assert "bootstrap-auth" not in [c["name"] for c in one.get("initContainers", [])]
        assert workload(pool, server)["spec"]["replicas"] == 3
    ini = next(s for s in by_kind(pool, "Secret") if s["metadata"]["name"] == f"{FULL}-auth")
    ini = ini["stringData"]["basic_auth.ini"]
    assert f"@{FULL}-postgres:5432/mlflow" in ini
    image_ini = (STACKS / "images" / "mlflow" / "basic_auth.ini").read_text()
    settings = [line for line in image_ini.splitlines() if line and not line.startswith("#")]
    assert [line for line in settings if not line.startswith("database_uri")] == \
           [line for line in ini.splitlines() if line and not line.startswith("database_uri")]
    assert {pdb["metadata"]["name"] for pdb in by_kind(pool, "PodDisruptionBudget")} == \
           {f"{FULL}-{server}" for server in servers}
    assert not list(by_kind(single, "PodDisruptionBudget"))
    hpa = documents(values(topology, "hpa-external"))
    assert {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(hpa, "HorizontalPodAutoscaler")} == \
           {f"{FULL}-{server}" for server in servers}
    assert all("replicas" not in workload(hpa, server)["spec"] for server in servers)


@pytest.mark.parametrize("topology", NAMES)
def test_only_mlflow_servers_and_their_jobs_reach_the_stores(topology):
    docs = documents(values(topology, "ha-auth"))
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "NetworkPolicy")}
    assert set(policies) == {f"{FULL}-postgres", f"{FULL}-s3"}
    allowed = {}
    for store in ("postgres", "s3"):
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
        for store, selector in allowed.items():
            reaches = all(labels.get(k) == v for k, v in selector.items())
            needs = ("MLFLOW_BACKEND_STORE_URI" in env or "MLFLOW_AUTH_CONFIG_PATH" in env) if store == "postgres" \
                else "AWS_SECRET_ACCESS_KEY" in env
            assert reaches == needs, (component, store)
            if reaches:
                assert component in (*TOPOLOGIES[topology].servers, *TOPOLOGIES[topology].one_shots, "gc"), component


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
EXTRA_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "PGDATA", "MLFLOW_AUTH_CONFIG_PATH"}
HOST_HEADER = re.compile(r" -H 'Host: ([^']*)'")


def compose_names(topology: str) -> dict[str, str]:
    """Compose service name -> the chart's Service (in-cluster host) name."""
    return {service: f"{FULL}-{service}" for service in ("mlflow", "artifacts", "serve", "postgres", "s3")}


def check_text(test: list[str]) -> str:
    """A Compose healthcheck test as the shell line a Kubernetes exec probe runs (sh -c)."""
    line = test[1] if test[0] == "CMD-SHELL" else " ".join(test[1:])
    return re.sub(r"\s+", " ", line.replace("$$", "$"))


def allowed(host: str, hosts: str) -> bool:
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in hosts.split(","))


@pytest.mark.parametrize("topology", NAMES)
def test_containers_match_the_compose_stack(topology):
    artifacts_host = f"{FULL}-artifacts"
    stack = effective(topology, MLFLOW_AUTH_ARGS="--app-name basic-auth", ARTIFACTS_HOST=artifacts_host)["services"]
    docs = documents(values(topology, "single-auth"))
    names = compose_names(topology)
    assert set(stack) == {*TOPOLOGIES[topology].services, *TOPOLOGIES[topology].one_shots, "serve"}
    for service, compose in stack.items():
        doc = workload(docs, service)
        container = pod_spec(doc)["containers"][0]
        where = f"{topology}/{service}"
        assert container["image"] == compose["image"], where
        # Compose's command is the image's CMD: the chart passes it as args, so the image's entrypoint runs too.
        assert container.get("args") == compose.get("command"), where
        assert container.get("command") == compose.get("entrypoint"), where
        compose_env = set(compose.get("environment") or {})
        chart_env = env_names(container)
        assert compose_env - chart_env == set(), f"{where}: missing {compose_env - chart_env}"
        assert chart_env - compose_env <= EXTRA_ENV, f"{where}: extra {chart_env - compose_env}"
        # Values that are not secrets: the same, with Compose service names as the chart's Service names.
        chart_values = {e["name"]: e.get("value") for e in container.get("env", [])}
        for key in ("MLFLOW_S3_ENDPOINT_URL", "S3_BUCKET", "MLFLOW_TRACKING_URI", "POSTGRES_DB", "POSTGRES_USER"):
            if key in compose_env:
                expected = re.sub(r"//(\w+):", lambda m: f"//{names.get(m[1], m[1])}:", compose["environment"][key])
                assert chart_values[key] == expected, f"{where}: {key}"
        if "MLFLOW_BACKEND_STORE_URI" in compose_env:
            assert chart_values["MLFLOW_BACKEND_STORE_URI"] == \
                f"postgresql+psycopg2://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@{FULL}-postgres:5432/mlflow"
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
        liveness = container["livenessProbe"].get("httpGet", {})
        for header in liveness.get("httpHeaders", []):
            assert header["name"] == "Host" and allowed(header["value"], chart_values["MLFLOW_SERVER_ALLOWED_HOSTS"])


@pytest.mark.parametrize("topology", NAMES)
def test_allowed_hosts_keep_compose_defaults_and_add_only_this_release(topology):
    stack = effective(topology)["services"]
    docs = documents(values(topology, "ha-auth"))
    for server in TOPOLOGIES[topology].servers:
        compose = stack[server]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
        chart = next(e["value"] for e in pod_spec(workload(docs, server))["containers"][0]["env"]
                     if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS").split(",")
        local = [h for h in compose if h.startswith(("localhost", "127.0.0.1"))]
        assert chart[:len(local)] == local
        assert "*" not in chart and all(h.startswith(f"{FULL}-") or h in local or h.endswith("example.com")
                                        for h in chart), chart
