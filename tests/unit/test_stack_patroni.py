"""The ha topology's replicated PostgreSQL without an engine: Patroni's view of its nodes as `mlflowkit status`
shows it, the declaration against the stack's compose file, and the secrets `mlflowkit up` generates for it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mlflowkit import envfile
from mlflowkit.settings import Settings
from mlflowkit.stack import ServiceState, Stack, parse_patroni_cluster
from mlflowkit.topology import HA, TOPOLOGIES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "stacks" / "ha" / "compose.yaml").read_text())

# Patroni 3.0.2's GET /cluster, a replica restarting.
CLUSTER = json.dumps({"members": [
    {"name": "postgres-1", "role": "leader", "state": "running", "api_url": "http://postgres-1:8008/patroni",
     "host": "postgres-1", "port": 5432, "timeline": 2},
    {"name": "postgres-2", "role": "replica", "state": "starting", "api_url": "http://postgres-2:8008/patroni",
     "host": "postgres-2", "port": 5432, "timeline": 1, "lag": "unknown"}]})


def test_patronis_cluster_is_each_nodes_role_in_words():
    assert parse_patroni_cluster(CLUSTER) == {"postgres-1": "leader", "postgres-2": "replica, starting"}
    synchronous = CLUSTER.replace('"replica", "state": "starting"', '"sync_standby", "state": "streaming"')
    assert parse_patroni_cluster(synchronous)["postgres-2"] == "sync replica"
    assert parse_patroni_cluster("") == parse_patroni_cluster("[]") == parse_patroni_cluster("{}") == {}


def test_status_gives_each_postgresql_node_its_role_asked_of_a_running_node(tmp_path, monkeypatch):
    stack = Stack(HA, Settings(home=str(tmp_path)))
    states = [ServiceState("postgres", "running", "healthy", 0, ""),
              ServiceState("postgres-1", "exited", "", 137, ""),
              ServiceState("postgres-2", "running", "healthy", 0, ""),
              ServiceState("etcd-1", "running", "healthy", 0, "")]
    asked = []

    def roles(self, nodes):
        asked.append(nodes)
        return {"postgres-2": "leader"}

    monkeypatch.setattr(Stack, "states", lambda self: states)
    monkeypatch.setattr(Stack, "database_roles", roles)
    assert [(m.name, m.role) for m in stack.members()] == [
        ("postgres", "database router (to the leader)"), ("postgres-1", "PostgreSQL node (not in the cluster)"),
        ("postgres-2", "PostgreSQL node (leader)"), ("etcd-1", "etcd member")]
    assert asked == [["postgres-2"]]  # only a running node can answer


def test_a_topology_without_patroni_asks_no_node(tmp_path):
    assert Stack(TOPOLOGIES["proxied"], Settings(home=str(tmp_path))).database_roles(["postgres"]) == {}


def test_the_declared_patroni_cluster_is_the_stacks():
    """Nodes and etcd members run as the declaration says; the router (the service clients know as postgres)
    sends to exactly the declared nodes; each node's Patroni name is its service name (how status matches them)."""
    assert HA.patroni is not None
    services = COMPOSE["services"]
    router = COMPOSE["configs"]["postgres-router-cfg"]["content"]
    for node in HA.patroni.nodes:
        env = services[node]["environment"]
        assert env["PATRONI_NAME"] == node and env["PATRONI_RESTAPI_CONNECT_ADDRESS"] == f"{node}:8008"
        assert f"server {node} {node}:5432" in router
        assert HA.role(node) == "PostgreSQL node" and node in HA.services
    assert router.count("\n    server ") == len(HA.patroni.nodes)
    assert f"check port {HA.patroni.api_port}" in router
    patroni = yaml.safe_load(COMPOSE["configs"]["patroni-yml"]["content"])
    assert patroni["bootstrap"]["dcs"]["synchronous_mode"] is True  # no acknowledged write lost on failover
    assert patroni["etcd3"]["hosts"] == ",".join(f"{m}:2379" for m in HA.patroni.consensus)
    for member in HA.patroni.consensus:
        assert f"--name={member}" in services[member]["command"] and HA.role(member) == "etcd member"
    assert len(HA.patroni.consensus) % 2 == 1, "an odd number of etcd members: a majority survives one's loss"


def test_up_generates_the_declared_secrets_once(tmp_path):
    path = tmp_path / ".env"
    first = envfile.ensure(path, HA)
    for name in HA.secrets:
        assert len(first[name]) >= 24
    assert envfile.ensure(path, HA) == first  # kept, not regenerated
    assert not set(HA.secrets) & set(envfile.defaults(TOPOLOGIES["proxied"]))
