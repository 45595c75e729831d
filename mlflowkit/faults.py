"""Faults a replicated stack is proven against, and how to see it recover: find a container, crash, stop or pause it,
then wait until the stack says it is whole again (the load balancer's pool, Patroni's roles).

What the ha e2e tests and `mlflowkit bench` share. Every wait is bounded and ends in one clear error; the
Docker CLI runs through :mod:`mlflowkit.docker`; which services are replicas, PostgreSQL nodes or S3 volume
servers comes from the topology's declaration.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mlflowkit.docker import run
from mlflowkit.errors import CommandError, KitError
from mlflowkit.stack import Member, Stack
from mlflowkit.topology import Replicas, Topology

POLL = 0.5  # seconds between two looks at the stack
# The role topology.py declares for each SeaweedFS volume server (each file is kept on two of them).
VOLUME_SERVER_ROLE = "S3 volume server"

Roles = dict[str, str]


# --- what the declaration says ------------------------------------------------------------------------------

def replica_counts(topology: Topology, values: dict[str, str]) -> dict[Replicas, int]:
    """How many replicas of each replicated service the .env ``values`` ask for (the declared default where
    unset)."""
    counts = {}
    for replicas in topology.replicas:
        raw = (values.get(replicas.variable) or "").strip()
        counts[replicas] = int(raw) if raw.isdigit() else replicas.default
    return counts


def volume_servers(topology: Topology) -> tuple[str, ...]:
    """The S3 volume servers of the topology (services declared with that role)."""
    return tuple(service for service, role in topology.roles if role == VOLUME_SERVER_ROLE)


def replica_name(service: str, number: int) -> str:
    """How `mlflowkit status` names a replica: ``mlflow #2``."""
    return f"{service} #{number}"


# --- containers ---------------------------------------------------------------------------------------------

def container(stack: Stack, service: str, number: int = 1) -> str:
    """The id of ``service``'s container number ``number`` (Compose's container-number label), running or not."""
    out = run(["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={stack.project}",
               "--filter", f"label=com.docker.compose.service={service}",
               "--filter", f"label=com.docker.compose.container-number={number}"], timeout=30).stdout.split()
    if len(out) != 1:
        raise KitError(f"expected one container {replica_name(service, number)} in {stack.project}, found {out}",
                       hint=f"`mlflowkit status {stack.topology.name}` lists what runs.")
    return out[0]


def crash(container_id: str) -> None:
    """SIGKILL the container's main process from the host, as the OOM killer would: the restart policy then
    brings it back (`docker kill` counts as a deliberate stop, which restart policies leave down)."""
    pid = int(run(["docker", "inspect", "--format", "{{.State.Pid}}", container_id], timeout=30).stdout)
    if pid <= 0:
        raise KitError(f"container {container_id} is not running", hint="start it before crashing it.")
    try:
        os.kill(pid, signal.SIGKILL)
    except PermissionError:
        raise KitError(f"may not signal process {pid} of container {container_id}",
                       hint="crashing a container's process takes root (or the user it runs as) on the engine's "
                            "host.") from None


def kill(container_id: str) -> None:
    """`docker kill`: a deliberate stop (SIGKILL); it stays down until :func:`start`."""
    run(["docker", "kill", container_id], timeout=60)


def stop(container_id: str, grace: int = 10) -> None:
    """`docker stop`: SIGTERM, then SIGKILL after ``grace`` seconds."""
    run(["docker", "stop", "--time", str(grace), container_id], timeout=grace + 50)


def start(container_id: str) -> None:
    run(["docker", "start", container_id], timeout=60)


@contextmanager
def paused(container_id: str) -> Iterator[None]:
    """`docker pause` for the block: every process of the container stalls (its connections stay open, nothing
    answers), as a hung node or a partition would; unpaused when the block ends, whatever happens in it."""
    run(["docker", "pause", container_id], timeout=60)
    try:
        yield
    finally:
        run(["docker", "unpause", container_id], timeout=60)


def restart_count(container_id: str) -> int:
    """How often the engine's restart policy has restarted the container."""
    return int(run(["docker", "inspect", "--format", "{{.RestartCount}}", container_id], timeout=30).stdout)


def wait_restarted(container_id: str, before: int, timeout: float) -> float:
    """Seconds until the restart policy has restarted the container (its count past ``before``)."""
    started = time.monotonic()
    while restart_count(container_id) <= before:
        _check_deadline(started, timeout, f"container {container_id} not restarted")
        time.sleep(POLL / 2)
    return time.monotonic() - started


# --- the load balancer's pool -------------------------------------------------------------------------------

def in_pool(member: Member | None) -> bool:
    """The replica runs healthy and the load balancer sends it requests (`mlflowkit status`: ``(lb: UP)``)."""
    return member is not None and member.state.health == "healthy" and member.role.endswith(": UP)")


def wait_in_pool(stack: Stack, name: str, timeout: float) -> float:
    """Seconds until replica ``name`` (``mlflow #2``) is healthy and the load balancer sends it requests."""
    started = time.monotonic()
    while True:
        members = stack.members()
        if in_pool(next((m for m in members if m.name == name), None)):
            return time.monotonic() - started
        _check_deadline(started, timeout, f"{name} not back in the pool", members)
        time.sleep(POLL)


def pool_settled(members: list[Member], view: dict[str, str], replicated: set[str]) -> bool:
    """The load balancer has exactly the running replicas (of every pool), each UP."""
    running = sum(1 for m in members if m.state.service in replicated and m.state.state == "running")
    return sorted(view.values()) == ["UP"] * running


def wait_pool(stack: Stack, timeout: float) -> float:
    """Seconds until the load balancer has exactly the running replicas, each UP (after an `up` that changed
    their number, or a stop)."""
    started, replicated = time.monotonic(), {r.service for r in stack.topology.replicas}
    while True:
        members, view = stack.members(), stack.balancer_view()
        if pool_settled(members, view, replicated):
            return time.monotonic() - started
        _check_deadline(started, timeout, "the load balancer's pool did not settle", view)
        time.sleep(POLL)


def wait_out_of_pool(stack: Stack, name: str, timeout: float) -> Member:
    """The stopped replica ``name`` as `mlflowkit status` shows it, once the load balancer has only the running
    replicas (of every pool) left, each UP."""
    started, replicated = time.monotonic(), {r.service for r in stack.topology.replicas}
    while True:
        members, view = stack.members(), stack.balancer_view()
        member = next((m for m in members if m.name == name), None)
        if member is not None and member.state.state == "exited" and pool_settled(members, view, replicated):
            return member
        _check_deadline(started, timeout, f"{name} still in the pool", (member, view))
        time.sleep(POLL)


# --- PostgreSQL under Patroni -------------------------------------------------------------------------------

def database_roles(stack: Stack) -> Roles:
    """The PostgreSQL nodes' roles as Patroni sees them (``leader``, ``sync replica``, ``replica``), asked of
    any node that answers; {} when the topology has no Patroni cluster or no node answers."""
    patroni = stack.topology.patroni
    return stack.database_roles(list(patroni.nodes)) if patroni else {}


def wait_roles(stack: Stack, wanted: Callable[[Roles], bool], timeout: float) -> Roles:
    """The PostgreSQL nodes' roles once ``wanted(roles)`` holds."""
    if stack.topology.patroni is None:
        raise KitError(f"{stack.topology.name} has no PostgreSQL cluster", hint="only a Patroni topology has roles.")
    started = time.monotonic()
    while True:
        roles = database_roles(stack)
        if wanted(roles):
            return roles
        _check_deadline(started, timeout, "PostgreSQL nodes not as wanted", roles)
        time.sleep(POLL)


def healthy_pair(roles: Roles) -> bool:
    """A leader and a synchronous replica: a failover then loses no acknowledged write."""
    return sorted(roles.values()) == ["leader", "sync replica"]


def leader(roles: Roles) -> str:
    """The node that leads; a KitError when none does."""
    found = [node for node, role in roles.items() if role == "leader"]
    if len(found) != 1:
        raise KitError(f"no single PostgreSQL leader: {roles}", hint="`mlflowkit status` shows each node's role.")
    return found[0]


# --- etcd, where Patroni keeps its leader key -----------------------------------------------------------

def consensus_leader(stack: Stack) -> str:
    """The etcd member that leads the consensus, asked of each member's status (etcd's HTTP gateway, inside its
    container: the port is not published); a KitError when none says it leads."""
    patroni = stack.topology.patroni
    if patroni is None:
        raise KitError(f"{stack.topology.name} has no PostgreSQL cluster", hint="only a Patroni topology has etcd.")
    for member in patroni.consensus:
        try:
            status = stack.compose().exec(member, ["curl", "-fsS", "-X", "POST", "-d", "{}",
                                                   f"http://127.0.0.1:{patroni.consensus_port}/v3/maintenance/status"],
                                          timeout=30)
        except CommandError:
            continue
        if leads(status):
            return member
    raise KitError(f"no etcd member of {stack.project} says it leads",
                   hint=f"`mlflowkit status {stack.topology.name}` and `mlflowkit logs` show the members' state.")


def leads(status: str) -> bool:
    """Whether an etcd member's ``/v3/maintenance/status`` answer is the leader's own (its id is the leader's)."""
    data = json.loads(status)
    return str(data["header"]["member_id"]) == str(data.get("leader"))


def wait_healthy(stack: Stack, name: str, timeout: float) -> float:
    """Seconds until the member ``name`` (a service, or a replica: ``mlflow #2``) runs and passes its
    healthcheck."""
    started = time.monotonic()
    while True:
        members = stack.members()
        member = next((m for m in members if m.name == name), None)
        if member is not None and member.state.state == "running" and member.state.health == "healthy":
            return time.monotonic() - started
        _check_deadline(started, timeout, f"{name} not healthy", member)
        time.sleep(POLL)


def _check_deadline(started: float, timeout: float, what: str, seen: object = None) -> None:
    if time.monotonic() - started >= timeout:
        shown = f": {seen}" if seen is not None else ""
        raise KitError(f"{what} within {timeout:.0f} s{shown}"[:2000],
                       hint="`mlflowkit status` and `mlflowkit logs` show the stack's state.")
