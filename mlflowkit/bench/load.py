"""Load generators of `mlflowkit bench`: separate processes, bounded in calls and time, one JSON line out.

Standalone on purpose (standard library, plus mlflow / requests / boto3 imported where used): the bench runs it
on the host (``python -m mlflowkit.bench.load …``) and, for the in-process store limit, inside the MLflow
container (``python - …`` with this file on stdin). ``--procs N`` forks N workers that start together.

    tracking  URI EXPERIMENT_ID --batch B --duration S   log_batch of B metric rows per call, as fast as it can
    http      URL --count N [--fresh 1]                  sequential GETs (a per-request floor)
    invoke    URL --body JSON --duration S               POST /invocations as fast as it can
    scoring   MODEL_URI --body JSON --count N            in one process, no HTTP: the model's predict on the body's
                                                         DataFrame, and MLflow's scoring app called as ASGI
    s3        ENDPOINT BUCKET --size BYTES --count N     boto3 upload_file/download_file (the artifacts limit)
    artifacts EXPERIMENT_ID --size BYTES --count N       mlflow log_artifact/download_artifacts via MLFLOW_* env
    downloads EXPERIMENT_ID --size BYTES --count N --duration S
                                                         N files logged, then downloaded in turn as fast as it can

For a fault under load (the bench's recovery section): ``--timeline 1`` keeps every call's (start, end, ok) in
epoch seconds, ``--ready-file`` is created once the first call succeeded, and the run ends early once
``--stop-file`` exists.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(latencies: list[float]) -> dict:
    return {"p50_ms": _ms(_percentile(latencies, 0.5)), "p99_ms": _ms(_percentile(latencies, 0.99)),
            "mean_ms": _ms(statistics.fmean(latencies) if latencies else None)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _wait_until(start_at: float) -> None:
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)


def _going(args: argparse.Namespace, begin: float, calls: int) -> bool:
    """The loop goes on: within its duration and call budget, and not told to stop."""
    if time.monotonic() - begin >= args.duration or calls >= args.max_calls:
        return False
    return not (args.stop_file and os.path.exists(args.stop_file))


def _record(args: argparse.Namespace, timeline: list, started: float, ok: bool) -> None:
    """A call's (start, end, ok) in epoch seconds when asked to (--timeline); the first success makes the ready
    file (the load flows)."""
    if args.timeline:
        timeline.append((round(started, 4), round(time.time(), 4), ok))
    if ok and args.ready_file and not os.path.exists(args.ready_file):
        with open(args.ready_file, "a"):
            pass


# --- workers: each returns a dict of counts, latencies (s), errors ------------------------------------------

def tracking(args: argparse.Namespace, index: int) -> dict:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.target)
    run_id = client.create_run(args.experiment, run_name=f"bench-{args.batch}x{args.procs}-{index}").info.run_id
    rows, errors, latencies, step = 0, 0, [], 0
    timeline: list[tuple[float, float, bool]] = []
    _wait_until(args.start_at)
    begin = time.monotonic()
    while _going(args, begin, step):
        now_ms = int(time.time() * 1000)
        metrics = [Metric(f"m{i}", float(step), now_ms, step) for i in range(args.batch)]
        started, wall = time.monotonic(), time.time()
        try:
            client.log_batch(run_id, metrics=metrics)
            rows += args.batch
            latencies.append(time.monotonic() - started)
            _record(args, timeline, wall, True)
        except Exception as exc:  # counted and reported, the loop goes on
            errors += 1
            _remember(args, exc)
            _record(args, timeline, wall, False)
        step += 1
    return {"rows": rows, "calls": step, "errors": errors, "seconds": time.monotonic() - begin,
            "latencies": latencies, "run_id": run_id, "timeline": timeline}


def http(args: argparse.Namespace, index: int) -> dict:
    import requests

    session = requests.Session()
    latencies, errors = [], 0
    for _ in range(args.count):
        started = time.monotonic()
        try:
            response = (requests if args.fresh else session).get(args.target, timeout=10)
            response.raise_for_status()
            latencies.append(time.monotonic() - started)
        except requests.RequestException as exc:
            errors += 1
            _remember(args, exc)
    return {"calls": args.count, "errors": errors, "latencies": latencies, "seconds": sum(latencies)}


def invoke(args: argparse.Namespace, index: int) -> dict:
    import requests

    session = requests.Session()
    body = args.body.encode()
    headers = {"Content-Type": "application/json"}
    latencies, errors, calls = [], 0, 0
    _wait_until(args.start_at)
    begin = time.monotonic()
    while time.monotonic() - begin < args.duration and calls < args.max_calls:
        started = time.monotonic()
        try:
            session.post(args.target, data=body, headers=headers, timeout=10).raise_for_status()
            latencies.append(time.monotonic() - started)
        except requests.RequestException as exc:
            errors += 1
            _remember(args, exc)
        calls += 1
    return {"calls": calls, "errors": errors, "latencies": latencies, "seconds": time.monotonic() - begin}


def scoring(args: argparse.Namespace, index: int) -> dict:
    """Where a served prediction's time goes, without the network: ``predict`` times the model's own predict on
    the body's DataFrame, ``latencies`` a whole call of MLflow's scoring app (the ASGI app `mlflow models serve`
    runs: JSON parsing, schema checks, predict, the response) made in this process."""
    import asyncio

    import mlflow.pyfunc
    import pandas as pd
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(args.target)
    split = json.loads(args.body)["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    app, body = scoring_server.init(model), args.body.encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/invocations", "raw_path": b"/invocations", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 5001)}

    async def call() -> int:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status: list[int] = []

        async def receive() -> dict:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(dict(scope), receive, send)
        return status[0]

    async def timed() -> dict:
        predict, latencies, errors = [], [], 0
        for n in range(args.count + 20):  # the first 20 warm up
            started = time.perf_counter()
            model.predict(frame)
            took = time.perf_counter() - started
            started = time.perf_counter()
            ok = await call() == 200
            if n >= 20:
                predict.append(took)
                latencies.append(time.perf_counter() - started)
                errors += not ok
        return {"calls": args.count, "errors": errors, "latencies": latencies, "predict": predict,
                "seconds": sum(latencies)}

    return asyncio.run(timed())


def s3(args: argparse.Namespace, index: int) -> dict:
    import boto3

    client = boto3.client("s3", endpoint_url=args.target)
    return _transfer(args, index,
                     lambda path, key: client.upload_file(path, args.bucket, key),
                     lambda key, path: client.download_file(args.bucket, key, path))


def artifacts(args: argparse.Namespace, index: int) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run_id = client.create_run(args.target, run_name=f"bench-artifacts-{args.size}-{index}").info.run_id
    return _transfer(args, index,
                     lambda path, key: client.log_artifact(run_id, path, key),
                     lambda key, path: client.download_artifacts(run_id, f"{key}/{os.path.basename(path)}",
                                                                 os.path.dirname(path)))


def downloads(args: argparse.Namespace, index: int) -> dict:
    """``count`` files of ``size`` bytes logged to a new run, then downloaded in turn, as fast as it can, until
    the duration ends (each download checked for its size)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run_id = client.create_run(args.target, run_name=f"bench-downloads-{index}").info.run_id
    latencies, errors, calls = [], 0, 0
    timeline: list[tuple[float, float, bool]] = []
    with tempfile.TemporaryDirectory() as scratch:
        source = os.path.join(scratch, "blob.bin")
        with open(source, "wb") as handle:
            handle.write(os.urandom(args.size))
        for n in range(args.count):
            client.log_artifact(run_id, source, f"bench/{n}")
        _wait_until(args.start_at)
        begin = time.monotonic()
        while _going(args, begin, calls):
            target = os.path.join(scratch, f"out-{calls}")
            os.makedirs(target)
            started, wall = time.monotonic(), time.time()
            try:
                got = client.download_artifacts(run_id, f"bench/{calls % args.count}/blob.bin", target)
                if os.path.getsize(got) != args.size:
                    raise OSError(f"downloaded {os.path.getsize(got)} bytes, not {args.size}")
                latencies.append(time.monotonic() - started)
                _record(args, timeline, wall, True)
            except Exception as exc:
                errors += 1
                _remember(args, exc)
                _record(args, timeline, wall, False)
            finally:
                shutil.rmtree(target, ignore_errors=True)
            calls += 1
    return {"calls": calls, "errors": errors, "latencies": latencies, "seconds": time.monotonic() - begin,
            "timeline": timeline}


def _transfer(args: argparse.Namespace, index: int, upload, download) -> dict:
    """``count`` uploads then ``count`` downloads of one random file of ``size`` bytes; timed per call."""
    up, down, errors = [], [], 0
    with tempfile.TemporaryDirectory() as scratch:
        source = os.path.join(scratch, "blob.bin")
        with open(source, "wb") as handle:
            remaining = args.size
            while remaining:
                chunk = min(remaining, 1 << 20)
                handle.write(os.urandom(chunk))
                remaining -= chunk
            # On disk before the clock starts: else the transfers race the kernel writing this file back (a
            # 1 GiB download through one stream measured 260 MB/s against 600 once the file was flushed).
            handle.flush()
            os.fsync(handle.fileno())
        keys = [f"bench/{index}-{time.time_ns()}-{n}" for n in range(args.count)]
        for key in keys:
            started = time.monotonic()
            try:
                upload(source, key)
                up.append(time.monotonic() - started)
            except Exception as exc:
                errors += 1
                _remember(args, exc)
        for n, key in enumerate(keys):
            target = os.path.join(scratch, f"out-{n}", "blob.bin")
            os.makedirs(os.path.dirname(target))
            started = time.monotonic()
            try:
                download(key, target)
                down.append(time.monotonic() - started)
                if os.path.getsize(target) != args.size:
                    raise OSError(f"downloaded {os.path.getsize(target)} bytes, not {args.size}")
            except Exception as exc:
                errors += 1
                _remember(args, exc)
            finally:
                if os.path.exists(target):
                    os.remove(target)
    return {"calls": len(keys), "errors": errors, "upload": up, "download": down, "size": args.size}


_FIRST_ERROR: list[str] = []


def _remember(args: argparse.Namespace, exc: BaseException) -> None:
    if not _FIRST_ERROR:
        _FIRST_ERROR.append(f"{type(exc).__name__}: {str(exc)[:300]}")


# --- fan-out and output -----------------------------------------------------------------------------------

WORKERS = {"tracking": tracking, "http": http, "invoke": invoke, "scoring": scoring, "s3": s3,
           "artifacts": artifacts, "downloads": downloads}


def _child(args: argparse.Namespace, index: int, queue) -> None:
    try:
        result = WORKERS[args.kind](args, index)
        result["first_error"] = _FIRST_ERROR[0] if _FIRST_ERROR else None
    except Exception as exc:  # a worker that cannot start at all
        result = {"fatal": f"{type(exc).__name__}: {str(exc)[:500]}"}
    queue.put(result)


def run(args: argparse.Namespace) -> dict:
    """Run ``procs`` workers (forked, so this also works as a script read from stdin) and merge their results.

    Heavy imports happen once, before the fork; the workers then start together, half a second later.
    """
    if args.target.startswith("env:"):  # e.g. env:MLFLOW_BACKEND_STORE_URI inside the server's container
        args.target = os.environ[args.target[4:]]
    if args.kind in ("tracking", "artifacts", "downloads"):
        import mlflow.tracking  # noqa: F401
    if not args.start_at:
        args.start_at = time.time() + 0.5
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_child, args=(args, index, queue)) for index in range(args.procs)]
    for child in children:
        child.start()
    results = []
    deadline = time.monotonic() + args.timeout
    for _ in children:
        results.append(queue.get(timeout=max(1.0, deadline - time.monotonic())))
    for child in children:
        child.join(timeout=10)
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        return {"fatal": fatal[0]}
    merged: dict = {"procs": args.procs, "errors": sum(r["errors"] for r in results),
                    "calls": sum(r["calls"] for r in results),
                    "first_error": next((r["first_error"] for r in results if r.get("first_error")), None)}
    for key in ("latencies", "upload", "download", "predict"):
        if key in results[0]:
            values = [v for r in results for v in r[key]]
            # slowest_s: the worker that took longest over its calls (all bytes / this = aggregate throughput)
            merged[key] = {**_summary(values), "count": len(values), "total_s": round(sum(values), 6),
                           "slowest_s": round(max(sum(r[key]) for r in results), 6)}
    if args.timeline:
        merged["timeline"] = sorted(call for r in results for call in r.get("timeline", []))
    if "size" in results[0]:
        merged["size"] = results[0]["size"]
    if "rows" in results[0]:
        merged["rows"] = sum(r["rows"] for r in results)
        merged["run_ids"] = [r["run_id"] for r in results]
    merged["seconds"] = max(r.get("seconds", 0.0) for r in results)
    return merged


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlflowkit.bench.load")
    p.add_argument("kind", choices=sorted(WORKERS))
    p.add_argument("target", help="tracking URI, URL, S3 endpoint or experiment id (see the module doc)")
    p.add_argument("experiment", nargs="?", default="0")
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--max-calls", type=int, default=1_000_000)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--bucket", default="mlflow")
    p.add_argument("--body", default="{}")
    p.add_argument("--fresh", type=int, default=0, help="http: 1 opens a new connection per request")
    p.add_argument("--start-at", type=float, default=0.0, help="epoch seconds at which every worker starts")
    p.add_argument("--timeout", type=float, default=600.0, help="the whole run, start-up included")
    p.add_argument("--timeline", type=int, default=0, help="1: every call's (start, end, ok) in the result")
    p.add_argument("--ready-file", default="", help="created once a call has succeeded")
    p.add_argument("--stop-file", default="", help="the run ends once this file exists")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
