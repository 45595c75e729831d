"""``python -m mlflowkit_server.prepare [mlflow <args>]``: the stores this process's environment names, made ready
for this MLflow; then, given ``mlflow <args>``, MLflow's CLI with them, in this process (as the ``mlflow`` script).

- ``MLFLOW_BACKEND_STORE_URI`` (PostgreSQL): once the database answers, and under a PostgreSQL advisory lock (servers
  that start together, and `mlflowkit upgrade`'s one-shot, take turns), the schema is brought to this MLflow's. An
  empty database gets MLflow's tables at this version's newest schema, stamped, as MLflow's own store would make
  them (MLflow 2.x, 3.1 and 3.2 cannot `db upgrade` an empty database: their first migration alters tables that do
  not exist yet); an older schema is upgraded (what `mlflow db upgrade` does); a schema this MLflow does not know (a
  newer MLflow's) is left alone, for MLflow to refuse in its own words.
- ``MLFLOW_S3_ENDPOINT_URL`` and ``S3_BUCKET``: once S3 answers, the bucket is created if it is missing.

A server started this way starts with its stores instead of after one-shots that prepare them: MLflow's CLI (about
2 s to import) loads in a thread while the database and S3 come up, and ``mlflow server`` serves in this process
(:mod:`mlflowkit_server.in_process`). Each store is waited for at most
``MLFLOWKIT_STORES_WAIT`` seconds (default 60); then this exits 1 with the store's last error.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

# The PostgreSQL advisory lock the kit's schema changes take: "mlflowki" in ASCII, as a bigint.
SCHEMA_LOCK = int.from_bytes(b"mlflowki", "big")
POLL = 0.2  # seconds between attempts while a store does not answer yet
T = TypeVar("T")


def say(message: str) -> None:
    print(f"prepare: {message}", flush=True)


def patiently(what: str, attempt: Callable[[], T], retry: tuple[type[BaseException], ...], limit: float) -> T:
    """``attempt()`` until it raises none of ``retry``; after ``limit`` seconds, exit naming the last error."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return attempt()
        except retry as exc:
            if time.monotonic() >= deadline:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SystemExit(f"prepare: {what} did not answer in {limit:.0f} s: {first}") from None
            time.sleep(POLL)


def schema_action(found: str | None, has_tables: bool, head: str, known: set[str]) -> str:
    """What the schema needs: "create" (an empty database), "none" (at this MLflow's newest revision, or at one it
    does not know), or "upgrade"."""
    if not has_tables:
        return "create"
    if found == head or (found is not None and found not in known):
        return "none"
    return "upgrade"


def prepare_schema(uri: str, limit: float, loaded: threading.Thread) -> str:
    """``loaded``: the thread importing MLflow, joined once the database answers (the two overlap)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        lock = patiently("the database", lambda: engine.connect().execution_options(isolation_level="AUTOCOMMIT"),
                         (sqlalchemy.exc.OperationalError,), limit)
        with lock:
            if lock.dialect.name == "postgresql":  # released when the connection closes, whatever happens
                lock.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
            loaded.join()
            from alembic.script import ScriptDirectory
            from mlflow.store.db import utils

            inspector = sqlalchemy.inspect(lock)
            found = (lock.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
                     if inspector.has_table("alembic_version") else None)
            scripts = ScriptDirectory.from_config(utils._get_alembic_config(uri))
            head = scripts.get_current_head() or ""
            known = {script.revision for script in scripts.walk_revisions()}
            action = schema_action(found, bool(inspector.get_table_names()), head, known)
            if action == "create":
                utils._initialize_tables(engine)
                return f"an empty database: MLflow's tables created at revision {head}"
            if action == "upgrade":
                utils._upgrade_db(engine)
                return f"schema upgraded from revision {found} to {head}"
            if found == head:
                return f"schema at revision {head}"
            return f"schema at revision {found}, which this MLflow does not know (a newer MLflow's): left alone"
    finally:
        engine.dispose()


def prepare_bucket(endpoint: str, bucket: str, limit: float) -> str:
    import boto3
    import botocore.config
    import botocore.exceptions

    s3 = boto3.client("s3", endpoint_url=endpoint, config=botocore.config.Config(
        connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}))

    def ensure() -> str:
        try:
            s3.head_bucket(Bucket=bucket)
            return f"bucket {bucket} exists"
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        try:
            s3.create_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as exc:  # another server made it meanwhile
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        return f"bucket {bucket} created"

    # Until S3 is up it refuses connections or answers 5xx (a ClientError too); a wrong key is retried to the end,
    # then named.
    return patiently("S3", ensure, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError), limit)


def main(argv: list[str]) -> int:
    if argv and argv[0] != "mlflow":
        raise SystemExit("usage: python -m mlflowkit_server.prepare [mlflow <args>]")
    limit = float(os.environ.get("MLFLOWKIT_STORES_WAIT", "60"))
    uri = os.environ.get("MLFLOW_BACKEND_STORE_URI", "")
    endpoint, bucket = os.environ.get("MLFLOW_S3_ENDPOINT_URL", ""), os.environ.get("S3_BUCKET", "")
    import sqlalchemy  # noqa: F401  (before the thread: the two never import the same module at once)

    if endpoint and bucket:
        import boto3  # noqa: F401
    # What takes long to import loads while the stores come up: MLflow's CLI, or its schema code alone.
    loaded = threading.Thread(target=__import__, args=("mlflow.cli" if argv else "mlflow.store.db.utils",),
                              daemon=True)
    loaded.start()
    if endpoint and bucket:
        say(prepare_bucket(endpoint, bucket, limit))
    if uri.startswith("postgresql"):
        say(prepare_schema(uri, limit, loaded))
    if not argv:
        return 0
    loaded.join()
    from mlflowkit_server import in_process

    return in_process.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
