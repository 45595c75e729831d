"""The ha topology without an engine: its local CA, its connection budget, the load balancer's view of replicas,
and the files of its stack."""

from __future__ import annotations

import datetime
import re
import ssl
import stat
from pathlib import Path

import pytest
import yaml

from mlflowkit import tls
from mlflowkit.stack import Member, ServiceState, Stack, parse_haproxy_csv
from mlflowkit.topology import HA, TOPOLOGIES

ROOT = Path(__file__).resolve().parents[2]


def config(name: str) -> str:
    """A file the ha stack's compose.yaml writes for its services (top-level ``configs``)."""
    return yaml.safe_load((ROOT / "stacks" / "ha" / "compose.yaml").read_text())["configs"][name]["content"]


def test_the_stack_is_files_the_wheel_carries():
    """The kit's wheel carries */compose.yaml, */README.md and */.env.example of each stack (pyproject.toml):
    the stack's configuration files are written inside its compose.yaml, not beside it."""
    assert sorted(p.name for p in (ROOT / "stacks" / "ha").iterdir() if p.name != "tls" and p.name != ".env") == \
        [".env.example", "README.md", "compose.yaml"]


def _load_cert(path: Path):
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_kit_ca_signs_a_server_certificate_a_tls_client_accepts(tmp_path):
    files = tls.ensure(tmp_path / "tls", ["localhost", "127.0.0.1", "lb"])
    for key_file in (files.ca_key, files.server):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, key_file
    assert stat.S_IMODE(files.ca.stat().st_mode) == 0o644
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    # Python's TLS stack, as an MLflow client uses it: the chain verifies against ca.pem alone, for each name.
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.server)
    client = ssl.create_default_context(cafile=str(files.ca))
    for name in ("localhost", "lb", "127.0.0.1"):
        assert _handshake(server, client, name) == "ok", name
    assert "mismatch" in _handshake(server, client, "mlflow.example.org")
    assert "certificate verify failed" in _handshake(server, ssl.create_default_context(), "localhost")


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> str:
    """A TLS handshake over memory BIOs; "ok" or the client's error."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                if side is c:
                    return str(exc)
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        try:
            c.do_handshake()
            return "ok"
        except ssl.SSLWantReadError:
            continue
        except ssl.SSLError as exc:
            return str(exc)
    return "no handshake"


def test_a_certificate_is_kept_renewed_for_new_names_and_a_users_own_is_never_touched(tmp_path):
    files = tls.ensure(tmp_path, ["localhost"])
    first, ca = files.server.read_bytes(), files.ca.read_bytes()
    assert tls.ensure(tmp_path, ["localhost"]).server.read_bytes() == first  # nothing to do
    tls.ensure(tmp_path, ["localhost", "mlflow.internal"])
    assert files.server.read_bytes() != first and files.ca.read_bytes() == ca, "re-signed by the same CA"
    assert tls.covers(_load_cert(files.server), ["localhost", "mlflow.internal"])
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=380)
    tls.ensure(tmp_path, ["localhost", "mlflow.internal"], now=later)  # 17 days left: signed again
    assert _load_cert(files.server).not_valid_after_utc > later + datetime.timedelta(days=300)
    assert files.ca.read_bytes() == ca
    # A user's own certificate: server.pem and ca.pem, no ca.key of the kit's. Kept as it is.
    own = tmp_path / "own"
    own.mkdir()
    (own / "server.pem").write_text("the user's chain and key")
    tls.ensure(own, ["localhost"])
    assert (own / "server.pem").read_text() == "the user's chain and key" and not (own / "ca.key").exists()


def test_the_spki_fingerprint_is_the_server_keys_and_changes_with_it(tmp_path):
    import base64
    import hashlib
    import subprocess

    files = tls.ensure(tmp_path, ["localhost"])
    fingerprint = tls.spki_fingerprint(files.server)
    assert len(base64.b64decode(fingerprint)) == 32
    der = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(files.server)], capture_output=True,
                         check=True).stdout
    key = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, capture_output=True,
                         check=True).stdout
    assert fingerprint == base64.b64encode(hashlib.sha256(key).digest()).decode()
    tls.ensure(tmp_path, ["localhost", "other"])  # a new certificate has a new key
    assert tls.spki_fingerprint(files.server) != fingerprint


def test_connection_budget_adds_up_replicas_workers_pools_and_checks_both_limits():
    budget = HA.budget({}, auth=True)
    # 2 tracking replicas x 1 worker x 3 engines x (2 + 3) + 2 artifacts replicas x 1 worker x 1 engine x 5
    assert (budget.clients, budget.client_limit) == (40, 400)
    assert (budget.servers, budget.server_limit) == (85, 97)  # 40 per database x 2 + 5 direct; 100 - 3 reserved
    assert budget.problems() == []
    assert HA.budget({}, auth=False).clients == 20  # no users store: one engine fewer per process
    over = HA.budget({"MLFLOW_REPLICAS": "8", "MLFLOW_WORKERS": "8"}, auth=True)
    assert over.clients == 8 * 8 * 3 * 5 + 2 * 8 * 1 * 5
    assert over.problems() == [f"the MLflow servers may open 1040 database connections ({over.detail}), "
                               "PgBouncer accepts 400"]
    small_postgres = HA.budget({"POSTGRES_MAX_CONNECTIONS": "50"}, auth=True)
    assert small_postgres.problems() == ["PgBouncer and direct clients may open 85 connections to PostgreSQL, "
                                         "which takes 47"]
    assert HA.budget({"MLFLOW_REPLICAS": "not a number"}, auth=True).clients == 40, "unreadable: the default"
    assert TOPOLOGIES["proxied"].budget({}, auth=True) is None


def test_the_budgets_defaults_are_the_compose_files():
    text = (ROOT / "stacks" / "ha" / "compose.yaml").read_text()
    pooling = HA.pooling
    assert pooling is not None
    for variable, default in (pooling.workers, pooling.pool_size, pooling.max_overflow, pooling.client_limit,
                              pooling.per_database, pooling.server_limit):
        assert f"${{{variable}:-{default}}}" in text, variable
    for replicas in HA.replicas:
        assert f"${{{replicas.variable}:-{replicas.default}}}" in text, replicas.variable
        assert f"server-template {replicas.service} 1-8 {replicas.service}:5000" in config("haproxy-cfg")


CSV = """# pxname,svname,qcur,status,addr
mlflow,FRONTEND,,OPEN,
tracking,mlflow1,0,UP,172.20.0.7:5000
tracking,mlflow2,0,DOWN,172.20.0.8:5000
tracking,mlflow3,0,MAINT (resolution),
tracking,BACKEND,0,UP,
artifacts,artifacts1,0,UP,172.20.0.9:5000
stats,FRONTEND,,OPEN,
"""


def test_the_balancers_view_is_each_replicas_address_and_status():
    assert parse_haproxy_csv(CSV, {"tracking"}) == {"172.20.0.7": "UP", "172.20.0.8": "DOWN"}
    assert parse_haproxy_csv(CSV, {"tracking", "artifacts"})["172.20.0.9"] == "UP"
    assert parse_haproxy_csv("", {"tracking"}) == {}


def test_status_names_each_replica_and_says_how_the_balancer_sees_it(tmp_path, monkeypatch):
    from mlflowkit.settings import Settings

    stack = Stack(HA, Settings(home=str(tmp_path)))
    states = [ServiceState("mlflow", "running", "healthy", 0, "", 1, ("172.20.0.7",)),
              ServiceState("mlflow", "running", "healthy", 0, "", 2, ("172.20.0.8",)),
              ServiceState("artifacts", "exited", "", 137, "", 1, ()),
              ServiceState("lb", "running", "healthy", 0, "127.0.0.1:5070", 1, ("172.20.0.2",)),
              ServiceState("migrate", "exited", "", 0, "", 1, ())]
    monkeypatch.setattr(Stack, "states", lambda self: states)
    monkeypatch.setattr(Stack, "balancer_view", lambda self: parse_haproxy_csv(CSV, {"tracking", "artifacts"}))
    assert [(m.name, m.role) for m in stack.members()] == [
        ("mlflow #1", "tracking replica (lb: UP)"), ("mlflow #2", "tracking replica (lb: DOWN)"),
        ("artifacts #1", "artifacts replica (lb: not in its pool)"), ("lb", "load balancer (TLS)"),
        ("migrate", "one-shot")]
    assert isinstance(stack.members()[0], Member)


def test_a_tls_stack_gives_clients_https_and_its_ca(tmp_path):
    from mlflowkit.settings import Settings

    stack = Stack(HA, Settings(home=str(tmp_path)))
    stack.env_file.parent.mkdir(parents=True)
    stack.env_file.write_text(f"MLFLOW_PORT=5070\nSERVE_PORT=5071\nTLS_DIR={tmp_path}/tls\n")
    connection = stack.connection()
    assert connection.tracking_uri == "https://127.0.0.1:5070" == stack.ui_url()
    assert connection.server_cert_path == f"{tmp_path}/tls/ca.pem"
    assert connection.environ()["MLFLOW_TRACKING_SERVER_CERT_PATH"] == f"{tmp_path}/tls/ca.pem"
    assert Stack(TOPOLOGIES["proxied"], Settings(home=str(tmp_path))).ca_path() is None


def test_the_declared_users_database_is_the_one_the_replicas_and_the_migration_use():
    """backup and restore dump the database Topology.auth_database names: the one every replica's libpq is given and
    the migration one-shot makes."""
    services = yaml.safe_load((ROOT / "stacks" / "ha" / "compose.yaml").read_text())["services"]
    assert HA.auth_database is not None
    declared = HA.auth_database.format(POSTGRES_DB="team")

    def resolved(value: str) -> str:  # ${POSTGRES_DB} or ${POSTGRES_DB:?message} as .env's POSTGRES_DB=team
        return re.sub(r"\$\{POSTGRES_DB(:\?[^}]*)?\}", "team", value)

    for replicas in HA.replicas:
        assert resolved(services[replicas.service]["environment"]["PGDATABASE"]) == declared
    assert resolved(services["migrate"]["environment"]["MLFLOW_AUTH_DATABASE"]) == declared
    assert [t.name for t in TOPOLOGIES.values() if t.auth_database] == [HA.name]


def test_the_servers_a_restore_stops_are_the_replicas_not_the_stores():
    assert HA.servers == tuple(r.service for r in HA.replicas) == ("mlflow", "artifacts")


@pytest.mark.parametrize("replicated", [r.service for r in HA.replicas])
def test_replicas_are_not_published_and_share_one_secret_and_users_database(replicated):
    spec = yaml.safe_load((ROOT / "stacks" / "ha" / "compose.yaml").read_text())["services"][replicated]
    assert "ports" not in spec, "replicas are reached through the load balancer only"
    env = spec["environment"]  # the YAML merge key (<<: *replica-env) resolved by the loader
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflowkit/ha/basic_auth.ini"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false", "no per-replica SQLite job queue"
    ini = config("basic-auth-ini")
    assert "database_uri = postgresql+psycopg2://?host=pgbouncer&port=6432" in ini and "sqlite" not in ini
