"""The chart run: renderings started as containers on a Docker network the way a cluster would start them
(tests/chart/dynamic.py), then the kit's own validation against each — log, register, alias, load, serve,
predict, artifacts in S3 through the proxy, the run in PostgreSQL — from a clean process that holds no S3 keys.

- ``proxied`` with the chart's own stores: two tracking replicas sharing one users database, auth on, serving.
- the replicated topology with external stores: PostgreSQL and S3 started as plain containers standing in for
  endpoints outside the cluster (their credentials as Secrets made before the install, the chart's pre-install
  hook Jobs migrating and making the bucket), two tracking and two artifacts replicas through two PgBouncer
  pods, auth on, and the Ingress (an HAProxy container configured from the rendered Ingress object, TLS from
  its Secret) in front: the validation goes through it over HTTPS — one test for what the CI budget allows.

What a cluster adds that this does not prove: scheduling, admission, the kubelet's probe timing, Service load
balancing (DNS round-robin over the replicas here), a real ingress controller (host matching, its own retries),
NetworkPolicy enforcement, Helm's own hook execution."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from mlflowkit import docker, tls
from mlflowkit.errors import KitError
from mlflowkit.settings import Settings
from mlflowkit.topology import ArtifactMode
from mlflowkit.validate import clean_environment
from tests.chart.dynamic import Cluster, Container, plan, state_of
from tests.chart.render import chart_topologies, documents
from tests.e2e.conftest import PREFIX

pytestmark = pytest.mark.e2e
PROXIED = next(n for n, t in chart_topologies().items() if t.artifact_mode is ArtifactMode.PROXIED and not t.replicas)
REPLICATED = next(n for n, t in chart_topologies().items() if t.replicas)
CURL_AUTH = 'curl -sS -o /dev/null -w "%{http_code}" -u "$CRED"'


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "stringData": data}


def _external_stores(prefix: str, db: dict[str, str], s3: dict[str, str]) -> tuple[Container, ...]:
    """PostgreSQL and S3 outside the cluster: the kit's images as plain containers (non-root, read-only root,
    data on tmpfs) reachable by the names the values give as external endpoints."""
    postgres = Container(
        name=f"{prefix}-external-postgres", component="postgres", image="mlflowkit/postgres:15", user="999:999",
        env={"POSTGRES_USER": "mlflow", "POSTGRES_DB": "mlflow", "PGDATA": "/var/lib/postgresql/data/pgdata", **db},
        entrypoint=None, args=["postgres", "-c", "max_connections=100"], aliases=["external-postgres"],
        tmpfs=["/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"], volumes=[],
        health='pg_isready -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"')
    store = Container(
        name=f"{prefix}-external-s3", component="s3", image="mlflowkit/s3:4.48", user="1001:1001", env=dict(s3),
        entrypoint=None, args=None, aliases=["external-s3"], tmpfs=["/data", "/tmp"], volumes=[],
        health="curl -fsS -o /dev/null http://127.0.0.1:8333/healthz")
    return postgres, store


def _validate(cluster: Cluster, topology: str, docs: list[dict[str, Any]], settings: Settings,
              tmp_path: Path, ca: Path | None = None) -> tuple[Any, list[str]]:
    """Start the rendering, run the kit's validation in a clean process; (state, step names)."""
    started = time.monotonic()
    try:
        cluster.start()
    except KitError as exc:
        pytest.fail(f"{exc}\n{exc.details or ''}")
    print(f"chart release of {topology} up in {time.monotonic() - started:.0f} s", file=sys.stderr)
    state = state_of(cluster, topology, docs, ca)
    (tmp_path / "state.json").write_text(json.dumps(asdict(state)))
    env = clean_environment(settings)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-m", "tests.chart.dynamic", str(tmp_path / "state.json"),
                           str(tmp_path / "report.json")], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=900, check=False)
    assert (tmp_path / "report.json").exists(), proc.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    rows = [f"{s['name']}: {'PASS' if s['ok'] else 'FAIL'} {s['detail']}" for s in report["steps"]]
    print("\n".join(rows), file=sys.stderr)
    assert all(s["ok"] for s in report["steps"]), "\n".join(rows) + "\n" + cluster.logs(tail=30)
    names = [s["name"] for s in report["steps"]]
    for step in ("no S3 credentials", "serve+predict", "anonymous refused", "artifacts in S3", "run in PostgreSQL"):
        assert step in names
    return state, names


def _replicas(cluster: Cluster, component: str) -> list[str]:
    return [c.name for group in cluster.plan.servers for c in group if c.aliases and c.component == component]


def _exec(container: str, script: str, secret: dict[str, str]) -> str:
    """A shell line inside a container, the credentials only in its environment (never on a command line)."""
    argv = ["docker", "exec"] + [arg for key in secret for arg in ("-e", key)] + [container, "sh", "-c", script]
    return docker.run(argv, timeout=60, env=docker.engine_environ(secret)).stdout


def _create_user(state: Any, through: str) -> dict[str, str]:
    admin = f"{state.values['MLFLOW_AUTH_ADMIN_USERNAME']}:{state.values['MLFLOW_AUTH_ADMIN_PASSWORD']}"
    password = secrets.token_urlsafe(18)
    body = json.dumps({"username": "chart-user", "password": password})
    _exec(through, 'curl -fsS -o /dev/null -u "$ADMIN" -H "Content-Type: application/json" -d "$BODY" '
                   "http://127.0.0.1:5000/api/2.0/mlflow/users/create", {"ADMIN": admin, "BODY": body})
    return {"ADMIN": admin, "USER": f"chart-user:{password}"}


def test_rendered_proxied_release_passes_the_kits_validation(e2e_settings: Settings, tmp_path: Path):
    docs = documents({"topology": PROXIED, "tracking": {"replicas": 2}, "auth": {"enabled": True},
                      "serve": {"enabled": True}})
    prefix = f"{PREFIX}-chart"
    cluster = Cluster(plan(docs, prefix, tmp_path / "secrets"), prefix, timeout=300)
    assert len(_replicas(cluster, "mlflow")) == 2, "two tracking replicas"
    try:
        state, _ = _validate(cluster, PROXIED, docs, e2e_settings, tmp_path)
        # One users database for every replica: a user made through the first is known to the second.
        first, second = _replicas(cluster, "mlflow")
        creds = _create_user(state, first)
        found = _exec(second, 'curl -fsS -u "$ADMIN" "http://127.0.0.1:5000/api/2.0/mlflow/users/get?username=chart-user"',
                      {"ADMIN": creds["ADMIN"]})
        assert json.loads(found)["user"]["username"] == "chart-user"
    finally:
        if os.environ.get("MLFLOWKIT_KEEP_CHART") != "1":
            cluster.remove()


def test_rendered_replicated_release_on_external_stores_passes_the_kits_validation(e2e_settings: Settings,
                                                                                    tmp_path: Path):
    db = {"POSTGRES_PASSWORD": secrets.token_hex(16)}
    s3 = {"AWS_ACCESS_KEY_ID": secrets.token_hex(10), "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20)}
    # TLS at the Ingress: a certificate for the address the client uses, signed by a throwaway CA, as the
    # Secret a cert-manager would make.
    tls_files = tls.ensure(tmp_path / "tls", ["localhost", "127.0.0.1"])
    pem = tls_files.server.read_text()
    key = pem[pem.index("-----BEGIN PRIVATE KEY-----"):]
    certificate = pem.replace(key, "")
    values = {"topology": REPLICATED, "tracking": {"replicas": 2}, "artifacts": {"replicas": 2},
              "auth": {"enabled": True}, "serve": {"enabled": True},
              "ingress": {"enabled": True, "host": "mlflow.example.test", "tlsSecret": "mlflow-tls"},
              "postgresql": {"enabled": False, "existingSecret": "external-db",
                             "external": {"host": "external-postgres"}},
              "s3": {"enabled": False, "existingSecret": "external-s3",
                     "external": {"endpoint": "http://external-s3:8333"}}}
    docs = [_secret("external-db", db), _secret("external-s3", s3),
            _secret("mlflow-tls", {"tls.crt": certificate, "tls.key": key}), *documents(values)]
    assert not [d for d in docs if d["kind"] == "StatefulSet"], "no store of the chart's own"
    hooks = [d["metadata"]["name"] for d in docs if d["kind"] == "Job"]
    assert all("pre-install" in d["metadata"]["annotations"]["helm.sh/hook"] for d in docs if d["kind"] == "Job")
    prefix = f"{PREFIX}-charth"
    cluster = Cluster(plan(docs, prefix, tmp_path / "secrets", _external_stores(prefix, db, s3)), prefix, timeout=300)
    assert len(hooks) == 2 and len(cluster.plan.hooks) == 2, "migration and bucket as pre-install hook Jobs"
    tracking, artifacts = _replicas(cluster, "mlflow"), _replicas(cluster, "artifacts")
    assert len(tracking) == len(artifacts) == len(_replicas(cluster, "pgbouncer")) == 2
    try:
        state, _ = _validate(cluster, REPLICATED, docs, e2e_settings, tmp_path, tls_files.ca)
        assert state.ca, "validated through the Ingress over TLS"
        # The Ingress sent the client's artifact transfers to the artifacts pool, the rest to the tracking pool.
        routed = docker.run(["docker", "logs", cluster.plan.ingress[0].name], timeout=30).stdout
        uploads = [line for line in routed.splitlines() if "PUT /api/2.0/mlflow-artifacts/" in line]
        assert uploads and all("-artifacts-" in line.split()[3] for line in uploads), routed[-3000:]
        assert any("/api/2.0/mlflow/runs/create" in line and "-mlflow-" in line.split()[3]
                   for line in routed.splitlines()), routed[-3000:]
        # The artifacts pool proxies S3: an artifact written through one replica is read back through the other.
        creds = _create_user(state, tracking[0])
        body = secrets.token_hex(16)
        url = "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/chart-check/probe.txt"
        _exec(artifacts[0], f'printf %s "$BODY" | curl -fsS -o /dev/null -u "$ADMIN" -T - "{url}"',
              {"ADMIN": creds["ADMIN"], "BODY": body})
        assert _exec(artifacts[1], f'curl -fsS -u "$ADMIN" "{url}"', {"ADMIN": creds["ADMIN"]}) == body
        # One users database for both pools: a user made through a tracking replica logs in at an artifacts
        # replica (a wrong password does not).
        assert _exec(artifacts[1], f'{CURL_AUTH} "{url}"', {"CRED": creds["USER"]}) != "401"
        assert _exec(artifacts[1], f'{CURL_AUTH} "{url}"', {"CRED": "chart-user:wrong"}) == "401"
        # Every server's connections go through PgBouncer: both databases have clients there.
        clients = "".join(_exec(name, 'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -p 6432 '
                                      """-U "$POSTGRES_USER" -d pgbouncer -tAc 'SHOW CLIENTS'""", {})
                          for name in _replicas(cluster, "pgbouncer"))
        databases = {line.split("|")[2] for line in clients.splitlines() if line.count("|") > 2}
        assert {"mlflow", "mlflow_auth"} <= databases, clients
    finally:
        if os.environ.get("MLFLOWKIT_KEEP_CHART") != "1":
            cluster.remove()
