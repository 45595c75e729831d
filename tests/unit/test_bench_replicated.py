"""The bench's replicated sections without an engine: reading a load's timeline, the figures' labels, and the
load generator's timeline / ready / stop controls (against a local SQLite store)."""

from __future__ import annotations

import time
from contextlib import contextmanager

from mlflowkit.bench import load
from mlflowkit.bench.replicated import aggregate_mbps, failed_after, failing_time, pools_label, resumed_after
from mlflowkit.bench.run import FULL, QUICK, Bench
from mlflowkit.client import Connection
from mlflowkit.settings import Settings
from mlflowkit.topology import HA

# (start, end, ok): a call in flight at the kill (t=10) hangs until 14, calls begun after it succeed from 15
FAILOVER = [(8.0, 8.5, True), (9.5, 14.0, True), (10.5, 15.2, True), (15.3, 15.6, True), (15.7, 16.0, True)]
# a volume server lost at 10: two failures 10.2-10.9, the next success ends at 11.4; one more failure 12-12.5
GAP = [(9.0, 9.5, True), (10.2, 10.4, False), (10.5, 10.9, False), (11.0, 11.4, True), (12.0, 12.5, False),
       (12.6, 13.0, True)]


def test_writes_resume_when_a_call_begun_after_the_kill_is_acknowledged():
    assert resumed_after(FAILOVER, 10.0) == 15.2 - 10.0
    assert resumed_after(FAILOVER, 20.0) is None  # no call begun after it: not measured, not 0
    assert resumed_after([(10.5, 11.0, False)], 10.0) is None


def test_failing_time_spans_each_run_of_failures_to_the_next_success():
    assert failing_time(GAP, 10.0) == (11.4 - 10.2) + (13.0 - 12.0)
    assert failed_after(GAP, 10.0) == 3
    assert failing_time(FAILOVER, 10.0) == 0 and failed_after(FAILOVER, 10.0) == 0
    assert failing_time([(10.0, 10.5, True), (11.0, 12.0, False)], 10.0) == 1.0  # no success after it
    assert failing_time(GAP, 12.7) == 0  # only what ended after ``since`` counts
    assert failing_time([(9.0, 10.5, False), (10.6, 11.0, True)], 10.0) == 1.0  # counted from ``since``


def test_pool_labels_and_aggregate_throughput():
    tracking, artifacts = HA.replicas
    assert pools_label({tracking: 2, artifacts: 2}) == "2 tracking replicas + 2 artifacts replicas"
    assert pools_label({tracking: 1, artifacts: 1}) == "1 tracking replica + 1 artifacts replica"
    result = {"size": 1_000_000, "upload": {"count": 8, "slowest_s": 2.0}, "download": {"count": 0, "slowest_s": 0}}
    assert aggregate_mbps(result, "upload") == 4.0
    assert aggregate_mbps(result, "download") is None


def test_quick_leaves_the_faults_out_and_full_runs_them():
    assert FULL.faults and not QUICK.faults
    assert QUICK.pool_bytes * QUICK.pool_count * max(QUICK.concurrency) <= 4 << 20


def test_the_load_stops_on_its_stop_file_and_reports_ready_once_a_call_succeeded(tmp_path):
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    args = load.parser().parse_args(["http", "http://127.0.0.1:9/", "--duration", "60", "--stop-file", str(stop),
                                     "--ready-file", str(ready), "--timeline", "1"])
    begin = time.monotonic()
    assert load._going(args, begin, 0) and not load._going(args, begin, args.max_calls)
    timeline: list = []
    load._record(args, timeline, time.time(), False)
    assert not ready.exists() and len(timeline) == 1 and timeline[0][2] is False
    load._record(args, timeline, time.time(), True)
    assert ready.exists() and timeline[1][2] is True and timeline[1][0] <= timeline[1][1]
    stop.touch()
    assert not load._going(args, begin, 0)


def test_a_background_load_runs_through_the_block_and_returns_its_timeline(tmp_path):
    """The whole path: a forked generator of 2 clients logging to a SQLite store, started, flowing, stopped."""
    bench = Bench([], QUICK, Settings(home=str(tmp_path / "home")), log=lambda _: None, scratch=tmp_path)
    uri = f"sqlite:///{tmp_path}/store.db"
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).search_experiments()  # the store made once, before two clients would race to make it
    with bench.background("tracking", uri, "0", env={}, batch=2, procs=2, duration=120) as result:
        inside = time.time()
        time.sleep(0.5)
    assert result["errors"] == 0 and result["procs"] == 2 and result["rows"] == 2 * result["calls"] > 0
    timeline = result["timeline"]
    assert len(timeline) == result["calls"] and all(ok for _, _, ok in timeline)
    assert any(start >= inside for start, _, _ in timeline)  # the load flowed while the block ran ...
    assert result["seconds"] < 60  # ... and ended with it, not at its duration
    assert result["latencies"]["slowest_s"] > 0


class FakeBench:
    """What the sections use of a Bench: sizes, settings, log, add, load and background (canned results)."""

    def __init__(self, tmp_path, sizes=FULL) -> None:
        self.sizes, self.settings, self.logged = sizes, Settings(home=str(tmp_path), up_timeout=5), []
        self.figures: list = []
        self.loads: list = []

    def log(self, message: str) -> None:
        self.logged.append(message)

    def add(self, section, topology, case, value, unit, **kw) -> None:
        self.figures.append((section, case, value, unit, kw.get("limit")))

    def load(self, kind, *target, env=None, **options) -> dict:
        self.loads.append((kind, options))
        if kind == "tracking":
            return {"rows": 1000 * options["procs"], "seconds": 5.0, "errors": 0, "calls": 100}
        timing = {"count": options["count"] * options["procs"], "slowest_s": 2.0}
        return {"size": options["size"], "upload": timing, "download": timing, "errors": 0, "calls": 8}

    @contextmanager
    def background(self, kind, *target, env, **options):
        assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        result: dict = {}
        yield result
        now = time.time()
        result["timeline"] = [(now - 1, now - 0.5, True), (now - 0.4, now - 0.2, False), (now - 0.1, now, True)]


class FakeStack:
    topology = HA

    def __init__(self, env_file) -> None:
        self.env_file, self.ups = env_file, 0
        env_file.write_text("MLFLOW_REPLICAS=2\n")

    def env(self) -> dict:
        return dict(line.split("=", 1) for line in self.env_file.read_text().split())

    def connection(self):
        return Connection("https://127.0.0.1:1", server_cert_path="/ca.pem")

    def up(self) -> None:
        self.ups += 1


def test_the_sections_measure_n_then_the_faults_then_one_of_each(tmp_path, monkeypatch):
    from mlflowkit.bench import replicated, run

    calls = []
    monkeypatch.setattr(run, "experiment_id", lambda conn, name: "7")
    for name in ("wait_pool", "wait_in_pool", "wait_restarted", "kill", "start", "crash", "restart_count"):
        monkeypatch.setattr(replicated.faults, name, lambda *a, name=name, **k: calls.append(name) or 0)
    monkeypatch.setattr(replicated.faults, "container", lambda stack, service, number=1: f"{service}-{number}")
    roles = iter([{"postgres-1": "leader", "postgres-2": "sync replica"},
                  {"postgres-1": "leader", "postgres-2": "leader"}, {"postgres-1": "replica", "postgres-2": "leader"}])
    monkeypatch.setattr(replicated.faults, "wait_roles", lambda stack, wanted, timeout: next(roles))
    monkeypatch.setattr(replicated, "AFTER_PROMOTION", 0)
    monkeypatch.setattr(replicated, "VOLUME_WINDOW", 0)
    bench, stack = FakeBench(tmp_path), FakeStack(tmp_path / ".env")
    replicated.replicas(bench, stack)
    assert stack.ups == 1 and "MLFLOW_REPLICAS=1" in stack.env_file.read_text()
    assert "ARTIFACTS_REPLICAS=1" in stack.env_file.read_text()
    assert calls[0] == "wait_pool" and calls[-1] == "wait_pool" and "crash" in calls and calls.count("kill") == 2
    replicas = [f for f in bench.figures if f[0] == "replicas"]
    n = "2 tracking replicas + 2 artifacts replicas"
    one = "1 tracking replica + 1 artifacts replica"
    assert [f[1] for f in replicas] == [f"tracking, batch 10, 8 clients, {n}", f"tracking, batch 10, 8 clients, {one}",
                                        f"8 MiB uploads, 8 clients, {n}", f"8 MiB uploads, 8 clients, {one}",
                                        f"8 MiB downloads, 8 clients, {n}", f"8 MiB downloads, 8 clients, {one}"]
    assert replicas[0][2:] == (1600.0, "rows/s", 1600.0) and replicas[2][2] == 8 * 4 * 8 * 2 ** 20 / 2.0 / 1e6
    recovery = {f[1]: f[2] for f in bench.figures if f[0] == "recovery"}
    assert set(recovery) == {"tracking replica killed: back in the pool", "tracking replica killed: failed calls",
                             "PostgreSQL leader killed: replica promoted", "PostgreSQL leader killed: writes resumed",
                             "PostgreSQL leader killed: failed calls",
                             "PostgreSQL leader killed: back as a replica after its start",
                             "S3 volume server killed: downloads failing", "S3 volume server killed: failed downloads"}
    assert recovery["tracking replica killed: failed calls"] == 1  # the canned timeline's failure


def test_quick_runs_no_fault_and_one_replica_declared_measures_once(tmp_path, monkeypatch):
    from mlflowkit.bench import replicated, run

    monkeypatch.setattr(run, "experiment_id", lambda conn, name: "7")
    monkeypatch.setattr(replicated.faults, "wait_pool", lambda *a: 0)
    bench, stack = FakeBench(tmp_path, QUICK), FakeStack(tmp_path / ".env")
    stack.env_file.write_text("MLFLOW_REPLICAS=1\nARTIFACTS_REPLICAS=1\n")
    replicated.replicas(bench, stack)
    assert stack.ups == 0 and {f[0] for f in bench.figures} == {"replicas"} and len(bench.figures) == 3
    assert all(f[4] is None for f in bench.figures)


def test_a_load_with_failed_calls_gives_no_ratio(tmp_path):
    from mlflowkit.bench import replicated

    bench = FakeBench(tmp_path)
    good = {"procs": 8, "tracking": {"rows": 100, "seconds": 1.0, "errors": 0},
            "transfers": bench.load("artifacts", size=1, count=1, procs=1)}
    bad = {**good, "tracking": {"rows": 2, "seconds": 1.0, "errors": 4}}
    replicated._add_pools(bench, FakeStack(tmp_path / ".env"), {HA.replicas[0]: 2}, good, bad)
    limits = [f[4] for f in bench.figures if "2 tracking replicas" in f[1]]
    assert limits == [None, 5e-07, 5e-07]  # tracking: none (errors); transfers: the 1-replica figure (1 B in 2 s)
