"""The bench's sections for a replicated topology (a load balancer before replicas of each server pool).

``replicas``: tracking at the run's highest client count and artifact transfers from as many clients, with the
declared N replicas of each pool and then with one of each, side by side. ``recovery``: the faults the e2e tests
prove the stack survives (tests/e2e/test_ha.py), timed under a small load whose clients do not retry, so every
call the stack does not absorb is counted: a tracking replica crashed (until the load balancer has it UP again),
the PostgreSQL leader killed (until a write begun after the kill is acknowledged), an S3 volume server killed
(the time downloads fail; 0 expected). The faults come from :mod:`mlflowkit.faults`; every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mlflowkit import faults
from mlflowkit.stack import Stack
from mlflowkit.topology import Replicas

if TYPE_CHECKING:
    from mlflowkit.bench.run import Bench

FAULT_CLIENTS = 4  # client processes of the load a fault happens under
BATCH = 10  # metrics per log_batch call in both sections
# Seconds the load goes on after a new leader is seen, so its timeline shows when writes resumed: 8 s was too
# short in the first run (PgBouncer and the router reach the new leader some seconds after the promotion).
AFTER_PROMOTION = 30.0
VOLUME_WINDOW = 15.0  # seconds of downloads after a volume server is killed
NO_RETRY = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}  # a failed call counts, MLflow's client does not hide it

Call = Sequence  # (start, end, ok): epoch seconds, as the load generator's --timeline reports each call


# --- reading a load's timeline ------------------------------------------------------------------------------

def resumed_after(timeline: list[Call], since: float) -> float | None:
    """Seconds from ``since`` to the end of the first successful call begun at or after it; None: none was."""
    ends = [end for start, end, ok in timeline if ok and start >= since]
    return min(ends) - since if ends else None


def failed_after(timeline: list[Call], since: float) -> int:
    """Calls that failed and ended after ``since`` (cut by the fault, or begun after it)."""
    return sum(1 for _, end, ok in timeline if not ok and end >= since)


def failing_time(timeline: list[Call], since: float) -> float:
    """Seconds during which calls failed after ``since``: for each run of failed calls (by start), from the first
    one's start to the end of the next success, or to the last failure's end when no success followed; 0 when
    no call failed."""
    calls = sorted((start, end, ok) for start, end, ok in timeline if end >= since)
    total, first_failure, last_end = 0.0, None, 0.0
    for start, end, ok in calls:
        if not ok:
            first_failure = start if first_failure is None else first_failure
            last_end = max(last_end, end)
        elif first_failure is not None:
            total += end - max(first_failure, since)
            first_failure = None
    if first_failure is not None:
        total += last_end - max(first_failure, since)
    return total


def pools_label(counts: dict[Replicas, int]) -> str:
    """``2 tracking replicas + 2 artifacts replicas``."""
    return " + ".join(f"{n} {r.role}{'' if n == 1 else 's'}" for r, n in counts.items())


def aggregate_mbps(result: dict, direction: str) -> float | None:
    """All clients' bytes over the slowest client's time: what the pools moved together."""
    timing = result[direction]
    if not timing["count"] or not timing.get("slowest_s"):
        return None
    return result["size"] * timing["count"] / timing["slowest_s"] / 1e6


# --- the sections -------------------------------------------------------------------------------------------

def replicas(bench: Bench, stack: Stack) -> None:
    """Measure with the declared replicas, then (after the recovery section, which needs them) with one of each."""
    declared = faults.replica_counts(stack.topology, stack.env())
    faults.wait_pool(stack, bench.settings.up_timeout)
    many = _pools(bench, stack)
    if bench.sizes.faults:
        recovery(bench, stack)
    if all(n == 1 for n in declared.values()):
        bench.log("bench: one replica of each pool is what the stack declares: no second measurement")
        _add_pools(bench, stack, declared, many, None)
        return
    from mlflowkit.bench.run import set_env

    single = {r: 1 for r in declared}
    set_env(stack, **{r.variable: "1" for r in single})
    bench.log(f"bench: {stack.topology.name} with {pools_label(single)}")
    stack.up()
    faults.wait_pool(stack, bench.settings.up_timeout)
    _add_pools(bench, stack, declared, many, _pools(bench, stack))


def _pools(bench: Bench, stack: Stack) -> dict:
    from mlflowkit.bench.run import experiment_id

    conn, sizes = stack.connection(), bench.sizes
    experiment, procs = experiment_id(conn, "bench-replicas"), max(sizes.concurrency)
    tracking = bench.load("tracking", conn.tracking_uri, experiment, env=conn.environ(), batch=BATCH, procs=procs,
                          duration=sizes.duration)
    transfers = bench.load("artifacts", experiment, env=conn.environ(), size=sizes.pool_bytes,
                           count=sizes.pool_count, procs=procs)
    return {"procs": procs, "tracking": tracking, "transfers": transfers}


def _add_pools(bench: Bench, stack: Stack, declared: dict[Replicas, int], many: dict, single: dict | None) -> None:
    from mlflowkit.bench.run import size_label

    name, procs = stack.topology.name, many["procs"]
    label = size_label(bench.sizes.pool_bytes)
    cases: list[tuple[str, str, Callable[[dict], float | None], str]] = [
        (f"tracking, batch {BATCH}, {procs} clients", "rows/s", _rows_per_s, "tracking"),
        (f"{label} uploads, {procs} clients", "MB/s", lambda r: aggregate_mbps(r["transfers"], "upload"), "transfers"),
        (f"{label} downloads, {procs} clients", "MB/s", lambda r: aggregate_mbps(r["transfers"], "download"),
         "transfers")]
    one = {r: 1 for r in declared}
    for case, unit, value, load in cases:
        # A load with failed calls measured the failure, not the pool: no ratio from it.
        clean = single is not None and not single[load]["errors"] and not many[load]["errors"]
        limit = value(single) if single else None
        bench.add("replicas", name, f"{case}, {pools_label(declared)}", value(many), unit,
                  limit=limit if clean else None, limit_name="1 replica of each" if clean else "",
                  extra={"errors": many[load]["errors"]})
        if single:
            bench.add("replicas", name, f"{case}, {pools_label(one)}", limit, unit,
                      extra={"errors": single[load]["errors"]})


def _rows_per_s(measured: dict) -> float:
    return measured["tracking"]["rows"] / measured["tracking"]["seconds"]


def recovery(bench: Bench, stack: Stack) -> None:
    from mlflowkit.bench.run import experiment_id

    conn = stack.connection()
    env = {**conn.environ(), **NO_RETRY}
    experiment = experiment_id(conn, "bench-recovery")
    tracking = dict(batch=BATCH, procs=FAULT_CLIENTS, duration=bench.settings.up_timeout + 300)
    _replica_crash(bench, stack, stack.topology.replicas[0], conn.tracking_uri, experiment, env, tracking)
    if stack.topology.patroni:
        _leader_kill(bench, stack, conn.tracking_uri, experiment, env, tracking)
    volumes = faults.volume_servers(stack.topology)
    if volumes:
        _volume_kill(bench, stack, volumes[-1], experiment, env)


def _replica_crash(bench: Bench, stack: Stack, pool: Replicas, uri: str, experiment: str, env: dict,
                   options: dict) -> None:
    """SIGKILL of replica #1's main process (the restart policy brings it back), under the load."""
    name, victim = stack.topology.name, faults.container(stack, pool.service, 1)
    with bench.background("tracking", uri, experiment, env=env, **options) as load:
        before = faults.restart_count(victim)
        faults.crash(victim)
        killed, started = time.time(), time.monotonic()
        faults.wait_restarted(victim, before, 60)
        faults.wait_in_pool(stack, faults.replica_name(pool.service, 1), bench.settings.up_timeout)
        back = time.monotonic() - started
        time.sleep(2)  # calls after its return, through both replicas
    timeline = load["timeline"]
    bench.add("recovery", name, f"{pool.role} killed: back in the pool", back, "s",
              extra={"calls": len(timeline), "errors": failed_after(timeline, killed)},
              note="SIGKILL from the host; the restart policy restarts it, the load balancer checks it in")
    bench.add("recovery", name, f"{pool.role} killed: failed calls", failed_after(timeline, killed), "calls",
              extra={"failing_s": round(failing_time(timeline, killed), 3), "calls": len(timeline)})


def _leader_kill(bench: Bench, stack: Stack, uri: str, experiment: str, env: dict, options: dict) -> None:
    """`docker kill` of the Patroni leader under the load; promotion, resumed writes, then the node's rejoin."""
    name, timeout = stack.topology.name, bench.settings.up_timeout
    roles = faults.wait_roles(stack, faults.healthy_pair, timeout)
    old = faults.leader(roles)
    other = next(node for node in roles if node != old)
    victim = faults.container(stack, old)
    with bench.background("tracking", uri, experiment, env=env, **options) as load:
        faults.kill(victim)
        killed, started = time.time(), time.monotonic()
        faults.wait_roles(stack, lambda r: r.get(other) == "leader", timeout)
        promoted = time.monotonic() - started
        time.sleep(AFTER_PROMOTION)
    faults.start(victim)
    restarted = time.monotonic()
    faults.wait_roles(stack, lambda r: r.get(old) in ("replica", "sync replica"), timeout)
    rejoined = time.monotonic() - restarted
    timeline = load["timeline"]
    resumed = resumed_after(timeline, killed)
    bench.add("recovery", name, "PostgreSQL leader killed: replica promoted", promoted, "s",
              note="Patroni: the leader's key expires in etcd (ttl 15 s)")
    bench.add("recovery", name, "PostgreSQL leader killed: writes resumed", resumed, "s",
              extra={"calls": len(timeline), "errors": failed_after(timeline, killed)},
              note="" if resumed is not None else f"no write begun after the kill acknowledged within "
                                                  f"{AFTER_PROMOTION:.0f} s of the promotion")
    bench.add("recovery", name, "PostgreSQL leader killed: failed calls", failed_after(timeline, killed), "calls",
              extra={"failing_s": round(failing_time(timeline, killed), 3), "calls": len(timeline)})
    bench.add("recovery", name, "PostgreSQL leader killed: back as a replica after its start", rejoined, "s")


def _volume_kill(bench: Bench, stack: Stack, volume: str, experiment: str, env: dict) -> None:
    """`docker kill` of one S3 volume server under a download load (every file is on two of them); started
    again afterwards."""
    name, victim = stack.topology.name, faults.container(stack, volume)
    downloads = dict(size=bench.sizes.download_bytes, count=bench.sizes.download_files, procs=2,
                     duration=bench.settings.up_timeout + 300)
    try:
        with bench.background("downloads", experiment, env=env, **downloads) as load:
            faults.kill(victim)
            killed = time.time()
            time.sleep(VOLUME_WINDOW)
    finally:
        faults.start(victim)
    timeline = load["timeline"]
    after = [call for call in timeline if call[1] >= killed]
    bench.add("recovery", name, "S3 volume server killed: downloads failing", failing_time(timeline, killed), "s",
              extra={"calls": len(after), "errors": failed_after(timeline, killed)},
              note=f"{len(after)} downloads in the {VOLUME_WINDOW:.0f} s after the kill")
    bench.add("recovery", name, "S3 volume server killed: failed downloads", failed_after(timeline, killed),
              "calls", extra={"calls": len(after)})
