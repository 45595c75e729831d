"""MLflow's SQL tables, copied and rewritten with SQLAlchemy alone: the row-level half of `mlflowkit migrate`.

Imported on the host (renumbering and URI rewriting of a temporary SQLite copy) and run inside a PostgreSQL
stack's ``migrate`` one-shot (handed over in the environment by ``mlflowkit.backup.script_command``), whose
environment holds ``MLFLOW_BACKEND_STORE_URI`` and which has SQLAlchemy and psycopg2; PostgreSQL is not published
on the host.
Standard library and SQLAlchemy only.

Modes (inside a stack):
  load          a SQLite database on stdin -> every row into the stack's store, in foreign-key order, in one
                transaction that first empties every table; sequences reset afterwards. One line per table.
  rewrite OLD NEW [OLD NEW ...]   artifact URIs that start with OLD start with NEW afterwards (see rewrite_uris)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable

from sqlalchemy import MetaData, String, create_engine, text
from sqlalchemy.engine import Connection, Engine

INT32_MAX = 2**31 - 1
SKIPPED_TABLES = frozenset({"alembic_version"})  # the schema's revision: the target's own, checked equal
# Columns that hold an artifact URI (checked against MLflow 3.17's schema), and tag/metadata values, which point
# into the artifact store when their whole value starts with its root (trace_tags' mlflow.artifactLocation).
URI_COLUMNS: dict[str, tuple[str, ...]] = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "model_versions": ("source", "storage_location"),
    "logged_models": ("artifact_location",),
    "workspaces": ("default_artifact_root",),
    "trace_tags": ("value",),
    "trace_request_metadata": ("value",),
    "tags": ("value",),
    "experiment_tags": ("value",),
    "logged_model_tags": ("tag_value",),
    "model_version_tags": ("value",),
    "registered_model_tags": ("value",),
}
BATCH = 1000

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- experiment ids ---------------------------------------------------------------------------------------------

def plan_renumbering(experiments: Iterable[tuple[int, int | None]]) -> dict[int, int]:
    """``{old id: new id}`` for the experiments whose id does not fit a 32-bit integer column.

    ``experiments``: (id, creation time). A file store draws random 64-bit ids; PostgreSQL's ``experiment_id``
    columns are ``integer``. Those experiments take the next ids after the largest one that fits, oldest first,
    so the order in which they were created is kept; ids that fit are never changed.
    """
    rows = list(experiments)
    fitting = [eid for eid, _ in rows if eid <= INT32_MAX]
    too_large = sorted(((created or 0, eid) for eid, created in rows if eid > INT32_MAX))
    start = max(fitting, default=0) + 1
    if start + len(too_large) - 1 > INT32_MAX:
        raise ValueError("no room below 2^31 for the renumbered experiments")
    return {eid: start + number for number, (_, eid) in enumerate(too_large)}


def renumber_experiments(conn: Connection) -> dict[int, int]:
    """Apply :func:`plan_renumbering` to every column that names an experiment: each table's ``experiment_id``
    and the experiment ends of ``entity_associations`` (whose ids are text)."""
    rows = conn.execute(text("SELECT experiment_id, creation_time FROM experiments")).all()
    mapping = plan_renumbering((int(eid), created) for eid, created in rows)
    if not mapping:
        return mapping
    metadata = MetaData()
    metadata.reflect(conn)
    tables = [t.name for t in metadata.sorted_tables if "experiment_id" in t.c]
    associations = metadata.tables.get("entity_associations")
    for old, new in mapping.items():
        for table in tables:
            conn.execute(text(f"UPDATE {table} SET experiment_id = :new WHERE experiment_id = :old"),
                         {"new": new, "old": old})
        if associations is not None:
            for end in ("source", "destination"):
                conn.execute(text(f"UPDATE entity_associations SET {end}_id = :new "
                                  f"WHERE {end}_type = 'experiment' AND {end}_id = :old"),
                             {"new": str(new), "old": str(old)})
    return mapping


# --- artifact URIs ----------------------------------------------------------------------------------------------

def rewrite_value(value: str | None, prefixes: list[tuple[str, str]]) -> str | None:
    """``value`` with the first matching old prefix replaced by its new one (the same rule as the SQL)."""
    if value is None:
        return None
    for old, new in prefixes:
        if value.startswith(old):
            return new + value[len(old):]
        if value == old.rstrip("/"):
            return root(new)
    return value


def root(prefix: str) -> str:
    """The root itself, as an artifact location: ``s3://b/`` -> ``s3://b``, but ``mlflow-artifacts:/`` stays (the
    runs below ``mlflow-artifacts:`` would lose their slash)."""
    stripped = prefix.rstrip("/")
    return prefix if stripped.endswith(":") else stripped


def rewrite_uris(conn: Connection, prefixes: list[tuple[str, str]]) -> int:
    """Rewrite every URI column (:data:`URI_COLUMNS`) whose value starts with an old prefix, or is the old root
    itself; returns how many values changed. Plain SQL (``substr``, ``||``) that SQLite and PostgreSQL share."""
    metadata = MetaData()
    metadata.reflect(conn, only=[t for t in URI_COLUMNS if conn.dialect.has_table(conn, t)])
    changed = 0
    for table_name, columns in URI_COLUMNS.items():
        table = metadata.tables.get(table_name)
        if table is None:
            continue
        for column in columns:
            if column not in table.c or not isinstance(table.c[column].type, String):
                continue
            for old, new in prefixes:
                result = conn.execute(
                    text(f"UPDATE {table_name} SET {column} = :new || substr({column}, :rest) "
                         f"WHERE substr({column}, 1, :length) = :old"),
                    {"new": new, "rest": len(old) + 1, "length": len(old), "old": old})
                changed += result.rowcount or 0
                root_old, root_new = old.rstrip("/"), root(new)
                if root_old != old:
                    result = conn.execute(text(f"UPDATE {table_name} SET {column} = :new WHERE {column} = :old"),
                                          {"new": root_new, "old": root_old})
                    changed += result.rowcount or 0
    return changed


# --- copying rows -----------------------------------------------------------------------------------------------

def revision(conn: Connection) -> str:
    return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())


def copy_rows(source: Engine, target: Engine, log: Log = _stderr) -> dict[str, int]:
    """Every row of ``source`` into ``target`` (same alembic revision), which is emptied first; one transaction.

    Tables go in foreign-key order (the target's reflected schema sorts them); columns are the target's that the
    source also has, generated ones left out; values go through both sides' reflected types (SQLite's 0/1 become
    PostgreSQL booleans).
    """
    source_meta, target_meta = MetaData(), MetaData()
    with source.connect() as src:
        source_meta.reflect(src)
        source_revision = revision(src)
    copied: dict[str, int] = {}
    with target.begin() as dst:
        target_meta.reflect(dst)
        if revision(dst) != source_revision:
            raise SystemExit(f"schema revisions differ: source {source_revision}, target {revision(dst)}; "
                             "both stores must be at the same MLflow version")
        tables = [t for t in target_meta.sorted_tables if t.name not in SKIPPED_TABLES]
        for table in reversed(tables):
            dst.execute(table.delete())
        with source.connect() as src:
            for table in tables:
                origin = source_meta.tables.get(table.name)
                if origin is None:
                    continue
                # Generated columns (spans.duration_ns) are computed by the target itself.
                names = [c.name for c in table.c if c.name in origin.c and c.computed is None]
                result = src.execute(origin.select().with_only_columns(*(origin.c[n] for n in names)))
                count = 0
                while rows := result.fetchmany(BATCH):
                    dst.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in rows])
                    count += len(rows)
                if count:
                    copied[table.name] = count
                    log(f"  {table.name}: {count} rows")
        reset_sequences(dst)
    return copied


def reset_sequences(conn: Connection) -> None:
    """PostgreSQL: each serial/identity column's sequence continues after the largest copied value."""
    if conn.dialect.name != "postgresql":
        return
    columns = conn.execute(text(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')")).all()
    for table, column in columns:
        conn.execute(text(f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                          f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"),
                     {"table": table, "column": column})


# --- inside a stack ---------------------------------------------------------------------------------------------

def main(argv: list[str]) -> None:
    target = create_engine(os.environ["MLFLOW_BACKEND_STORE_URI"])
    mode = argv[0] if argv else ""
    if mode == "load":
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "source.db")
            with open(path, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out)
            copied = copy_rows(create_engine(f"sqlite:///{path}"), target, log=print)
        print(json.dumps(copied))
    elif mode == "rewrite" and len(argv) >= 3 and len(argv) % 2 == 1:
        pairs = list(zip(argv[1::2], argv[2::2], strict=True))
        with target.begin() as conn:
            print(json.dumps({"rewritten": rewrite_uris(conn, pairs)}))
    else:
        sys.exit(f"usage: load < source.db | rewrite OLD NEW [OLD NEW ...] (got {argv})")


if __name__ == "__main__":
    main(sys.argv[1:])
