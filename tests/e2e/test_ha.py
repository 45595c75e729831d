"""The ha topology under faults: one stack (with --auth), loaded by client processes that speak MLflow's REST API
through the load balancer over TLS, one HTTP request per call and no client-side retry, so every failure the
load balancer does not absorb is counted. Bounded loops, traffic only to 127.0.0.1.

Figures are printed (`pytest -s` shows them) and summarised in docs/reliability.md.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest
import requests

from mlflowkit import faults, images
from mlflowkit.docker import run
from mlflowkit.errors import KitError
from mlflowkit.stack import Stack
from mlflowkit.topology import DATABASE_SERVICE, HA
from mlflowkit.validate import check_targets
from tests.e2e.conftest import _log, seed_env

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("ha")]  # one stack for the module: one worker

WORKERS = 4  # client processes of the load
BATCH = 10  # metrics per log-batch call
STALL = 8.0  # seconds the PostgreSQL leader is paused (under Patroni's ttl of 15 s: no failover)
ETCD_OUT = 20.0  # seconds etcd members are out: past the ttl, so Patroni's leader key cannot live on what it had


@pytest.fixture(scope="module")
def stack(e2e_settings):
    seed_env(e2e_settings, HA)
    stack = Stack(HA, e2e_settings, log=_log)
    started = time.monotonic()
    stack.up(auth=True, metrics=True)
    print(f"\nha: up (auth, metrics, {len(stack.members())} containers) in {time.monotonic() - started:.0f} s")
    yield stack
    stack.down(volumes=True)


@dataclass(frozen=True)
class Api:
    """What a client of the stack needs for raw REST calls: base URL, CA, credentials."""

    url: str
    ca: str
    auth: tuple[str, str]

    @classmethod
    def of(cls, stack: Stack) -> Api:
        conn = stack.connection()
        assert conn.tracking_uri.startswith("https://") and conn.server_cert_path and conn.username
        return cls(conn.tracking_uri, conn.server_cert_path, (conn.username, conn.password or ""))

    def call(self, session: requests.Session, method: str, path: str, timeout: float = 30,
             **kwargs) -> requests.Response:
        return session.request(method, f"{self.url}{path}", auth=self.auth, verify=self.ca, timeout=timeout, **kwargs)

    def new_run(self, experiment: str) -> tuple[str, str]:
        """A run in ``experiment`` (made if missing): its id and its artifact path under mlflow-artifacts."""
        with requests.Session() as s:
            got = self.call(s, "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment})
            if got.status_code == 200:
                experiment_id = got.json()["experiment"]["experiment_id"]
            else:
                made = self.call(s, "POST", "/api/2.0/mlflow/experiments/create", json={"name": experiment})
                made.raise_for_status()
                experiment_id = made.json()["experiment_id"]
            created = self.call(s, "POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id})
            created.raise_for_status()
            info = created.json()["run"]["info"]
        root = info["artifact_uri"]
        assert root.startswith("mlflow-artifacts:/"), root
        return info["run_id"], root[len("mlflow-artifacts:/"):].lstrip("/")


def _load(api: Api, run_id: str, artifacts: str, stop, queue, progress) -> None:
    """One client process until ``stop`` is set: a log-batch of BATCH metrics per call, and every tenth call an
    artifact upload (PUT, through the artifacts pool). Reports what was acknowledged and every failure."""
    acked_steps, uploaded, failures = [], [], []
    step = 0
    with requests.Session() as session:
        while not stop.is_set() and step < 100_000:
            metrics = [{"key": f"m{i}", "value": float(step), "timestamp": int(time.time() * 1000), "step": step}
                       for i in range(BATCH)]
            try:
                response = api.call(session, "POST", "/api/2.0/mlflow/runs/log-batch",
                                    json={"run_id": run_id, "metrics": metrics})
                if response.status_code == 200:
                    acked_steps.append(step)
                    with progress.get_lock():
                        progress.value += 1
                else:
                    failures.append(f"log-batch {step}: HTTP {response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                failures.append(f"log-batch {step}: {type(exc).__name__}: {exc}"[:300])
            if step % 10 == 0:
                name = f"{artifacts}/load/{step}.txt"
                try:
                    response = api.call(session, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{name}",
                                        data=f"step {step} of {run_id}".encode())
                    if response.status_code == 200:
                        uploaded.append(name)
                    else:
                        failures.append(f"upload {step}: HTTP {response.status_code} {response.text[:200]}")
                except requests.RequestException as exc:
                    failures.append(f"upload {step}: {type(exc).__name__}: {exc}"[:300])
            step += 1
    queue.put((run_id, acked_steps, uploaded, failures))


@dataclass
class Outcome:
    acked: int  # metric rows acknowledged
    stored: int  # metric rows in PostgreSQL for the load's runs
    uploads: list[str]  # artifact paths acknowledged
    failures: list[str]
    seconds: float
    # Each call's rows are its own: (run, step) is unique to one call of one client (no client retries), so a
    # call's rows are checked one by one. Acknowledged calls with fewer than BATCH rows stored (a lost write) or
    # any call with more (a duplicate); calls whose rows are stored though the client saw a failure (the
    # outcome of a call cut by a fault is unknown to its client: allowed, and counted).
    lost: list[str]
    duplicated: list[str]
    stored_unacked: int


def report(what: str, result: Outcome, details: str) -> None:
    """What a fault test saw, for `pytest -s` and docs/reliability.md: the load's counts, ``details``, and the
    first failures."""
    print(f"\n{what}: {WORKERS} clients {result.seconds:.0f} s, {result.acked} metric rows acknowledged, "
          f"{result.stored} stored, {len(result.lost)} lost, {len(result.duplicated)} duplicated; "
          f"{len(result.failures)} failed calls, {len(result.uploads)} uploads; {details}")
    for failure in result.failures[:5]:
        print(f"  {failure}")


class Running(list):
    """What ``load`` yields: its Outcome, appended once the block is over; meanwhile, its calls acknowledged."""

    def __init__(self, progress) -> None:
        super().__init__()
        self.progress = progress

    @property
    def acknowledged(self) -> int:
        return self.progress.value


@contextmanager
def load(stack: Stack, label: str, workers: int = WORKERS) -> Iterator[Running]:
    """``workers`` client processes logging through the load balancer for the block; the outcome is appended to the
    yielded list once they have stopped and the stored rows are counted."""
    api = Api.of(stack)
    runs = [api.new_run(f"ha-{label}") for _ in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    stop, queue, progress = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
    procs = [ctx.Process(target=_load, args=(api, run_id, artifacts, stop, queue, progress))
             for run_id, artifacts in runs]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    result = Running(progress)

    def calls_beyond(count: int, timeout: float) -> None:
        """Wait until the clients have had ``count`` more calls acknowledged (they log before and after a fault)."""
        target, deadline = progress.value + count, time.monotonic() + timeout
        while progress.value < target and time.monotonic() < deadline:
            time.sleep(0.2)
        assert progress.value >= target, f"the load made {progress.value} calls, not {target}, in {timeout:.0f} s"

    try:
        calls_beyond(4 * workers, timeout=120)
        yield result
        calls_beyond(4 * workers, timeout=120)
    finally:
        stop.set()
        reports = [queue.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
    seconds = time.monotonic() - started
    env = stack.env()
    ids = ",".join(f"'{run_id}'" for run_id, _ in runs)
    rows = stack.compose().exec(DATABASE_SERVICE, ["psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"], "-tA",
                                                   "-F", " ", "-c", "SELECT run_uuid, step, count(*) FROM metrics "
                                                   f"WHERE run_uuid IN ({ids}) GROUP BY run_uuid, step"])
    stored = {(run_id, int(step)): int(count) for run_id, step, count in (line.split() for line in rows.splitlines())}
    acked = {(r[0], step) for r in reports for step in r[1]}
    result.append(Outcome(acked=len(acked) * BATCH, stored=sum(stored.values()),
                          uploads=[path for r in reports for path in r[2]],
                          failures=[f for r in reports for f in r[3]], seconds=seconds,
                          lost=[f"{key}: {stored.get(key, 0)} rows" for key in sorted(acked)
                                if stored.get(key, 0) < BATCH],
                          duplicated=[f"{key}: {count} rows" for key, count in sorted(stored.items()) if count > BATCH],
                          stored_unacked=len(set(stored) - acked)))


def retries(stack: Stack) -> dict[str, int]:
    """HAProxy's counters over the replicas' backends: requests retried, and sent to another replica."""
    out = stack.compose().exec("lb", ["curl", "-fsS", "http://127.0.0.1:8404/stats;csv"], timeout=30)
    import csv

    rows = [r for r in csv.DictReader(out.lstrip("# ").splitlines()) if r["svname"] == "BACKEND"]
    return {"retried": sum(int(r["wretr"] or 0) for r in rows),
            "redispatched": sum(int(r["wredis"] or 0) for r in rows)}


def put(api: Api, directory: str, run_id: str, count: int, timeout: float = 30) -> tuple[list[str], list[str]]:
    """``count`` small artifacts uploaded through the load balancer into ``directory``, one call each (``timeout``
    s) and no retry: the paths acknowledged, and the calls refused (with why). :func:`check_downloads` reads them
    back."""
    done, refused = [], []
    with requests.Session() as session:
        for step in range(count):
            path = f"{directory}/{step}.txt"
            try:
                response = api.call(session, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=timeout,
                                    data=f"step {step} of {run_id}".encode())
            except requests.RequestException as exc:
                refused.append(f"{path}: {type(exc).__name__}")
                continue
            (done if response.status_code == 200 else refused).append(
                path if response.status_code == 200 else f"{path}: HTTP {response.status_code}")
    return done, refused


@dataclass
class Recovered:
    seconds: float  # until an upload was acknowledged again
    after: list[str]  # the uploads acknowledged after that (of AFTER)
    failed: list[str]  # ... and those refused
    missing: list[str]  # acknowledged uploads (the earlier ones too) that do not download with their content

    def report(self, what: str, details: str) -> None:
        print(f"\n{what}: {details}; uploads acknowledged again {self.seconds:.1f} s after that, then "
              f"{len(self.after)}/{AFTER}; {len(self.missing)} acknowledged not downloadable")


AFTER = 20  # uploads once the stack takes them again


def recovery(stack: Stack, api: Api, artifacts: str, run_id: str, earlier: list[str], timeout: float) -> Recovered:
    """After an S3 outage: one upload a second until one is acknowledged (within ``timeout`` s), then AFTER more;
    then every acknowledged upload, ``earlier`` ones included, downloaded and compared."""
    started, resumed = time.monotonic(), []
    while not resumed:
        assert time.monotonic() - started < timeout, f"no upload acknowledged within {timeout:.0f} s"
        resumed, _ = put(api, f"{artifacts}/resume/{int(time.monotonic() - started)}", run_id, 1)
        if not resumed:
            time.sleep(1)
    seconds = time.monotonic() - started
    after, failed = put(api, f"{artifacts}/after", run_id, AFTER)
    return Recovered(seconds, after, failed, check_downloads(stack, earlier + resumed + after))


def check_downloads(stack: Stack, paths: list[str]) -> list[str]:
    """Every path downloads through the load balancer with the content it was uploaded with; the failures."""
    api = Api.of(stack)
    failed = []
    with requests.Session() as session:
        for path in paths:
            got = api.call(session, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{path}")
            step = path.rsplit("/", 1)[-1].removesuffix(".txt")
            if got.status_code != 200 or not got.content.startswith(f"step {step} of ".encode()):
                failed.append(f"{path}: HTTP {got.status_code} {got.content[:80]!r}")
    return failed


def test_status_shows_every_replica_with_its_health_and_role(stack):
    nodes = faults.wait_roles(stack, faults.healthy_pair, 120)
    members = {m.name: m for m in stack.members()}
    for node, role in nodes.items():
        assert members[node].role == f"PostgreSQL node ({role})" and members[node].state.health == "healthy"
    for replicas in HA.replicas:
        for number in (1, 2):
            member = members[f"{replicas.service} #{number}"]
            assert member.role == f"{replicas.role} (lb: UP)" and member.state.health == "healthy", member
    assert members["lb"].role == "load balancer (TLS)" and members["pgbouncer"].role == "connection pooler"
    assert {m.state.health for m in members.values() if m.role != "one-shot"} == {"healthy"}


def test_prometheus_scrapes_every_replica_through_the_admin(stack):
    """The metrics profile on a replicated stack: one target per tracking and artifacts replica (Prometheus finds
    them by DNS, as HAProxy does), each scraped with the admin's credentials and up."""
    values = stack.env()
    replicas = sum(int(values.get(r.variable) or r.default) for r in stack.topology.replicas)
    assert replicas == 4
    assert check_targets(stack, timeout=30) == replicas


def test_a_plain_mlflow_client_validates_the_stacks_certificate(stack, tmp_path):
    """MLFLOW_TRACKING_SERVER_CERT_PATH (what `mlflowkit env ha` prints) is all a plain client needs; without
    it, the certificate is refused."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_", "REQUESTS_"))}
    env.update(stack.connection().environ())
    probe = "import mlflow; print(len(mlflow.search_experiments()), 'experiments over', mlflow.get_tracking_uri())"
    ok = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                        cwd=tmp_path)
    assert ok.returncode == 0 and "experiments over https://127.0.0.1:" in ok.stdout, ok.stderr[-2000:]
    del env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    refused = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr[-2000:]


def test_a_user_made_through_one_replica_logs_in_through_another(stack):
    """One users database and one Flask secret: asked of each tracking replica directly, inside the stack."""
    env = stack.env()
    admin = f"{env['MLFLOW_AUTH_ADMIN_USERNAME']}:{env['MLFLOW_AUTH_ADMIN_PASSWORD']}"

    def curl(number: int, *args: str) -> str:
        return run(["docker", "exec", faults.container(stack, "mlflow", number), "curl", "-sS", "-o", "/dev/null", "-w",
                    "%{http_code}", "-H", "Host: lb:8443", *args], timeout=60).stdout

    made = curl(1, "-u", admin, "-X", "POST", "-H", "Content-Type: application/json",
                "--data", '{"username": "alice", "password": "alice-password-123"}',
                "http://127.0.0.1:5000/api/2.0/mlflow/users/create")
    assert made == "200", made
    search = "http://127.0.0.1:5000/api/2.0/mlflow/experiments/search?max_results=1"
    assert curl(2, "-u", "alice:alice-password-123", search) == "200"
    assert curl(2, "-u", "alice:wrong-password", search) == "401"
    assert curl(2, search) == "401"
    api = Api.of(stack)  # ... and through the load balancer
    assert requests.get(f"{api.url}/api/2.0/mlflow/experiments/search?max_results=1", verify=api.ca, timeout=30,
                        auth=("alice", "alice-password-123")).status_code == 200


def test_backup_then_restore_puts_back_every_row_artifact_and_user(stack, tmp_path):
    """`mlflowkit backup` of the running stack (its own run, metrics and artifact, carol, and the user of the test
    above), then a bad day after it: an experiment made, carol's password changed, and .env's admin password
    changed. `restore --force` puts the snapshot back through the database's router and the S3 one-shot, and
    verifies counts, checksums and users itself. The later experiment is gone, carol's old password works again,
    and the stack's admin has .env's new password (the restored users database had the old one)."""
    from mlflowkit import backup, envfile

    api = Api.of(stack)

    def status(auth: tuple[str, str], path: str = "experiments/search", **params: str) -> int:
        return requests.get(f"{api.url}/api/2.0/mlflow/{path}", params={"max_results": "1", **params}, auth=auth,
                            verify=api.ca, timeout=30).status_code

    run_id, artifacts = api.new_run("ha-backup")
    with requests.Session() as session:
        for method, path, body in (
                ("POST", "mlflow/users/create", {"username": "carol", "password": "carol-pass-1"}),
                ("POST", "mlflow/runs/log-batch", {"run_id": run_id, "metrics": [
                    {"key": "loss", "value": 0.5, "timestamp": 0, "step": step} for step in range(3)]})):
            made = api.call(session, method, f"/api/2.0/{path}", json=body)
            assert made.status_code == 200, made.text
        assert api.call(session, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{artifacts}/kept.txt",
                        data=b"kept by the backup").status_code == 200
    started = time.monotonic()
    manifest = backup.backup(stack, tmp_path / "snapshot", _log)
    took = time.monotonic() - started
    assert manifest.counts["runs"] >= 1 and manifest.counts["metrics"] >= 3, manifest.counts
    assert f"{artifacts}/kept.txt" in manifest.artifacts
    assert list(manifest.auth) == [DATABASE_SERVICE] and manifest.auth[DATABASE_SERVICE] >= 2  # the admin, carol

    with requests.Session() as session:
        for method, path, body in (
                ("POST", "experiments/create", {"name": "after-the-backup"}),
                ("PATCH", "users/update-password", {"username": "carol", "password": "carol-pass-2"})):
            assert api.call(session, method, f"/api/2.0/mlflow/{path}", json=body).status_code == 200
    old_admin = api.auth
    envfile.set_value(stack.env_file, "MLFLOW_AUTH_ADMIN_PASSWORD", "the-admins-new-password-after-a-leak")
    started = time.monotonic()
    backup.restore(stack, tmp_path / "snapshot", _log, force=True)  # raises unless counts, sha256s, users equal
    restored = time.monotonic() - started
    api = Api.of(stack)
    print(f"\nbackup of ha: {manifest.counts['runs']} runs, {manifest.counts['metrics']} metric points, "
          f"{len(manifest.artifacts)} artifacts, {manifest.auth[DATABASE_SERVICE]} users in {took:.1f} s; restore "
          f"(--force, verified) in {restored:.1f} s")
    assert status(api.auth, "experiments/get-by-name", experiment_name="after-the-backup") == 404
    assert (status(("carol", "carol-pass-1")), status(("carol", "carol-pass-2"))) == (200, 401)
    assert (status(api.auth), status(old_admin)) == (200, 401)  # api.auth: .env's new password


def test_killed_tracking_replica_under_load_fails_no_call_and_loses_no_write(stack):
    before = retries(stack)
    victim = faults.container(stack, "mlflow", 1)
    with load(stack, "kill") as outcome:
        restarts = faults.restart_count(victim)
        faults.crash(victim)
        killed = time.monotonic()
        faults.wait_restarted(victim, restarts, 60)
        faults.wait_in_pool(stack, "mlflow #1", 120)
        back = time.monotonic() - killed
    result, after = outcome[0], retries(stack)
    print(f"\nkill a tracking replica: {WORKERS} clients {result.seconds:.0f} s, {result.acked} metric rows "
          f"acknowledged, {result.stored} stored, {len(result.uploads)} uploads, {len(result.failures)} failed calls; "
          f"HAProxy retried {after['retried'] - before['retried']}, redispatched "
          f"{after['redispatched'] - before['redispatched']}; replica back in the pool {back:.1f} s after the kill")
    assert time.monotonic() - killed < 180
    assert result.failures == []
    assert result.acked > 0 and result.stored == result.acked
    assert check_downloads(stack, result.uploads) == []


def test_one_tracking_replica_takes_more_writers_than_its_database_pool(stack):
    """Replica #2 stopped, so replica #1 takes every writer: more at once than its pool's connections
    (MLFLOW_DB_POOL_SIZE + MLFLOW_DB_MAX_OVERFLOW), each log-batch needing two of them. Without the image's session
    gate (mlflowkit_server.sessions) the pool ran dry: calls waited 30 s and failed (the bench's 2 rows/s)."""
    env, pooling = stack.env(), HA.pooling
    assert pooling is not None
    writers = 8
    assert writers > sum(int(env.get(name, default)) for name, default in (pooling.pool_size, pooling.max_overflow))
    second = faults.container(stack, "mlflow", 2)
    faults.stop(second, grace=10)
    try:
        faults.wait_out_of_pool(stack, "mlflow #2", 30)
        with load(stack, "one-replica", workers=writers) as outcome:
            began = time.monotonic()
            while outcome.acknowledged < 25 * writers and time.monotonic() - began < 60:
                time.sleep(0.5)
    finally:
        faults.start(second)
        faults.wait_in_pool(stack, "mlflow #2", 120)
    result = outcome[0]
    print(f"\none tracking replica, {writers} writers: {result.seconds:.0f} s, {result.acked} metric rows "
          f"acknowledged ({result.acked / result.seconds:.0f}/s), {result.stored} stored, "
          f"{len(result.failures)} failed calls")
    assert result.failures == []
    assert result.acked > 0 and result.stored == result.acked and result.lost == []


def test_rolling_restart_of_every_replica_under_load_fails_no_call(stack):
    """Each replica stopped (SIGTERM, 10 s grace), seen out of the pool by `mlflowkit status`, started, and back in
    the pool before the next: how an upgrade rolls out."""
    timings = []
    with load(stack, "rolling") as outcome:
        for replicas in HA.replicas:
            for number in (1, 2):
                name, started = f"{replicas.service} #{number}", time.monotonic()
                target = faults.container(stack, replicas.service, number)
                faults.stop(target, grace=10)
                out = faults.wait_out_of_pool(stack, name, 30)
                assert out.state.state == "exited" and out.role.endswith("(lb: not in its pool)"), out
                faults.start(target)
                faults.wait_in_pool(stack, name, 120)
                timings.append(time.monotonic() - started)
    result = outcome[0]
    print(f"\nrolling restart of {len(timings)} replicas: {WORKERS} clients {result.seconds:.0f} s, "
          f"{result.acked} rows acknowledged, {result.stored} stored, {len(result.uploads)} uploads, "
          f"{len(result.failures)} failed calls; each replica stopped and back in the pool in "
          f"{min(timings):.1f}-{max(timings):.1f} s")
    assert result.failures == []
    assert result.acked > 0 and result.stored == result.acked
    assert check_downloads(stack, result.uploads) == []


def test_losing_one_s3_volume_server_loses_no_artifact_and_uploads_go_on(stack):
    api = Api.of(stack)
    run_id, artifacts = api.new_run("ha-volume")
    before, refused = put(api, f"{artifacts}/before", run_id, 30)
    assert refused == []
    volumes = faults.volume_servers(HA)
    assert len(volumes) == 3, volumes  # every file on two of them: one may be lost
    lost = faults.container(stack, volumes[1])
    faults.kill(lost)  # a deliberate stop: it stays down for the test
    killed = time.monotonic()
    try:
        missing = check_downloads(stack, before)
        after, failed = put(api, f"{artifacts}/after", run_id, 30)
        seconds = time.monotonic() - killed
        readable = check_downloads(stack, after)
    finally:
        faults.start(lost)
    print(f"\nlose an S3 volume server: {len(before) - len(missing)}/{len(before)} earlier artifacts downloaded, "
          f"{len(after)}/30 new uploads accepted ({len(failed)} refused), all within {seconds:.1f} s of the kill")
    assert missing == [] and failed == [] and readable == []


def test_a_crashed_s3_filer_comes_back_and_loses_no_acknowledged_artifact(stack):
    """SIGKILL of the filer and its S3 gateway (`s3`: one process, not yet highly available) from the host; the
    restart policy brings it back on its volume, which holds the filer's metadata. Uploads tried right after the
    crash are counted, not asserted (no client retry); every artifact acknowledged before, during or after it
    downloads with its content, and uploads go on once it is back."""
    api = Api.of(stack)
    run_id, artifacts = api.new_run("ha-filer")
    before, refused = put(api, f"{artifacts}/before", run_id, 20)
    assert refused == []
    victim = faults.container(stack, "s3")
    restarts = faults.restart_count(victim)
    faults.crash(victim)
    crashed = time.monotonic()
    during, refused = put(api, f"{artifacts}/during", run_id, 5)
    faults.wait_restarted(victim, restarts, 60)
    faults.wait_healthy(stack, "s3", 120)
    healthy = time.monotonic() - crashed
    back = recovery(stack, api, artifacts, run_id, before + during, 60)
    back.report("crash the S3 filer", f"right after the crash {len(during)}/5 uploads acknowledged "
                f"({'; '.join(refused[:2]) or 'none refused'}); healthy again {healthy:.1f} s after the crash")
    assert back.failed == [] and back.missing == []


def test_with_the_s3_master_down_artifacts_download_and_uploads_resume_after(stack):
    """`docker kill` of the SeaweedFS master (one: not yet highly available) for ~15 s, then started. While it is
    down the filer still knows where each file's volume is; counted: downloads of what was there before, and two
    uploads (which need the master to assign a file id; 6 s each at most). Every acknowledged upload downloads
    afterwards, and uploads go on once the volume servers have registered again."""
    api = Api.of(stack)
    run_id, artifacts = api.new_run("ha-master")
    before, refused = put(api, f"{artifacts}/before", run_id, 20)
    assert refused == []
    victim = faults.container(stack, "s3-master")
    faults.kill(victim)
    killed = time.monotonic()
    try:
        unreadable = check_downloads(stack, before)
        during, refused = put(api, f"{artifacts}/during", run_id, 2, timeout=6)
        time.sleep(max(0.0, 15 - (time.monotonic() - killed)))
    finally:
        faults.start(victim)
    started = time.monotonic()
    healthy = faults.wait_healthy(stack, "s3-master", 120)
    back = recovery(stack, api, artifacts, run_id, before + during, 90)
    back.report(f"S3 master down {started - killed:.0f} s", f"{len(before) - len(unreadable)}/{len(before)} earlier "
                f"artifacts downloaded meanwhile, {len(during)}/2 uploads acknowledged "
                f"({'; '.join(refused[:2]) or 'none refused'}); healthy {healthy:.1f} s after its start")
    assert back.failed == [] and back.missing == []


def test_a_stalled_database_holds_calls_instead_of_failing_them(stack):
    """`docker pause` of the Patroni leader for STALL s under the load (under Patroni's ttl: no failover). The router
    takes the node out after two failed checks and cuts its sessions: the calls in flight then fail, at most one a
    client. Every call begun later waits for the database (the image's MLFLOWKIT_DB_WAIT_SECONDS) and succeeds once
    the node answers again. Without that wait, PgBouncer failed such calls at once until it could log in again (42,
    54 and 49 of 600-700 in benchmarks/results/20261127T1620Z-db-wait-ab/; 57 in this test)."""
    roles = faults.wait_roles(stack, faults.healthy_pair, 120)
    leader = faults.leader(roles)
    with load(stack, "stall") as outcome:
        before = outcome.acknowledged
        with faults.paused(faults.container(stack, leader)):
            time.sleep(STALL)
        during = outcome.acknowledged - before
    result = outcome[0]
    report(f"stall the PostgreSQL leader ({leader}) {STALL:.0f} s", result, f"{during} calls during the stall")
    assert result.lost == [] and result.duplicated == []
    assert len(result.failures) <= WORKERS, result.failures[:5]  # only the calls in flight when it stalled


def test_losing_the_etcd_leader_under_load_keeps_the_database_leader_and_fails_no_call(stack):
    """`docker kill` of the etcd member that leads the consensus (a deliberate stop) for ETCD_OUT s under the load:
    the two left elect a leader (two of three are a quorum), Patroni renews its leader key through them, and the
    PostgreSQL leader stays leader. Then the member is started and rejoins."""
    roles = faults.wait_roles(stack, faults.healthy_pair, 120)
    member = faults.consensus_leader(stack)
    victim = faults.container(stack, member)
    with load(stack, "etcd-member") as outcome:
        before = outcome.acknowledged
        faults.kill(victim)
        try:
            time.sleep(ETCD_OUT)
            during, successor = faults.database_roles(stack), faults.consensus_leader(stack)
        finally:
            faults.start(victim)
        calls = outcome.acknowledged - before
        back = faults.wait_healthy(stack, member, 120)
    after = faults.wait_roles(stack, faults.healthy_pair, 120)
    result = outcome[0]
    report(f"kill the etcd leader ({member}) for {ETCD_OUT:.0f} s", result,
           f"{successor} led; {calls} calls while it was out; PostgreSQL {during} while it was out; {member} healthy "
           f"again {back:.1f} s after its start")
    assert successor != member
    assert during == roles and after == roles  # no failover, no demotion
    assert result.failures == []
    assert result.acked > 0 and result.stored == result.acked and result.lost == []


def test_with_every_etcd_member_stalled_the_database_leader_stays_and_writes_go_on(stack):
    """`docker pause` of all three etcd members for ETCD_OUT s under the load: Patroni cannot renew its leader key,
    which expires (ttl 15 s). With failsafe_mode (the stack's patroni.yml) the leader stays leader while the other
    node answers it over Patroni's REST API; without it, the leader demotes itself and no write is acknowledged
    until etcd is back (the calls wait for the database, so they need not fail within the outage:
    benchmarks/results/20261127T1905Z-etcd-failsafe-off/). So writes are counted in the outage's last seconds,
    past the ttl."""
    roles = faults.wait_roles(stack, faults.healthy_pair, 120)
    members = [faults.container(stack, member) for member in HA.patroni.consensus]
    with load(stack, "etcd-gone") as outcome, ExitStack() as stalled:
        for member in members:
            stalled.enter_context(faults.paused(member))
        time.sleep(ETCD_OUT - 4)
        late = outcome.acknowledged
        time.sleep(4)
        late = outcome.acknowledged - late
    after = faults.wait_roles(stack, faults.healthy_pair, 120)
    result = outcome[0]
    report(f"stall every etcd member {ETCD_OUT:.0f} s", result,
           f"{late} calls in the outage's last 4 s; PostgreSQL {after} after it")
    assert late >= WORKERS, "no writes past the leader key's ttl: the leader was demoted"
    assert after == roles  # no failover, no demotion
    assert result.failures == []
    assert result.acked > 0 and result.stored == result.acked and result.lost == []


def test_pgbouncer_retries_a_failed_server_login_every_second(stack):
    """PgBouncer's running configuration: server_login_retry 1 s, not its default 15 s, which could keep writes back
    15 s past a failover (benchmarks/results/20261127T1540Z-pgbouncer-login-retry-ab/)."""
    shown = stack.compose().exec("pgbouncer", ["sh", "-c", 'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -p 6432 '
                                               '-U "$POSTGRES_USER" -d pgbouncer -tA -c "SHOW CONFIG"'], timeout=30)
    config = {fields[0]: fields[1:] for fields in (line.split("|") for line in shown.splitlines()) if len(fields) > 2}
    assert config["server_login_retry"][:2] == ["1", "15"]  # (value, PgBouncer's default)


def test_killed_postgresql_leader_under_load_fails_over_and_loses_no_acknowledged_write(stack):
    """`docker kill` of the Patroni leader (a deliberate stop: it stays down until started) under the load: its key
    in etcd expires, the synchronous replica is promoted, the router sends PgBouncer's new connections there.
    Calls cut by the failover fail (counted, not asserted: the clients do not retry); every acknowledged one is
    stored, once. Then the killed node is started and rejoins as a replica."""
    roles = faults.wait_roles(stack, faults.healthy_pair, 120)
    leader = faults.leader(roles)
    replica = next(node for node in roles if node != leader)
    victim = faults.container(stack, leader)
    with load(stack, "failover") as outcome:
        at_kill = outcome.acknowledged
        faults.kill(victim)
        killed = time.monotonic()
        faults.wait_roles(stack, lambda roles: roles.get(replica) == "leader", 120)
        promoted = time.monotonic() - killed
        # More calls acknowledged than were in flight at the kill (one per client): writes go on after it.
        while outcome.acknowledged <= at_kill + WORKERS:
            assert time.monotonic() - killed < 180, f"writes did not resume within 180 s of the kill ({at_kill})"
            time.sleep(0.2)
        resumed = time.monotonic() - killed
        faults.start(victim)
        started = time.monotonic()
        rejoined = faults.wait_roles(stack, lambda roles: roles.get(leader) in ("replica", "sync replica"), 180)
        back = time.monotonic() - started
    result = outcome[0]
    report(f"kill the PostgreSQL leader ({leader})", result,
           f"{result.stored_unacked} calls stored though their client saw a failure; {replica} leader "
           f"{promoted:.1f} s after the kill, writes resumed {resumed:.1f} s after it; {leader} back as "
           f"{rejoined[leader]} {back:.1f} s after its start")
    assert result.lost == [] and result.duplicated == []
    assert result.acked > 0 and result.stored >= result.acked
    assert check_downloads(stack, result.uploads) == []


def test_up_refuses_a_stack_over_its_connection_budget(make_stack, e2e_settings):
    """Checked before anything starts: 8 tracking replicas x 8 workers x 3 pools x 5 connections, plus 2 artifacts
    replicas x 8 workers x 1 pool x 5, exceed PgBouncer's 400."""
    import dataclasses

    settings = dataclasses.replace(e2e_settings, project_prefix=f"{e2e_settings.project_prefix}-budget")
    over = make_stack(HA, settings, MLFLOW_REPLICAS="8", MLFLOW_WORKERS="8")
    with pytest.raises(KitError) as info:
        over.up(auth=True)
    assert "connection budget exceeded: the MLflow servers may open 1040 database connections" in str(info.value)
    assert "PGBOUNCER_MAX_CLIENT_CONN" in (info.value.hint or "")
    assert over.states() == []


def test_the_ha_images_run_as_non_root_and_hold_no_secret(stack):
    """What test_stacks checks of the shared images, for the images only this topology runs (Patroni's holds
    PostgreSQL, etcd and HAProxy)."""
    import json

    env = stack.env()
    needles = [env[key].encode() for key in env if any(w in key for w in ("PASSWORD", "SECRET", "ACCESS_KEY"))]
    own = sorted(images.names(stack.settings, "haproxy", "pgbouncer", "patroni"))  # built with the others
    assert own == ["mlflowkit/haproxy:2.6", "mlflowkit/patroni:3.0", "mlflowkit/pgbouncer:1.18"]
    for image in own:
        config = json.loads(run(["docker", "image", "inspect", image], timeout=30).stdout)[0]["Config"]
        assert config.get("User") not in ("", "root", "0"), f"{image} runs as root"
        assert images.scan(image, needles) == [], image
