"""Faults, restarts and load on a real postgres-s3 stack. Bounded in time; traffic only to 127.0.0.1.

Figures each test measured are printed (`pytest -s` shows them) and summarised in docs/reliability.md.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest

from mlflowkit import faults
from mlflowkit.client import Client
from mlflowkit.docker import run
from mlflowkit.errors import CommandError, KitError
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES
from tests.e2e.conftest import _log, seed_env

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("reliability")]  # one stack for the module


@pytest.fixture(scope="module")
def stack(e2e_settings):
    topology = TOPOLOGIES["postgres-s3"]
    seed_env(e2e_settings, topology)
    stack = Stack(topology, e2e_settings, log=_log)
    stack.up()
    yield stack
    stack.down(volumes=True)


def wait_healthy(stack, service: str, timeout: float) -> float:
    """Seconds until ``service`` is running and healthy again."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        states = {s.service: s for s in stack.states()}
        state = states.get(service)
        if state and state.state == "running" and state.health == "healthy":
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{service} not healthy within {timeout:.0f} s:\n{stack.logs([service], tail=30)}")


def log_steps(client: Client, run_id: str, steps: range, deadline: float) -> tuple[list[int], list[str]]:
    """Log metric ``x`` at each step, one call each; the steps acknowledged and the errors reported."""
    from mlflowkit.client import Run

    acked, errors = [], []
    target = Run(client, run_id)
    for step in steps:
        if time.monotonic() > deadline:
            break
        try:
            target.log_metrics({"x": float(step)}, step=step)
            acked.append(step)
        except KitError as exc:
            errors.append(str(exc))
    return acked, errors


def test_killed_tracking_server_comes_back_and_keeps_every_acknowledged_write(stack):
    client = Client(stack.connection())
    with client.run("fault-kill") as logged:
        pass
    deadline = time.monotonic() + 120
    acked, errors = log_steps(client, logged.run_id, range(0, 20), deadline)

    faults.crash(faults.container(stack, "mlflow"))
    killed_at = time.monotonic()
    during, errors_during = log_steps(client, logged.run_id, range(20, 25), deadline)
    wait_healthy(stack, "mlflow", timeout=120)
    recovery = time.monotonic() - killed_at
    after, errors_after = log_steps(client, logged.run_id, range(25, 45), deadline)

    stored = {m.step for m in client.mlflow.get_metric_history(logged.run_id, "x")}
    acknowledged = set(acked + during + after)
    print(f"\nkill: acknowledged {len(acknowledged)}, stored {len(stored)}, failed calls {len(errors_during)}, "
          f"healthy again after {recovery:.1f} s")
    assert acknowledged <= stored, f"acknowledged but lost: {sorted(acknowledged - stored)}"
    assert len(after) == 20 and not errors_after, "the server must take writes again after it came back"
    assert not errors, errors
    for message in errors_during:  # a failed call says what was tried and where
        assert message.startswith("logging metrics failed (http://127.0.0.1:"), message


def test_server_recovers_from_a_postgresql_restart_without_a_manual_step(stack):
    client = Client(stack.connection())
    with client.run("fault-postgres") as logged:
        logged.log_metrics({"before": 1.0})
    run(["docker", "restart", "--time", "10", faults.container(stack, "postgres")], timeout=60)
    restarted = time.monotonic()
    wait_healthy(stack, "postgres", timeout=60)
    recovered = None
    while time.monotonic() - restarted < 60:
        try:
            logged.log_metrics({"after": 1.0})
            recovered = time.monotonic() - restarted
            break
        except KitError:
            time.sleep(0.5)
    print(f"\npostgres restart: first write accepted "
          f"{'never' if recovered is None else f'{recovered:.1f} s'} after the restart began")
    assert recovered is not None, f"no write accepted within 60 s:\n{stack.logs(['mlflow'], tail=30)}"
    assert client.get_run(logged.run_id).data.metrics == {"before": 1.0, "after": 1.0}


def test_a_server_started_while_postgresql_is_down_waits_for_it_then_serves(stack):
    """A host's reboot order: the server starts before its database. It waits for it (the image's launcher,
    mlflowkit_server.prepare) and serves once it answers, with nothing lost and no manual step."""
    client = Client(stack.connection())
    with client.run("fault-order") as logged:
        logged.log_metrics({"before": 1.0})
    database, server = faults.container(stack, "postgres"), faults.container(stack, "mlflow")
    faults.stop(database, grace=10)
    try:
        run(["docker", "restart", "--time", "10", server], timeout=60)
        time.sleep(3)  # the server is now waiting for the database (its limit is 60 s)
        assert {s.service: s.state for s in stack.states()}["mlflow"] == "running", stack.logs(["mlflow"], tail=20)
    finally:
        faults.start(database)
    waited = wait_healthy(stack, "mlflow", timeout=90)
    print(f"\nserver started before its database: healthy {waited:.1f} s after the database started")
    assert "prepare: schema at revision" in stack.logs(["mlflow"], tail=40)
    logged.log_metrics({"after": 1.0})
    assert client.get_run(logged.run_id).data.metrics == {"before": 1.0, "after": 1.0}


@pytest.mark.parametrize(("store", "environment"), [
    ("the database", {"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://mlflow:x@postgres.invalid:5432/mlflow"}),
    ("S3", {"MLFLOW_S3_ENDPOINT_URL": "http://s3.invalid:8333", "S3_BUCKET": "mlflow",
            "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}),
])
def test_a_server_whose_store_never_answers_exits_with_one_line(store, environment, e2e_settings):
    """Past MLFLOWKIT_STORES_WAIT the launcher gives up: exit 1, its last line names the store and the error
    (the stack's restart policy then starts it again; `up --wait` reports it at the healthcheck's limit)."""
    from mlflowkit import images

    image = images.names(e2e_settings, "mlflow")[0]
    variables = [arg for key, value in {**environment, "MLFLOWKIT_STORES_WAIT": "2"}.items()
                 for arg in ("--env", f"{key}={value}")]
    with pytest.raises(CommandError) as info:
        run(["docker", "run", "--rm", "--network", "none", *variables, image, "python", "-m",
             "mlflowkit_server.prepare", "mlflow", "server", "--host", "0.0.0.0", "--port", "5000"], timeout=120)
    assert info.value.returncode == 1, info.value
    last = info.value.stderr.strip().splitlines()[-1]
    assert last.startswith(f"prepare: {store} did not answer in 2 s: "), info.value.stderr


def _load_worker(uri: str, run_id: str, seconds: float, batch: int, queue) -> None:
    """One client process: log batches of ``batch`` metric rows to its run until ``seconds`` pass."""
    from mlflowkit.client import Client, Connection, Run

    target = Run(Client(Connection(uri, timeout=30)), run_id)
    acked = errors = 0
    step = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            target.log_metrics({f"m{i}": float(step) for i in range(batch)}, step=step)
            acked += batch
        except Exception:  # noqa: BLE001 - counted, reported by the test
            errors += 1
        step += 1
    queue.put((run_id, acked, errors))


def test_concurrent_clients_lose_nothing_and_see_no_errors(stack):
    workers, seconds, batch = 4, 10.0, 10
    client = Client(stack.connection())
    run_ids = []
    for _ in range(workers):
        with client.run("load") as logged:
            run_ids.append(logged.run_id)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_load_worker, args=(stack.connection().tracking_uri, rid, seconds, batch, queue))
             for rid in run_ids]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    env = stack.env()
    ids = ",".join(f"'{rid}'" for rid in run_ids)
    stored = int(stack.compose().exec("postgres", ["psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"],
                                                   "-tAc", f"SELECT count(*) FROM metrics WHERE run_uuid IN ({ids})"]))
    acked = sum(r[1] for r in results)
    errors = sum(r[2] for r in results)
    print(f"\nload: {workers} processes x {seconds:.0f} s, {acked} metric rows acknowledged "
          f"({acked / seconds:.0f} rows/s), {stored} stored, {errors} errors")
    assert errors == 0
    assert acked > 0 and stored == acked


def test_rerunning_the_migration_and_restarting_the_server_keeps_the_data(stack):
    client = Client(stack.connection())
    with client.run("upgrade") as logged:
        logged.log_params({"kept": "yes"})
    client.set_alias(*_registered(client))
    stack.compose().call("up", "--detach", "--wait", "--force-recreate", "--no-deps", "migrate", "mlflow",
                         timeout=240)
    assert client.get_run(logged.run_id).data.params == {"kept": "yes"}
    assert client.version_by_alias("upgrade-model", "kept") == "1"


def _registered(client: Client) -> tuple[str, str, str]:
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    with client.run("upgrade") as again:
        info = again.log_model(mlflow.sklearn, LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), "model")
    return "upgrade-model", "kept", client.register(info.model_uri, "upgrade-model")
