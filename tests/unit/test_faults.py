"""mlflowkit.faults without an engine: what the declaration says, the Docker calls it makes (runner patched), and
its bounded waits against a stack that answers from a script."""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import dataclass, field

import pytest

from mlflowkit import faults
from mlflowkit.errors import CommandError, KitError
from mlflowkit.stack import Member, ServiceState
from mlflowkit.topology import HA, POSTGRES_S3


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(faults, "POLL", 0.001)


def docker(monkeypatch, *outputs: str) -> list[list[str]]:
    """``faults.run`` answers each call with the next of ``outputs``; the argv of every call is recorded."""
    calls: list[list[str]] = []
    answers = iter(outputs)

    def run(argv, *, timeout, **_):
        assert timeout > 0
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, next(answers), "")

    monkeypatch.setattr(faults, "run", run)
    return calls


def replica(service: str, number: int, lb: str, health: str = "healthy", state: str = "running") -> Member:
    return Member(f"{service} #{number}", f"tracking replica (lb: {lb})",
                  ServiceState(service, state, health, 0, "", number, (f"10.0.0.{number}",)))


@dataclass
class Scripted:
    """A stack whose members, balancer view and Patroni roles come, one per look, from lists (the last repeats)."""

    members_seen: list[list[Member]] = field(default_factory=list)
    views: list[dict[str, str]] = field(default_factory=list)
    roles: list[dict[str, str]] = field(default_factory=list)
    topology: object = HA
    project: str = "h-ha"
    asked: list[list[str]] = field(default_factory=list)

    @staticmethod
    def _next(items: list):
        return items.pop(0) if len(items) > 1 else items[0]

    def members(self) -> list[Member]:
        return self._next(self.members_seen)

    def balancer_view(self) -> dict[str, str]:
        return self._next(self.views)

    def database_roles(self, nodes: list[str]) -> dict[str, str]:
        self.asked.append(nodes)
        return self._next(self.roles)


def test_replica_counts_are_the_env_or_the_declared_default():
    tracking, artifacts = HA.replicas
    assert faults.replica_counts(HA, {}) == {tracking: 2, artifacts: 2}
    assert faults.replica_counts(HA, {"MLFLOW_REPLICAS": "3", "ARTIFACTS_REPLICAS": " "}) == {tracking: 3,
                                                                                            artifacts: 2}
    assert faults.replica_counts(HA, {"MLFLOW_REPLICAS": "x"})[tracking] == 2
    assert faults.replica_counts(POSTGRES_S3, {"MLFLOW_REPLICAS": "3"}) == {}


def test_volume_servers_are_the_services_declared_as_such():
    assert faults.volume_servers(HA) == ("s3-volume-1", "s3-volume-2", "s3-volume-3")
    assert faults.volume_servers(POSTGRES_S3) == ()
    assert faults.replica_name("mlflow", 2) == "mlflow #2"


def test_container_filters_on_project_service_and_number_and_wants_exactly_one(monkeypatch):
    calls = docker(monkeypatch, "abc123\n", "", "a\nb\n")
    stack = Scripted()
    assert faults.container(stack, "mlflow", 2) == "abc123"
    argv = calls[0]
    assert argv[:4] == ["docker", "ps", "--all", "--quiet"]
    assert {"label=com.docker.compose.project=h-ha", "label=com.docker.compose.service=mlflow",
            "label=com.docker.compose.container-number=2"} <= set(argv)
    for _ in range(2):  # none, then two
        with pytest.raises(KitError, match="expected one container mlflow #1 in h-ha") as info:
            faults.container(stack, "mlflow")
        assert "mlflowkit status ha" in info.value.hint


def test_crash_sigkills_the_main_process_and_refuses_a_stopped_container(monkeypatch):
    killed = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    calls = docker(monkeypatch, "4242\n", "0\n")
    faults.crash("abc")
    assert killed == [(4242, signal.SIGKILL)]
    assert calls[0] == ["docker", "inspect", "--format", "{{.State.Pid}}", "abc"]
    with pytest.raises(KitError, match="not running"):
        faults.crash("abc")
    assert len(killed) == 1

    def refused(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(faults.os, "kill", refused)
    docker(monkeypatch, "77\n")
    with pytest.raises(KitError, match="may not signal process 77 of container abc") as info:
        faults.crash("abc")
    assert "root" in info.value.hint


def test_kill_stop_start_are_the_docker_commands(monkeypatch):
    calls = docker(monkeypatch, "", "", "")
    faults.kill("a")
    faults.stop("b", grace=7)
    faults.start("c")
    assert calls == [["docker", "kill", "a"], ["docker", "stop", "--time", "7", "b"], ["docker", "start", "c"]]


def test_wait_restarted_waits_for_the_count_to_pass_and_is_bounded(monkeypatch):
    docker(monkeypatch, "1", "1", "2")
    assert faults.wait_restarted("a", 1, timeout=5) >= 0
    docker(monkeypatch, *["1"] * 1000)
    with pytest.raises(KitError, match="not restarted within 0 s"):
        faults.wait_restarted("a", 1, timeout=0.05)


def test_wait_in_pool_needs_healthy_and_up():
    stack = Scripted(members_seen=[[replica("mlflow", 1, "DOWN", health="starting")],
                                   [replica("mlflow", 1, "DOWN")],
                                   [replica("mlflow", 1, "UP")]])
    assert faults.wait_in_pool(stack, "mlflow #1", timeout=5) >= 0
    assert stack.members_seen == [[replica("mlflow", 1, "UP")]]
    never = Scripted(members_seen=[[replica("mlflow", 1, "UP", health="starting")]])
    with pytest.raises(KitError, match="mlflow #1 not back in the pool within 0 s"):
        faults.wait_in_pool(never, "mlflow #1", timeout=0.05)
    with pytest.raises(KitError):
        faults.wait_in_pool(never, "mlflow #2", timeout=0.05)


def test_the_pool_settles_when_the_balancer_has_exactly_the_running_replicas_up():
    members = [replica("mlflow", 1, "UP"), replica("mlflow", 2, "UP", state="exited")]
    replicated = {"mlflow", "artifacts"}
    assert faults.pool_settled(members, {"10.0.0.1": "UP"}, replicated)
    assert not faults.pool_settled(members, {"10.0.0.1": "UP", "10.0.0.2": "DOWN"}, replicated)
    assert not faults.pool_settled(members, {}, replicated)
    stack = Scripted(members_seen=[members], views=[{"10.0.0.1": "UP", "10.0.0.2": "MAINT"}, {"10.0.0.1": "UP"}])
    assert faults.wait_pool(stack, timeout=5) >= 0
    out = faults.wait_out_of_pool(Scripted(members_seen=[members], views=[{"10.0.0.1": "UP"}]), "mlflow #2", 5)
    assert out.state.state == "exited"
    with pytest.raises(KitError, match="the load balancer's pool did not settle"):
        faults.wait_pool(Scripted(members_seen=[members], views=[{}]), timeout=0.05)
    with pytest.raises(KitError, match="mlflow #1 still in the pool"):  # running: never out
        faults.wait_out_of_pool(Scripted(members_seen=[members], views=[{"10.0.0.1": "UP"}]), "mlflow #1", 0.05)


def test_roles_are_patronis_asked_of_every_declared_node_until_wanted():
    stack = Scripted(roles=[{}, {"postgres-1": "leader", "postgres-2": "replica, starting"},
                            {"postgres-1": "leader", "postgres-2": "sync replica"}])
    roles = faults.wait_roles(stack, faults.healthy_pair, timeout=5)
    assert roles == {"postgres-1": "leader", "postgres-2": "sync replica"}
    assert stack.asked == [list(HA.patroni.nodes)] * 3
    assert faults.leader(roles) == "postgres-1"
    assert not faults.healthy_pair({"postgres-1": "leader", "postgres-2": "replica"})
    with pytest.raises(KitError, match="no single PostgreSQL leader"):
        faults.leader({"postgres-1": "replica", "postgres-2": "replica"})
    with pytest.raises(KitError, match="PostgreSQL nodes not as wanted within 0 s"):
        faults.wait_roles(Scripted(roles=[{}]), faults.healthy_pair, timeout=0.05)
    with pytest.raises(KitError, match="postgres-s3 has no PostgreSQL cluster"):
        faults.wait_roles(Scripted(topology=POSTGRES_S3), faults.healthy_pair, timeout=1)
    assert faults.database_roles(Scripted(topology=POSTGRES_S3)) == {}


def etcd_status(member_id: str, leader: str) -> str:
    """What etcd 3.4's HTTP gateway answers to POST /v3/maintenance/status (ids as strings, as its JSON has them)."""
    return json.dumps({"header": {"cluster_id": "1", "member_id": member_id, "revision": "9", "raft_term": "2"},
                       "version": "3.4.23", "leader": leader, "raftIndex": "40", "raftTerm": "2"})


class Etcd:
    """A stack whose etcd members answer their status from ``answers`` (a CommandError: the member is down)."""

    topology = HA
    project = "h-ha"

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers, self.asked = answers, []

    def compose(self):
        return self

    def exec(self, service: str, argv: list[str], *, timeout: float) -> str:
        assert timeout > 0 and argv[-1] == f"http://127.0.0.1:{HA.patroni.consensus_port}/v3/maintenance/status"
        self.asked.append(service)
        answer = self.answers[service]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_consensus_leader_is_the_member_whose_id_is_the_leaders():
    assert faults.leads(etcd_status("1234", "1234"))
    assert not faults.leads(etcd_status("1234", "99"))
    down = CommandError(["docker", "compose", "exec"], 1, "", "container is not running")
    stack = Etcd({"etcd-1": down, "etcd-2": etcd_status("2", "3"), "etcd-3": etcd_status("3", "3")})
    assert faults.consensus_leader(stack) == "etcd-3"
    assert stack.asked == list(HA.patroni.consensus)
    with pytest.raises(KitError, match="no etcd member of h-ha says it leads"):
        faults.consensus_leader(Etcd({"etcd-1": down, "etcd-2": etcd_status("2", "0"), "etcd-3": down}))
    with pytest.raises(KitError, match="postgres-s3 has no PostgreSQL cluster"):
        faults.consensus_leader(Scripted(topology=POSTGRES_S3))


def test_wait_healthy_needs_the_member_running_and_healthy_and_is_bounded():
    def etcd(state: str, health: str) -> Member:
        return Member("etcd-2", "etcd member", ServiceState("etcd-2", state, health, 0, "", 1, ()))

    seen = Scripted(members_seen=[[etcd("exited", "")], [etcd("running", "starting")], [etcd("running", "healthy")]])
    assert faults.wait_healthy(seen, "etcd-2", 5) >= 0
    assert seen.members_seen == [[etcd("running", "healthy")]]
    with pytest.raises(KitError, match="etcd-2 not healthy within 0 s"):
        faults.wait_healthy(Scripted(members_seen=[[etcd("running", "unhealthy")]]), "etcd-2", 0.05)
