"""`mlflowkit bench`: every selected topology, one at a time, under its own compose project and free ports.

Per topology: boot from fresh volumes (with its phases), idle memory, tracking throughput (once per backend),
artifact transfers (S3 topologies), the per-request floor (server topologies); then serving and the
defaults-vs-kit server settings once; for a replicated topology one replica vs N, and the time to recover from
each fault (:mod:`mlflowkit.bench.replicated`). Each figure carries the limit it is compared to, measured in the
same run.
Load generators are separate processes (:mod:`mlflowkit.bench.load`); traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlflowkit import envfile, images
from mlflowkit.bench import load, replicated
from mlflowkit.bench.report import Figure
from mlflowkit.docker import check_engine, run
from mlflowkit.errors import KitError
from mlflowkit.serving import free_port
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES, ArtifactMode, Backend

LOAD_SCRIPT = Path(load.__file__)
MULTIPART_OVERRIDE = Path(__file__).with_name("proxied-multipart.yaml")
MIB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does; every loop is bounded by these counts and durations."""

    duration: float = 5.0  # seconds per tracking / serving cell
    batches: tuple[int, ...] = (10, 500)
    concurrency: tuple[int, ...] = (1, 8)
    large_bytes: int = 100 * MIB
    huge_bytes: int = 1024 * MIB  # measured where the disk has room for it (see _disk_allows)
    large_count: int = 1
    small_count: int = 50  # 4 KiB log_artifact calls
    floor_count: int = 300
    serve_workers: tuple[int, ...] = (1, 2)
    tuning: bool = True  # MLflow's default server settings vs the kit's
    # Replicated topologies: each of max(concurrency) clients moves pool_count files of pool_bytes (1 vs N
    # replicas); faults: the recovery section, its download load pool_files of download_bytes per client.
    pool_bytes: int = 8 * MIB
    pool_count: int = 4
    faults: bool = True
    download_bytes: int = 256 * 1024
    download_files: int = 40
    cold_build: bool = False  # first rebuild every image without the layer cache, one at a time, timing each


FULL = Sizes()
QUICK = Sizes(duration=1.0, batches=(10,), concurrency=(1, 2), large_bytes=MIB, huge_bytes=0, large_count=1,
              small_count=3,
              floor_count=20, serve_workers=(1,), tuning=False, pool_bytes=MIB, pool_count=1, faults=False)

# The server settings compared by the tuning section, as .env values (None: the compose file's default).
# MLflow's default is 4 uvicorn workers; the kit's compose files run 1 (MLFLOW_WORKERS). uvicorn's multi-worker
# mode left Nagle on (~40 ms per kept-alive request, Kludex/uvicorn#3149) until the image turned it off
# (mlflowkit_server/nodelay.py): this section shows whether more workers now pay (docs/performance.md).
TUNING: dict[str, dict[str, str | None]] = {
    "4 workers (MLflow default)": {"MLFLOW_WORKERS": "4"},
    "2 workers": {"MLFLOW_WORKERS": "2"},
    "1 worker (kit)": {"MLFLOW_WORKERS": None},
}


class Bench:
    def __init__(self, names: list[str], sizes: Sizes, settings: Settings, log: Callable[[str], None],
                 scratch: Path) -> None:
        """``scratch``: an existing directory the caller removes afterwards (the stacks' home, the generators'
        working directory and marker files)."""
        self.topologies = [TOPOLOGIES[name] for name in names]
        self.sizes = sizes
        self.log = log
        self.scratch = scratch
        # Projects <prefix>-bench-<topology> (mlflowkit-bench-… by default): never a user's stack, and two runs
        # with their own MLFLOWKIT_PROJECT_PREFIX never take down each other's.
        self.settings = replace(settings, project_prefix=f"{settings.project_prefix}-bench", home=str(self.scratch))
        self.figures: list[Figure] = []
        self._backends_done: set[Backend] = set()
        self._hello_p50: dict[int, float] | None = None
        self._served = False
        self._tuned = False

    # --- the run --------------------------------------------------------------------------------------

    def run(self) -> list[Figure]:
        check_engine()
        if self.sizes.cold_build:
            self.cold_builds()
        images.ensure(self.settings, self.log)
        try:
            self.footprint_images()
            container_start = self.container_start()
            for topology in self.topologies:
                stack = Stack(topology, self.settings, log=self.log)
                try:
                    self.boot(stack, container_start)
                    self.idle_memory(stack)
                    if topology.backend not in self._backends_done:
                        self.tracking(stack)
                        self._backends_done.add(topology.backend)
                    if topology.has_tracking_server:
                        self.floor(stack)
                    if topology.uses_s3:
                        self.artifacts(stack)
                    if not self._served and topology.has_tracking_server:
                        self.serving(stack)
                        self._served = True
                    # Server settings, once a run: on the first single-server topology on PostgreSQL.
                    if (self.sizes.tuning and not self._tuned and topology.backend is Backend.POSTGRESQL
                            and not topology.replicas):
                        self.tuning(stack)
                        self._tuned = True
                    if topology.replicas:
                        replicated.replicas(self, stack)
                finally:
                    if stack.states() or stack.volumes():
                        stack.down(volumes=True)
        finally:
            self._stop_hello()
        return self.figures

    def add(self, section: str, topology: str, case: str, value: float | None, unit: str, **kw) -> None:
        figure = Figure(section, topology, case, None if value is None else round(value, 4), unit, **kw)
        self.figures.append(figure)
        ratio = f"  ({figure.ratio:.2f}× {figure.limit_name})" if figure.ratio is not None else ""
        shown = f"{figure.value:,.3f} {unit}" if figure.value is not None else f"n/a ({figure.note})"
        self.log(f"bench: {section:9} {topology:14} {case:32} {shown}{ratio}")

    # --- 1. boot --------------------------------------------------------------------------------------

    def container_start(self) -> float:
        """The limit for boot: start and finish one bare container of the MLflow image."""
        image = images.names(self.settings, "mlflow")[0]
        started = time.monotonic()
        run(["docker", "run", "--rm", "--entrypoint", "true", image], timeout=120)
        return time.monotonic() - started

    def boot(self, stack: Stack, container_start: float) -> None:
        name = stack.topology.name
        _seed_env(stack)
        if stack.states() or stack.volumes():
            stack.down(volumes=True)
        began = datetime.now(timezone.utc)
        started = time.monotonic()
        stack.up()
        total = time.monotonic() - started
        self.add("boot", name, "up --wait, total", total, "s", limit=container_start,
                 limit_name="one bare container")
        for phase, seconds in _phases(stack, began).items():
            self.add("boot", name, phase, seconds, "s")

    # --- 2. tracking ----------------------------------------------------------------------------------

    def tracking(self, stack: Stack) -> None:
        name, conn = stack.topology.name, stack.connection()
        experiment = experiment_id(conn, "bench-tracking")
        for batch in self.sizes.batches:
            for procs in self.sizes.concurrency:
                case = f"batch {batch}, {procs} client{'s' if procs > 1 else ''}"
                measured = self.load("tracking", conn.tracking_uri, experiment, env=conn.environ(),
                                      batch=batch, procs=procs, duration=self.sizes.duration)
                limit = self._store_limit(stack, experiment, batch, procs)
                self.add("tracking", name, case, measured["rows"] / measured["seconds"], "rows/s",
                         limit=limit, limit_name="same writes in-process, no HTTP" if limit else "",
                         note="" if limit else "the client is the store",
                         extra={"p50_ms": measured["latencies"]["p50_ms"], "errors": measured["errors"]})

    def _store_limit(self, stack: Stack, experiment: str, batch: int, procs: int) -> float | None:
        """The same log_batch calls through MLflow's store in-process: on the host for a file store, inside
        the server's container for PostgreSQL (not published); none for client-only topologies."""
        topology = stack.topology
        if not topology.has_tracking_server:
            return None
        args: dict[str, Any] = dict(batch=batch, procs=procs, duration=self.sizes.duration)
        if topology.backend is Backend.FILE:
            uri = topology.backend.local_uri(stack.env()["MLFLOW_DATA_DIR"])
            result = self.load("tracking", uri, experiment, env={"MLFLOW_ALLOW_FILE_STORE": "true"}, **args)
        else:
            result = self._load_in(stack, "mlflow", "tracking", "env:MLFLOW_BACKEND_STORE_URI", experiment, **args)
        return result["rows"] / result["seconds"]

    def floor(self, stack: Stack) -> None:
        """p50 of MLflow's /health vs a bare ASGI hello-world served by uvicorn from the same image, on a
        kept-alive connection (as MLflow's client does) and on a new connection per request."""
        count = self.sizes.floor_count
        if self._hello_p50 is None:
            url = self._start_hello()
            self._hello_p50 = {fresh: self.load("http", url, count=count, fresh=fresh)["latencies"]["p50_ms"]
                               for fresh in (0, 1)}
        ca = stack.ca_path()  # an https stack (ha): its own CA, as its clients have it
        env = {"REQUESTS_CA_BUNDLE": str(ca)} if ca else None
        for fresh, label in ((0, "kept-alive connection"), (1, "new connection each")):
            result = self.load("http", f"{stack.ui_url()}/health", env=env, count=count, fresh=fresh)
            self.add("floor", stack.topology.name, f"GET /health p50, {label}", result["latencies"]["p50_ms"],
                     "ms", limit=self._hello_p50[fresh], limit_name="bare ASGI hello-world")

    # --- 3. artifacts ---------------------------------------------------------------------------------

    def artifacts(self, stack: Stack) -> None:
        topology, conn = stack.topology, stack.connection()
        experiment = experiment_id(conn, "bench-artifacts")
        env, sizes = conn.environ(), self.sizes
        # One tracking server proxying S3 (the `mlflow` service): measured again from beside it, and with the
        # bench-only multipart override, which is written for that server and its S3 (a replicated topology keeps
        # S3 inside its cluster, behind a balancer).
        one_proxy = topology.artifact_mode is ArtifactMode.PROXIED and topology.balancer is None
        # Small files first: they also warm each path's one-time costs (connections, a server's first
        # /server-info), which a single large transfer would otherwise count as throughput.
        small = self.load("artifacts", experiment, env=env, size=4096, count=sizes.small_count)
        for direction in ("upload", "download"):
            self.add("artifacts", topology.name, f"4 KiB {direction}, one file per call", _mbps(small, direction),
                     "MB/s", extra={"errors": small["errors"]})
        for quantile in ("p50", "p99"):
            self.add("artifacts", topology.name, f"4 KiB log_artifact {quantile}",
                     small["upload"][f"{quantile}_ms"], "ms", extra={"errors": small["errors"]})
        for size in (sizes.large_bytes, sizes.huge_bytes):
            if not size:
                continue
            label = size_label(size)
            if not _disk_allows(size):
                self.add("artifacts", topology.name, f"{label} upload and download", None, "MB/s",
                         note=f"skipped: needs {4 * size // MIB:,} MiB free in /tmp and the engine's disk")
                continue
            large = self.load("artifacts", experiment, env=env, size=size, count=sizes.large_count)
            limit = self._s3_limit(stack, size, sizes.large_count)
            for direction in ("upload", "download"):
                self.add("artifacts", topology.name, f"{label} {direction}", _mbps(large, direction), "MB/s",
                         limit=_mbps(limit, direction), limit_name="boto3 straight to S3",
                         extra={"errors": large["errors"]})
            if one_proxy:
                self.proxy_alone(stack, experiment, size, limit)
        if one_proxy:
            self.proxied_multipart(stack)

    def proxy_alone(self, stack: Stack, experiment: str, size: int, limit: dict) -> None:
        """The same transfer by a client inside the server's container, to 127.0.0.1: the proxy's own cost,
        without the host's port forwarding, beside the same boto3 limit (measured in that container too)."""
        port = stack.topology.port("MLFLOW_PORT").container_port
        inside = self._load_in(stack, "mlflow", "artifacts", experiment, size=size, count=self.sizes.large_count,
                               env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
        for direction in ("upload", "download"):
            self.add("artifacts", stack.topology.name, f"{size_label(size)} {direction}, client beside the server",
                     _mbps(inside, direction), "MB/s", limit=_mbps(limit, direction),
                     limit_name="boto3 straight to S3", extra={"errors": inside["errors"]},
                     note="the MLflow client in the server's container: no port forwarding")

    def proxied_multipart(self, stack: Stack) -> None:
        """"Multipart on": MLflow's presigned multipart upload through the proxy. The kit's proxied stack
        switches it off (clients cannot reach its S3); a bench-only override (proxied-multipart.yaml) makes S3
        reachable at one URL for server and client, and the client opts in as MLflow requires."""
        set_env(stack, BENCH_S3_PORT=str(free_port()))
        variant = replace(stack.compose(), files=(stack.compose_file, MULTIPART_OVERRIDE))
        self.log("bench: proxied with presigned multipart uploads (bench-only override)")
        try:
            variant.up(timeout=self.settings.up_timeout, progress=False)
            conn, values, sizes = stack.connection(), stack.env(), self.sizes
            env = {**conn.environ(), "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true",
                   "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(min(sizes.large_bytes, 5 * MIB))}
            experiment = experiment_id(conn, "bench-artifacts-multipart")
            measured = self.load("artifacts", experiment, env=env, size=sizes.large_bytes, count=sizes.large_count)
            keys = {key: values[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
            limit = self.load("s3", f"http://127.0.0.1:{values['BENCH_S3_PORT']}", values.get("S3_BUCKET", "mlflow"),
                              env=keys, size=sizes.large_bytes, count=sizes.large_count)
            self.add("artifacts", stack.topology.name, f"{size_label(sizes.large_bytes)} upload, multipart on",
                     _mbps(measured, "upload"), "MB/s", limit=_mbps(limit, "upload"),
                     limit_name="boto3 straight to S3", extra={"errors": measured["errors"]},
                     note="bench-only variant: parts go from the client straight to S3 by presigned URL")
        finally:  # the stack as it was, for the sections after this one
            set_env(stack, BENCH_S3_PORT=None)
            stack.up()

    def _s3_limit(self, stack: Stack, size: int, count: int) -> dict:
        """boto3 upload_file/download_file to the stack's S3: from the host where clients reach S3 themselves,
        else from inside the container that proxies it (the proxy's own upstream leg)."""
        values = stack.env()
        bucket = values.get("S3_BUCKET", "mlflow")
        if stack.topology.client_needs_s3_credentials:
            conn = stack.connection()
            return self.load("s3", str(conn.s3_endpoint_url), bucket, env=conn.environ(), size=size, count=count)
        service = "artifacts" if stack.topology.artifact_mode is ArtifactMode.ARTIFACTS_SERVER else "mlflow"
        return self._load_in(stack, service, "s3", "env:MLFLOW_S3_ENDPOINT_URL", bucket, size=size, count=count)

    # --- 4. serving -----------------------------------------------------------------------------------

    def serving(self, stack: Stack) -> None:
        """The stack's serving service (the serving image's `mlflow models serve`) on a registered iris model,
        with each worker count: one client's latency and max(concurrency) clients' throughput, against the
        model's own predict in the serving container. Once: where one call's time goes."""
        uri, row = _register_model(stack.connection())
        body = json.dumps({"dataframe_split": row})
        set_env(stack, SERVE_MODEL_URI=uri)
        try:
            predict_ms = 0.0
            for workers in self.sizes.serve_workers:
                set_env(stack, SERVE_WORKERS=str(workers))
                with stack.serving() as served:
                    url = f"{served.url}/invocations"
                    if workers == self.sizes.serve_workers[0]:  # once: where one call's time goes
                        predict_ms = self.serving_breakdown(stack, uri, body, url)
                    single = self.load("invoke", url, body=body, procs=1, duration=self.sizes.duration)
                    for quantile in ("p50", "p99"):
                        self.add("serving", "any", f"1 row, 1 client, {workers} worker(s), {quantile}",
                                 single["latencies"][f"{quantile}_ms"], "ms", limit=predict_ms,
                                 limit_name="predict p50, no HTTP", extra={"errors": single["errors"]})
                    procs = max(self.sizes.concurrency)
                    saturated = self.load("invoke", url, body=body, procs=procs, duration=self.sizes.duration)
                    self.add("serving", "any", f"{procs} clients, {workers} worker(s)",
                             (saturated["calls"] - saturated["errors"]) / saturated["seconds"], "req/s",
                             limit=1000 / predict_ms, limit_name="predicts/s, 1 core, no HTTP",
                             extra={"errors": saturated["errors"]})
        finally:
            set_env(stack, SERVE_MODEL_URI=None, SERVE_WORKERS=None)

    def serving_breakdown(self, stack: Stack, uri: str, body: str, url: str) -> float:
        """p50 of one call, layer by layer: the model's predict and MLflow's scoring app called in-process
        (both inside the serving container), HTTP inside the container, HTTP through the published port (the
        engine's port forwarding). Returns the predict p50 in ms (the section's limit)."""
        service, count = stack.topology.serve_service, self.sizes.floor_count
        scoring = self._load_in(stack, service, "scoring", uri, body=body, count=count)
        port = stack.topology.port("SERVE_PORT").container_port
        inside = self._load_in(stack, service, "invoke", f"http://127.0.0.1:{port}/invocations", body=body,
                               max_calls=count, duration=self.sizes.duration)
        published = self.load("invoke", url, body=body, max_calls=count, duration=self.sizes.duration)
        predict_ms = scoring["predict"]["p50_ms"]
        for layer, p50 in (("model predict, in-process", predict_ms),
                           ("MLflow scoring app, in-process", scoring["latencies"]["p50_ms"]),
                           ("HTTP inside the container", inside["latencies"]["p50_ms"]),
                           ("HTTP through the published port", published["latencies"]["p50_ms"])):
            self.add("serving", "any", f"1 row p50: {layer}", p50, "ms", limit=predict_ms,
                     limit_name="predict p50, no HTTP")
        return predict_ms

    # --- 5. footprint ---------------------------------------------------------------------------------

    def cold_builds(self) -> None:
        """Every image built again without the layer cache (the base image present), one at a time: what a first
        `mlflowkit build` costs on this machine and network, image by image, and in all."""
        total = 0.0
        for service in images.services(self.settings):
            [image] = images.names(self.settings, service)
            started = time.monotonic()
            images.build(self.settings, self.log, [service], no_cache=True)
            took = time.monotonic() - started
            total += took
            self.add("footprint", "image", f"{image} cold build", took, "s")
        self.add("footprint", "image", "every image, cold build", total, "s")

    def footprint_images(self) -> None:
        for image in images.names(self.settings):
            size = int(run(["docker", "image", "inspect", "--format", "{{.Size}}", image], timeout=30).stdout)
            self.add("footprint", "image", image, size / 1e6, "MB")

    def idle_memory(self, stack: Stack, case: str = "idle memory, all containers") -> float:
        time.sleep(3)  # let start-up work settle
        used = _memory_mb(stack.project)
        self.add("footprint", stack.topology.name, case, used, "MB", limit=_machine_memory_mb(),
                 limit_name="machine memory")
        return used

    # --- 6. defaults vs tuned -------------------------------------------------------------------------

    def tuning(self, stack: Stack) -> None:
        """The tracking benchmark with MLflow's default server settings and with the kit's, side by side."""
        conn = stack.connection()
        experiment = experiment_id(conn, "bench-tuning")
        try:
            for label, values in TUNING.items():
                set_env(stack, **values)
                stack.up()  # recreates the server with the new command
                for procs in (1, max(self.sizes.concurrency)):
                    result = self.load("tracking", conn.tracking_uri, experiment, env=conn.environ(), batch=10,
                                        procs=procs, duration=self.sizes.duration)
                    self.add("tuning", stack.topology.name, f"{label}, batch 10, {procs} clients",
                             result["rows"] / result["seconds"], "rows/s",
                             extra={"p50_ms": result["latencies"]["p50_ms"], "errors": result["errors"]})
                self.add("tuning", stack.topology.name, f"{label}, server memory",
                         _memory_mb(stack.project, service="mlflow"), "MB")
        finally:
            set_env(stack, MLFLOW_WORKERS=None)

    # --- load generators ------------------------------------------------------------------------------

    def load(self, kind: str, *target: str, env: dict | None = None, **options) -> dict:
        argv = [sys.executable, "-m", "mlflowkit.bench.load", kind, *target, *_options(options)]
        timeout = options.get("duration", 0) + 300
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.scratch,
                                  env={**os.environ, **(env or {})}, check=False)
        except subprocess.TimeoutExpired:
            raise KitError(f"bench: {kind} load generator outlived {timeout:.0f} s") from None
        return _result(kind, proc.returncode, proc.stdout, proc.stderr)

    @contextmanager
    def background(self, kind: str, *target: str, env: dict, **options) -> Iterator[dict]:
        """A load generator running through the block, which begins once one of its calls has succeeded (and
        two seconds more); it stops when the block ends, and its result, every call's (start, end, ok) in
        ``timeline``, fills the yielded dict."""
        marker = self.scratch / f"load-{time.time_ns()}"
        ready, stop = marker.with_suffix(".ready"), marker.with_suffix(".stop")
        options = {**options, "timeline": 1, "ready_file": ready, "stop_file": stop}
        argv = [sys.executable, "-m", "mlflowkit.bench.load", kind, *target, *_options(options)]
        result: dict = {}
        # Output to files: a pipe nobody reads during the block would stall a chatty generator.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, cwd=self.scratch,
                                    env={**os.environ, **env})
            try:
                _wait_ready(ready, proc, timeout=120)
                time.sleep(2)
                yield result
            finally:
                stop.touch()
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
            out.seek(0)
            err.seek(0)
            result.update(_result(kind, proc.returncode, out.read(), err.read()))

    def _load_in(self, stack: Stack, service: str, kind: str, *target: str, env: dict | None = None,
                 **options) -> dict:
        """The load generator inside ``service``'s container (this file's script on stdin)."""
        timeout = options.get("duration", 0) + 300
        command = ["python", "-", kind, *target, *_options(options)]
        out = stack.compose(with_serve=True).exec(service, command, timeout=timeout, input=LOAD_SCRIPT.read_text(),
                                                  env=env)
        return _result(kind, 0, out, "")

    @property
    def hello_name(self) -> str:
        return f"{self.settings.project_prefix}-hello"

    def _start_hello(self) -> str:
        port = free_port()
        image = images.names(self.settings, "mlflow")[0]
        code = ("import uvicorn\n"
                "async def app(scope, receive, send):\n"
                "    if scope['type'] != 'http': return\n"
                "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
                "    await send({'type': 'http.response.body', 'body': b'OK'})\n"
                "uvicorn.run(app, host='0.0.0.0', port=8000, log_level='warning')\n")
        run(["docker", "run", "--detach", "--rm", "--name", self.hello_name, "--label", "mlflowkit-bench=1",
             "--publish", f"127.0.0.1:{port}:8000", image, "python", "-c", code], timeout=60)
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, 60)
        return url

    def _stop_hello(self) -> None:
        if self._hello_p50 is not None:
            run(["docker", "rm", "--force", self.hello_name], timeout=60)


# --- helpers --------------------------------------------------------------------------------------------

def _options(options: dict) -> list[str]:
    return [item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def _result(kind: str, code: int, stdout: str, stderr: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        raise KitError(f"bench: the {kind} load generator failed (exit {code})", details=stderr[-2000:])
    result = json.loads(lines[-1])
    if "fatal" in result:
        raise KitError(f"bench: the {kind} load generator could not start: {result['fatal']}")
    # Errors are figures too (reported with the figure); a run where every call failed measures nothing.
    if result.get("errors") and result["errors"] >= result.get("calls", 0):
        raise KitError(f"bench: every {kind} call failed: {result.get('first_error')}")
    return result


def _mbps(result: dict, direction: str) -> float | None:
    timing = result[direction]
    if not timing["count"] or not timing["total_s"]:
        return None
    return result["size"] * timing["count"] / timing["total_s"] / 1e6


def size_label(size: int) -> str:
    if size >= 1024 * MIB:
        return f"{size / (1024 * MIB):g} GiB"
    return f"{size // MIB} MiB" if size >= MIB else f"{size // 1024} KiB"


def disk_free(path: str = tempfile.gettempdir()) -> int:
    return shutil.disk_usage(path).free


def choose_sizes(*, quick: bool, large_mib: int = 0, cold_build: bool = False) -> Sizes:
    """The run's sizes: quick or full, the large transfer ``large_mib`` MiB when given (if the disk has room), the
    images' cold build first when asked."""
    sizes = replace(QUICK if quick else FULL, cold_build=cold_build)
    if large_mib:
        free = disk_free() // MIB
        if free < 4 * large_mib:  # the file, a download of it, and S3's copy on the same disk
            raise KitError(f"--large-mib {large_mib} needs about {4 * large_mib} MiB free in /tmp; {free} MiB are.")
        sizes = replace(sizes, large_bytes=large_mib * MIB)
    return sizes


def default_out_dir(settings: Settings, *, quick: bool) -> Path:
    """benchmarks/results/<UTC time> in a checkout (under MLFLOWKIT_HOME for an installed kit)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if quick else "")
    return settings.results_dir() / stamp


def _disk_allows(size: int) -> bool:
    """Room for the file, its download (both in /tmp) and S3's copy (usually the same disk), twice over."""
    return disk_free() >= 4 * size


def experiment_id(conn, name: str) -> str:
    from mlflowkit.client import Client

    return Client(conn).experiment(name)


def _register_model(conn) -> tuple[str, dict]:
    """A small iris classifier, registered with the alias ``bench``: its URI and one row (split orient)."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=300).fit(data.data, data.target)
    row = data.data.head(1)
    with conn.activate():
        experiment = experiment_id(conn, "bench-serving")
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(model, name="model", input_example=row, registered_model_name="bench-iris",
                                            pip_requirements=["scikit-learn"])
        mlflow.MlflowClient().set_registered_model_alias("bench-iris", "bench", info.registered_model_version)
    return "models:/bench-iris@bench", row.to_dict(orient="split")


def _seed_env(stack: Stack) -> None:
    """Free ports in a fresh .env (the bench never uses a user's ports or stacks)."""
    stack.env_file.unlink(missing_ok=True)
    envfile.ensure(stack.env_file, stack.topology, stack.settings.bind_address,
                   stack.settings.data_dir(stack.topology.name),
                   ports={port.variable: free_port() for port in stack.topology.ports})


def set_env(stack: Stack, **values: str | None) -> None:
    """Set (or, for None, remove) keys of the stack's .env."""
    for key, value in values.items():
        envfile.set_value(stack.env_file, key, value)


def _wait_ready(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    """Until the load generator says its load flows (``path`` exists); an error when it ends or takes too long."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise KitError(f"bench: the load generator ended (exit {proc.returncode}) before any call succeeded",
                           hint="its first error is in the next run's log; is the stack up?")
        if time.monotonic() > deadline:
            raise KitError(f"bench: no call of the load succeeded within {timeout:.0f} s",
                           hint="`mlflowkit status` shows the stack's state.")
        time.sleep(0.2)


def _wait_http(url: str, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise KitError(f"bench: {url} did not answer within {timeout:.0f} s")


def _docker_time(text: str) -> datetime | None:
    if not text or text.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


PREPARED = "prepare: "  # how mlflowkit_server.prepare begins each line it prints (the image's plugin)


def prepared_at(logs: str) -> datetime | None:
    """When a server that prepares its stores as it starts printed its last line about them (`docker logs
    --timestamps`), if it printed any."""
    stamps = [line.split(" ", 1)[0] for line in logs.splitlines() if f" {PREPARED}" in line]
    return _docker_time(stamps[-1]) if stamps else None


def _phases(stack: Stack, began: datetime) -> dict[str, float]:
    """Seconds from the start of `up` to each service's first passing healthcheck (one-shots: to their exit; a
    server that prepares its stores: also to its last line about them), from `docker inspect` and `docker logs`
    (the engine keeps the last five health results, so a phase is at most a few healthcheck intervals late when a
    service was healthy long before the last one)."""
    ids = run(["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={stack.project}"],
              timeout=30).stdout.split()
    phases: dict[str, float] = {}
    names = {"postgres": "database ready", "s3": "S3 ready", "create-bucket": "bucket created",
             "migrate": "migrations done", "mlflow": "server serving", "artifacts": "artifacts server serving"}
    for info in json.loads(run(["docker", "inspect", *ids], timeout=30).stdout) if ids else []:
        service = info["Config"]["Labels"].get("com.docker.compose.service", "")
        state = info["State"]
        if service not in names:
            continue
        if "Health" in state:
            passing = [_docker_time(entry["End"]) for entry in state["Health"]["Log"] if entry["ExitCode"] == 0]
            when = min((t for t in passing if t), default=None)
        else:
            when = _docker_time(state.get("FinishedAt", ""))
        if when is not None:
            phases[names[service]] = (when - began).total_seconds()
        logs = run(["docker", "logs", "--timestamps", info["Id"]], timeout=30)
        prepared = prepared_at(logs.stdout + logs.stderr)
        if prepared is not None:
            phases[f"{service}: stores prepared"] = (prepared - began).total_seconds()
    return dict(sorted(phases.items(), key=lambda item: item[1]))


def _memory_mb(project: str, service: str | None = None) -> float:
    out = run(["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"], timeout=60).stdout
    total = 0.0
    for line in out.splitlines():
        name, _, usage = line.partition("\t")
        if not name.startswith(f"{project}-") or (service and not name.startswith(f"{project}-{service}-")):
            continue
        total += _bytes(usage.split("/")[0].strip()) / 1e6
    return total


_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def _bytes(text: str) -> float:
    match = re.match(r"([\d.]+)\s*([A-Za-z]+)", text)
    if not match:
        return 0.0
    return float(match.group(1)) * _UNITS.get(match.group(2), 1)


def _machine_memory_mb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e6


def machine_facts() -> dict:
    import mlflow

    engine = run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30).stdout.strip()
    return {"cores": os.cpu_count(), "memory_mb": round(_machine_memory_mb()), "platform": platform.platform(),
            "python": platform.python_version(), "mlflow": mlflow.__version__, "docker": engine}


def run_bench(names: list[str], sizes: Sizes, settings: Settings, out_dir: Path,
              log: Callable[[str], None]) -> tuple[Path, str]:
    """Run, then write result.json, table.md and the plots to ``out_dir``; the JSON path and the table."""
    from mlflowkit.bench import report

    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    meta: dict[str, object] = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "topologies": names,
            "sizes": asdict(sizes), "machine": machine_facts()}
    with tempfile.TemporaryDirectory(prefix="mlflowkit-bench-") as scratch:
        figures = Bench(names, sizes, settings, log, Path(scratch)).run()
    meta["seconds"] = round(time.monotonic() - started, 1)
    path = out_dir / "result.json"
    report.write_json(path, meta, figures)
    text = report.table(figures)
    (out_dir / "table.md").write_text(text + "\n")
    report.plot(figures, out_dir)
    return path, text

