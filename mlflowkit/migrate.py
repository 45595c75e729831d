"""Move everything from one topology's stack to another's: `mlflowkit migrate <from> <to>`.

Three routes, chosen by the stores' declared properties:

- file store -> SQLite (``file``, ``server-file`` -> ``sqlite``): MLflow's ``migrate-filestore`` into a temporary
  database, artifact URIs rewritten to the target's directory, the artifacts copied there, the database put in
  place with SQLite's backup API.
- local store -> PostgreSQL (``file``, ``sqlite``, ``server-file`` -> ``postgres-s3``, ``proxied``,
  ``artifacts-only``): a temporary SQLite copy (the online backup API, or ``migrate-filestore``), experiments whose
  ids do not fit PostgreSQL's integer columns renumbered, URIs rewritten, then every row copied table by table in
  foreign-key order inside the target stack (:mod:`mlflowkit.sql_rows`) and every artifact uploaded to its bucket
  under its path below the source's artifact root.
- PostgreSQL -> PostgreSQL (between ``postgres-s3``, ``proxied``, ``artifacts-only``): the same schema, so
  ``pg_dump``/``pg_restore``, URIs rewritten in place, the bucket's objects copied with the same keys.

Afterwards a table of counts (source and target side by side) and a field-by-field check of a sample.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

from mlflowkit.backup import check_supported, counts, is_empty, pg_dump, s3_command, s3_output, script_command
from mlflowkit.client import Client
from mlflowkit.errors import CommandError, KitError
from mlflowkit.stack import Stack
from mlflowkit.topology import DATABASE_SERVICE, LOCAL_ARTIFACTS, ArtifactMode, Backend, Topology

Log = Callable[[str], None]
SQL_SCRIPT = Path(__file__).with_name("sql_rows.py")
# The PostgreSQL stacks' one-shot whose environment holds MLFLOW_BACKEND_STORE_URI (and SQLAlchemy + psycopg2).
DB_SERVICE = "migrate"
SAMPLE_RUNS = 3
MAX_HASHED_BYTES = 64 * 2**20  # sample artifacts larger than this are compared by size only
SUPPORTED = ("file, server-file -> sqlite; file, sqlite, server-file -> postgres-s3, proxied, artifacts-only; "
             "and between postgres-s3, proxied and artifacts-only")

# migrate-filestore in a child process (MLflow's importer is a library call), with one change: a file store can
# hold the same metric point twice (same key, step, timestamp and value), which SQL stores' primary key forbids
# and MLflow's importer then fails on. Such points are kept once; how many were dropped is printed last.
_FILESTORE_TO_SQLITE = """
import json, sys
from pathlib import Path
from mlflow.store.fs2db import _tracking, _utils, migrate
dropped = [0]
def once(directory):
    lines = {}
    for key, values in _utils.read_metric_lines(directory).items():
        lines[key] = list(dict.fromkeys(line.strip() for line in values if line.strip()))
        dropped[0] += len([v for v in values if v.strip()]) - len(lines[key])
    return lines
_tracking.read_metric_lines = once
migrate(Path(sys.argv[1]), sys.argv[2], progress=True)
print(json.dumps({"dropped_metric_duplicates": dropped[0]}))
"""


class Route(str, Enum):
    FILESTORE_TO_SQLITE = "file store -> SQLite"
    LOCAL_TO_POSTGRES = "local store -> PostgreSQL"
    POSTGRES_TO_POSTGRES = "PostgreSQL -> PostgreSQL"


def route(source: Topology, target: Topology) -> Route:
    """Which route moves ``source`` to ``target``, or one line saying which pairs are supported."""
    check_supported(source, "migrate")
    check_supported(target, "migrate")
    if source.name == target.name:
        raise KitError(f"{source.name} -> {target.name}: the source and the target are the same topology.",
                       hint=f"give two different topologies; supported: {SUPPORTED}.")
    local = source.backend is not Backend.POSTGRESQL
    if source.backend is Backend.FILE and target.backend is Backend.SQLITE:
        return Route.FILESTORE_TO_SQLITE
    if target.backend is Backend.POSTGRESQL:
        return Route.LOCAL_TO_POSTGRES if local else Route.POSTGRES_TO_POSTGRES
    raise KitError(f"migrating {source.name} -> {target.name} is not supported.", hint=f"supported: {SUPPORTED}.")


def artifact_root(topology: Topology, env: dict[str, str]) -> str:
    """The URI every artifact URI of this topology's store starts with (no trailing slash)."""
    if topology.artifact_mode is ArtifactMode.LOCAL:
        return f"file://{local_artifact_dir(topology, env)}"
    if topology.artifact_mode is ArtifactMode.CLIENT_S3:
        return f"s3://{env.get('S3_BUCKET') or 'mlflow'}"
    if topology.artifact_mode is ArtifactMode.PROXIED:
        return "mlflow-artifacts:"  # mlflow-artifacts:/<key>: the server's destination is the bucket root
    host = env.get("ARTIFACTS_HOST") or "127.0.0.1"
    return f"mlflow-artifacts://{host}:{env['ARTIFACTS_PORT']}"


def local_artifact_dir(topology: Topology, env: dict[str, str]) -> Path:
    """Where a local topology's artifacts are: a client-written file store keeps them inside the store
    (``<data>/mlruns/<experiment>/…``), every other local topology in ``<data>/mlartifacts``."""
    data = Path(env["MLFLOW_DATA_DIR"])
    if topology.backend is Backend.FILE and not topology.has_tracking_server:
        return data / str(topology.backend.local_path)
    return data / LOCAL_ARTIFACTS


def uri_prefixes(source: Topology, source_env: dict[str, str], target: Topology,
                 target_env: dict[str, str]) -> list[tuple[str, str]]:
    """(old, new) prefix pairs that turn the source's artifact URIs into the target's, keys kept."""
    new = artifact_root(target, target_env) + "/"
    pairs = [(artifact_root(source, source_env) + "/", new)]
    if source.artifact_mode is ArtifactMode.LOCAL:  # also plain paths, as a location given without a scheme
        pairs.append((f"{local_artifact_dir(source, source_env)}/", new))
    return pairs


def rewriter(pairs: list[tuple[str, str]]) -> Callable[[str | None], str | None]:
    from mlflowkit.sql_rows import rewrite_value

    return lambda value: rewrite_value(value, pairs)


# --- the command ------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    source: str
    target: str
    counts: list[tuple[str, int, int | None, str]] = field(default_factory=list)  # kind, source, target, verdict
    sample: list[tuple[str, bool, str]] = field(default_factory=list)  # what, equal, detail
    renumbered: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(not v.startswith("DIFFERS") for *_, v in self.counts) and all(ok for _, ok, _ in self.sample)


def migrate(source: Stack, target: Stack, log: Log, *, force: bool = False) -> Outcome:
    """Copy everything ``source`` holds into ``target``, then compare counts and a sample field by field."""
    how = route(source.topology, target.topology)
    if not _running(source):
        raise KitError(f"{source.topology.name} is not up: migrate reads from a running stack.",
                       hint=f"`mlflowkit up {source.topology.name}` first.")
    started = time.monotonic()
    source_client = Client(source.connection())
    before = counts(source_client)
    if is_empty(before):
        raise KitError(f"{source.topology.name} holds nothing to migrate ({_describe(before)}).")
    if not _running(target):
        log(f"migrate: {target.topology.name} is not running; starting it")
        target.up()
    present = counts(Client(target.connection()))
    if not is_empty(present):
        if not force:
            raise KitError(f"{target.topology.name} already holds data ({_describe(present)}); migrate does not "
                           "merge two stores.",
                           hint="migrate into an empty stack (`mlflowkit down --volumes` deletes this one's data), "
                           "or pass --force to replace everything it holds.")
        log(f"migrate: --force: replacing what {target.topology.name} holds ({_describe(present)})")
    log(f"migrate: {source.topology.name} -> {target.topology.name} ({how.value}): {_describe(before)}")
    pairs = uri_prefixes(source.topology, source.env(), target.topology, target.env())
    outcome = Outcome(source.topology.name, target.topology.name)
    dropped = 0
    with tempfile.TemporaryDirectory(prefix="mlflowkit-migrate-") as tmp:
        work = Path(tmp)
        if how is Route.POSTGRES_TO_POSTGRES:
            _postgres_to_postgres(source, target, pairs, work, log)
        else:
            database, dropped = _local_copy(source, work / "source.db", log)
            files = _artifact_files(source, database, log)
            if how is Route.FILESTORE_TO_SQLITE:
                _rewrite_local(database, pairs, log)
                _into_sqlite(target, database, files, log)
            else:
                outcome.renumbered = _renumber(database, log)
                _rewrite_local(database, pairs, log)
                _into_postgres(target, database, files, log)
    after = counts(Client(target.connection()))
    outcome.counts = compare_counts(before, after, dropped_points=dropped,
                                    default_added=not _has_default(source_client) and _has_default_sql(target))
    log("migrate: checking a sample field by field")
    picked = pick_sample(source_client)
    want = describe(source_client, picked, rewrite=rewriter(pairs))
    got = describe(Client(target.connection()), picked)
    outcome.sample = compare_sample(want, got)
    outcome.seconds = time.monotonic() - started
    return outcome


# --- metadata ---------------------------------------------------------------------------------------------------

def _local_copy(stack: Stack, database: Path, log: Log) -> tuple[Path, int]:
    """A SQLite copy of a local store (SQLite: the online backup API; file store: migrate-filestore)."""
    env = stack.env()
    data = Path(env["MLFLOW_DATA_DIR"])
    if stack.topology.backend is Backend.SQLITE:
        store = data / str(stack.topology.backend.local_path)
        log(f"migrate: metadata: SQLite online backup of {store}")
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as live, \
                sqlite3.connect(database) as copy:
            live.backup(copy)
        return database, 0
    store = data / str(stack.topology.backend.local_path)
    log(f"migrate: metadata: mlflow migrate-filestore {store} -> a temporary SQLite database")
    proc = subprocess.run([sys.executable, "-c", _FILESTORE_TO_SQLITE, str(store), f"sqlite:///{database}"],
                          capture_output=True, text=True, timeout=stack.settings.command_timeout * 10,
                          env={**_plain_env(), "MLFLOW_ALLOW_FILE_STORE": "true"})
    if proc.returncode != 0:
        raise KitError("mlflow migrate-filestore failed.", details=(proc.stdout + proc.stderr)[-4000:])
    for line in proc.stdout.splitlines():
        if line.startswith("[") and "Migrating" in line:
            log(f"migrate: {line.strip()}")
    dropped = int(json.loads(proc.stdout.strip().splitlines()[-1])["dropped_metric_duplicates"])
    if dropped:
        log(f"migrate: {dropped} metric point(s) the file store held twice (same key, step, timestamp, value) "
            "are kept once: SQL stores cannot hold duplicates")
    return database, dropped


def _plain_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}


def _renumber(database: Path, log: Log) -> dict[int, int]:
    from sqlalchemy import create_engine

    from mlflowkit.sql_rows import renumber_experiments

    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        mapping = renumber_experiments(conn)
    engine.dispose()
    for old, new in mapping.items():
        log(f"migrate: experiment id {old} -> {new} (PostgreSQL's experiment ids are 32-bit integers)")
    return mapping


def _rewrite_local(database: Path, pairs: list[tuple[str, str]], log: Log) -> None:
    from sqlalchemy import create_engine

    from mlflowkit.sql_rows import rewrite_uris

    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        changed = rewrite_uris(conn, pairs)
    engine.dispose()
    log(f"migrate: {changed} artifact URIs rewritten {pairs[0][0]}… -> {pairs[0][1]}…")


def _into_postgres(target: Stack, database: Path, files: dict[str, Path], log: Log) -> None:
    with _servers_stopped(target, log):
        log(f"migrate: rows into {target.topology.name}'s PostgreSQL, table by table (one transaction)")
        with database.open("rb") as db, _explained("copying the rows into PostgreSQL"):
            loader, args = script_command(target, DB_SERVICE, SQL_SCRIPT, "load")
            out = loader.input(*args, write=lambda stdin: shutil.copyfileobj(db, stdin),
                               timeout=target.settings.command_timeout * 10)
        for line in out.strip().splitlines()[:-1]:
            log(f"migrate: {line.strip()}")
        _upload(target, files, log)


def _into_sqlite(target: Stack, database: Path, files: dict[str, Path], log: Log) -> None:
    directory = local_artifact_dir(target.topology, target.env())
    for number, (key, path) in enumerate(sorted(files.items()), start=1):
        (directory / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, directory / key)
        if number % 200 == 0:
            log(f"migrate: artifacts: {number}/{len(files)} files copied")
    log(f"migrate: artifacts: {len(files)} files into {directory}")
    store = Path(target.env()["MLFLOW_DATA_DIR"]) / str(target.topology.backend.local_path)
    with _servers_stopped(target, log):
        log(f"migrate: metadata into {store} (SQLite's backup API)")
        with sqlite3.connect(database) as copy, sqlite3.connect(store) as live:
            copy.backup(live)


def _postgres_to_postgres(source: Stack, target: Stack, pairs: list[tuple[str, str]], work: Path,
                          log: Log) -> None:
    timeout = source.settings.command_timeout * 5
    dump = work / "postgres.dump"
    log(f"migrate: metadata: pg_dump of {source.topology.name} (one consistent transaction)")
    pg_dump(source, source.env()["POSTGRES_DB"], dump)
    target_env, compose = target.env(), target.compose()
    with _servers_stopped(target, log):
        log(f"migrate: pg_restore into {target.topology.name} (every table replaced)")
        with dump.open("rb") as handle:
            compose.input("exec", "-T", DATABASE_SERVICE, "pg_restore", "--clean", "--if-exists", "--no-owner",
                          "--single-transaction", "-U", target_env["POSTGRES_USER"], "-d", target_env["POSTGRES_DB"],
                          write=lambda stdin: shutil.copyfileobj(handle, stdin), timeout=timeout)
        rewriter, args = script_command(target, DB_SERVICE, SQL_SCRIPT, "rewrite",
                                        *[item for pair in pairs for item in pair])
        printed = rewriter.call(*args, timeout=timeout)
        changed = json.loads(printed.strip().splitlines()[-1])["rewritten"]
        log(f"migrate: {changed} artifact URIs rewritten {pairs[0][0]}… -> {pairs[0][1]}…")
        log("migrate: artifacts: every object of the source's bucket into the target's (same keys)")
        importer, args = s3_command(target, "import")
        with s3_output(source, "export") as objects:
            imported = importer.input(*args, write=lambda stdin: shutil.copyfileobj(objects, stdin),
                                      timeout=target.settings.command_timeout * 10)
        log(f"migrate: artifacts: {imported.strip().splitlines()[-1]} objects copied")


# --- artifacts --------------------------------------------------------------------------------------------------

def _artifact_files(source: Stack, database: Path, log: Log) -> dict[str, Path]:
    """{key: file} of every artifact of a local source, the key its path below the source's artifact root.

    A client-written file store keeps metadata beside the artifacts in the same tree: only the directories the
    store names as artifact locations (runs, logged models, traces, model versions) are taken from it.
    """
    root = local_artifact_dir(source.topology, source.env())
    if source.topology.backend is Backend.FILE and not source.topology.has_tracking_server:
        directories = [root / key for key in artifact_directories(database, root)]
    else:
        directories = [root]
    files: dict[str, Path] = {}
    for directory in directories:
        for path in directory.rglob("*") if directory.is_dir() else ():
            if path.is_file():
                files[path.relative_to(root).as_posix()] = path
    log(f"migrate: artifacts: {len(files)} files under {root}")
    return files


def artifact_directories(database: Path, root: Path) -> list[str]:
    """The artifact directories (relative to ``root``) a migrated file store's database names."""
    queries = ["SELECT artifact_uri FROM runs", "SELECT artifact_location FROM logged_models",
               "SELECT storage_location FROM model_versions",
               "SELECT value FROM trace_tags WHERE key = 'mlflow.artifactLocation'"]
    found: set[str] = set()
    with sqlite3.connect(database) as db:
        for query in queries:
            for (uri,) in db.execute(query):
                path = (uri or "").removeprefix("file://")
                prefix = f"{root.as_posix()}/"
                if path.startswith(prefix):
                    found.add(path[len(prefix):].rstrip("/"))
    return sorted(found)


def _upload(target: Stack, files: dict[str, Path], log: Log) -> None:
    def write(stdin: IO[bytes]) -> None:
        with tarfile.open(fileobj=stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for number, key in enumerate(sorted(files), start=1):
                tar.add(files[key], arcname=key, recursive=False)
                if number % 200 == 0:
                    log(f"migrate: artifacts: {number}/{len(files)} files sent")

    log(f"migrate: artifacts: {len(files)} files into {target.topology.name}'s bucket")
    importer, args = s3_command(target, "import")
    importer.input(*args, write=write, timeout=target.settings.command_timeout * 10)


@contextmanager
def _explained(action: str) -> Iterator[None]:
    """A failed one-shot as one line, its output (SQLAlchemy's full error) as the details."""
    try:
        yield
    except CommandError as exc:
        output = (exc.stdout + exc.stderr).strip()
        last = output.splitlines()[-1] if output else exc.message
        raise KitError(f"{action} failed: {last}", details=output[-6000:]) from None


@contextmanager
def _servers_stopped(stack: Stack, log: Log) -> Iterator[None]:
    servers = stack.topology.servers
    log(f"migrate: stopping {', '.join(servers)} of {stack.topology.name} while its store is replaced")
    stack.compose().call("stop", *servers)
    try:
        yield
    finally:
        log(f"migrate: starting {stack.topology.name}")
        stack.up()


# --- the proof --------------------------------------------------------------------------------------------------

def compare_counts(before: dict[str, int], after: dict[str, int], *, dropped_points: int = 0,
                   default_added: bool = False) -> list[tuple[str, int, int | None, str]]:
    """Rows (kind, source, target, verdict). Two differences are expected and said: metric points a file store
    held twice (kept once), and the Default experiment a SQL server creates when the source had none."""
    rows = []
    for kind, had in before.items():
        got = after.get(kind)
        want, note = had, ""
        if kind == "metrics" and dropped_points:
            want, note = had - dropped_points, f" ({dropped_points} duplicate points kept once)"
        if kind == "experiments" and default_added:
            want, note = had + 1, " (+ the Default experiment MLflow creates)"
        rows.append((kind, had, got, ("equal" if got == want else "DIFFERS") + note))
    return rows


@dataclass
class Sample:
    runs: list[str]
    models: list[str]
    traces: list[str]


def pick_sample(client: Client) -> Sample:
    """The most recent runs, the runs behind registered versions, a few models and traces."""
    from mlflow.entities import ViewType

    c = client.mlflow
    with client.connection.activate():
        experiments = [e.experiment_id for e in c.search_experiments(view_type=ViewType.ALL)][:100]
        runs = [r.info.run_id for r in c.search_runs(experiments, run_view_type=ViewType.ALL,
                                                      max_results=SAMPLE_RUNS, order_by=["attributes.start_time DESC"])]
        models = [m.name for m in c.search_registered_models(max_results=3)]
        for name in models:
            for version in c.search_model_versions(f"name = '{name}'", max_results=5):
                if version.run_id and version.run_id not in runs:
                    runs.append(version.run_id)
        traces = [t.info.trace_id for t in c.search_traces(locations=experiments, max_results=3,
                                                          include_spans=False)]
    return Sample(runs=runs, models=models, traces=traces)


def describe(client: Client, sample: Sample, *,
             rewrite: Callable[[str | None], str | None] = lambda v: v) -> dict[str, Any]:
    """The sample as plain values, comparable across stores: experiments by name, URIs through ``rewrite``."""
    c = client.mlflow
    found: dict[str, Any] = {}
    with client.connection.activate(), tempfile.TemporaryDirectory() as tmp:
        names: dict[str, str] = {}

        def experiment(eid: str) -> str:
            if eid not in names:
                names[eid] = c.get_experiment(eid).name
            return names[eid]

        for run_id in sample.runs:
            run = c.get_run(run_id)
            info = run.info
            history = {key: sorted({(m.step, m.timestamp, m.value) for m in c.get_metric_history(run_id, key)})
                       for key in run.data.metrics}
            found[f"run {run_id}"] = {
                "experiment": experiment(info.experiment_id), "name": info.run_name, "status": info.status,
                "lifecycle": info.lifecycle_stage, "start": info.start_time, "end": info.end_time,
                "user": info.user_id, "artifact_uri": rewrite(info.artifact_uri), "params": run.data.params,
                "tags": run.data.tags, "metrics": history,
                "artifacts": _artifact_hashes(c, run_id, Path(tmp) / run_id),
            }
        for name in sample.models:
            model = c.get_registered_model(name)
            found[f"model {name}"] = {"aliases": {k: str(v) for k, v in model.aliases.items()}, "tags": model.tags,
                                      "created": model.creation_timestamp}
            for version in c.search_model_versions(f"name = '{name}'", max_results=5):
                found[f"model {name} v{version.version}"] = {
                    "run_id": version.run_id, "status": version.status, "source": rewrite(version.source),
                    "storage_location": rewrite(getattr(version, "storage_location", None)),
                    "created": version.creation_timestamp, "updated": version.last_updated_timestamp,
                    "tags": version.tags}  # not model_id: a file store reports it, SQL stores derive it from source
        for trace_id in sample.traces:
            trace = c.get_trace(trace_id)
            found[f"trace {trace_id}"] = {
                "experiment": experiment(str(_trace_experiment(trace.info))),
                "request_time": trace.info.request_time, "state": str(trace.info.state),
                "spans": sorted((span.name, span.start_time_ns, span.end_time_ns) for span in trace.data.spans)}
    return found


def _trace_experiment(info: Any) -> str:
    location = getattr(info, "trace_location", None)
    mlflow_experiment = getattr(location, "mlflow_experiment", None)
    return str(getattr(mlflow_experiment, "experiment_id", None) or getattr(info, "experiment_id", ""))


def _artifact_hashes(c: Any, run_id: str, directory: Path, path: str | None = None) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for item in c.list_artifacts(run_id, path):
        if item.is_dir:
            hashes.update(_artifact_hashes(c, run_id, directory, item.path))
        elif (item.file_size or 0) > MAX_HASHED_BYTES:
            hashes[item.path] = f"{item.file_size} bytes"
        else:
            local = Path(c.download_artifacts(run_id, item.path, str(directory)))
            hashes[item.path] = hashlib.sha256(local.read_bytes()).hexdigest()
    return hashes


def compare_sample(want: dict[str, Any], got: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """One row per sampled item: equal, or the first fields that differ (source value, target value)."""
    rows = []
    for item, fields in want.items():
        other = got.get(item)
        if other is None:
            rows.append((item, False, "missing in the target"))
            continue
        differ = [f"{name}: {_short(value)} != {_short(other.get(name))}" for name, value in fields.items()
                  if _normal(value) != _normal(other.get(name))]
        rows.append((item, not differ, "; ".join(differ[:3]) or f"{len(fields)} fields equal"))
    return rows


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# --- helpers ----------------------------------------------------------------------------------------------------

def _has_default(client: Client) -> bool:
    with client.connection.activate():
        try:
            client.mlflow.get_experiment("0")
        except Exception:  # noqa: BLE001 - RESOURCE_DOES_NOT_EXIST (a file store may have none)
            return False
    return True


def _has_default_sql(stack: Stack) -> bool:
    """A SQL store's server creates the Default experiment whenever it starts without one."""
    return stack.topology.backend is not Backend.FILE


def _running(stack: Stack) -> bool:
    return any(state.state == "running" for state in stack.states())


def _describe(found: dict[str, int]) -> str:
    return ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in found.items())
