"""A store's sessions admitted so that a session opened inside another always finds a database connection.

MLflow's SQL stores open a session inside another: ``log_batch`` holds one (it read the run) while ``_log_params``,
``_log_metrics`` and ``_set_tags`` each open their own. So every such request needs two of the engine's pooled
connections at once. The server runs its Flask app in a thread per request (anyio's 40 threads a worker), so once
as many requests as the pool holds connections (``MLFLOW_SQLALCHEMYSTORE_POOL_SIZE`` + ``…_MAX_OVERFLOW``:
SQLAlchemy's 5 + 10 by default, the ``ha`` stack's 2 + 3) each hold their first, every one of them waits for a
second that none will return: for the pool's 30 s timeout, then the calls fail ("QueuePool limit … reached"). Seen
as ``ha``'s one replica collapsing at 8 writers (2 + 3 connections), and ``postgres-s3`` at 40 (5 + 10): ~1 and 32
rows/s with failed calls, against 400 and 789 with the gate's first version (connections ÷ 2 places;
benchmarks/results/20261127T1320Z-session-gate-ab/, and 20261127T131208Z/ for this one).

So each engine with a bounded pool gets a gate: a thread's outermost session waits for one of :func:`places`
before it opens, its nested sessions pass through, and the place is freed when the outermost session closes. With
NESTING 2 that is one place fewer than the pool's connections: however many of the admitted requests hold their
first connection, one connection is left for a nested session, whose request then finishes and frees both. The
others wait their turn instead of the pool's timeout, and below the pool's size nobody waits at all (a place per
connection but one: a request held up by the database, as in a failover, does not hold up the others more than the
pool itself would). ``tests/unit/test_sessions.py`` measures the nesting of the store's requests against
:data:`NESTING`.

Where ``MLFLOWKIT_DB_WAIT_SECONDS`` is set (the ``ha`` stack: 30), a PostgreSQL session also waits for its database
before its first statement: it runs ``SELECT 1`` until the database answers, while the error is one of a database
out of reach (:func:`transient`), until that many seconds after the thread's outermost session opened (the sessions
opened inside it share its deadline). Why: behind PgBouncer, once a server login has failed (no leader during
a failover, a stalled node) and no server connection is left, PgBouncer fails every query at once until a login
succeeds; without the wait those requests failed (42, 54 and 49 calls of a 4-writer load in an 8 s database stall,
against 3, 4 and 3 with it: benchmarks/results/20261127T1620Z-db-wait-ab/). Nothing of the session has run when its
first statement fails, so waiting and trying again is safe; the ``SELECT 1`` begins the session's transaction, so
PgBouncer keeps that server for the statements up to the session's first commit (MLflow commits inside some
sessions: what follows such a commit is not covered). A statement that fails later (the leader lost under a running
transaction) still fails its request.

Loaded at interpreter start by ``mlflowkit-server.pth``; it does nothing until MLflow imports its database utilities.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from types import ModuleType
from typing import Any

from mlflowkit_server import after_import

TARGET = "mlflow.store.db.utils"
NESTING = 2  # sessions one request holds at once (a session, and one opened inside it)
WAIT_VARIABLE = "MLFLOWKIT_DB_WAIT_SECONDS"  # seconds a PostgreSQL session waits for its database; unset: none
POLL = 0.5  # seconds between two tries of a session's first statement
# Errors of a database out of reach as psycopg2 reports them (from PgBouncer, the server, the network), lower case.
TRANSIENT = ("server login has been failing", "server closed the connection unexpectedly", "server conn crashed",
             "could not connect to server", "connection refused", "the database system is starting up",
             "the database system is shutting down", "terminating connection due to administrator command")
PERMANENT = ("authentication failed",)  # never transient, whatever else the message says (a cached login error)
log = logging.getLogger(__name__)
_request = threading.local()  # the deadline of the thread's request while its outermost session is open


def places(connections: int) -> int:
    """Requests that may hold connections at once so that the ``connections`` can never all be held by requests
    each waiting for one more: every holder holds at most NESTING - 1 while it waits."""
    return max(1, (connections - 1) // (NESTING - 1))


class Gate:
    """Places for the outermost sessions of one engine; a thread's nested sessions pass through."""

    def __init__(self, count: int, timeout: float) -> None:
        self.places, self.timeout = count, timeout
        self.free = threading.BoundedSemaphore(count)
        self.local = threading.local()
        self.deepest = 0  # the most sessions one thread held at once (tests measure the stores with it)

    @classmethod
    def of(cls, engine: Any) -> Gate | None:
        """The engine's gate (one per pool, made on first use), or None if its pool does not bound connections."""
        pool = getattr(engine, "pool", None)
        size, overflow = getattr(pool, "size", None), getattr(pool, "_max_overflow", None)
        if not callable(size) or not isinstance(overflow, int) or overflow < 0:
            return None  # NullPool, SQLite's thread-local pools, an unbounded overflow: nothing to run out of
        gate = pool.__dict__.get("_mlflowkit_gate")
        if gate is None:
            gate = cls(places(size() + overflow), float(pool.timeout()))
            pool.__dict__["_mlflowkit_gate"] = gate
        return gate

    @contextmanager
    def admit(self) -> Iterator[None]:
        depth = getattr(self.local, "depth", 0)
        if depth == 0 and not self.free.acquire(timeout=self.timeout):
            from sqlalchemy.exc import TimeoutError as PoolTimeout

            raise PoolTimeout(f"{self.places} requests held this store's database sessions for {self.timeout:g} s "
                              "(raise MLFLOW_SQLALCHEMYSTORE_POOL_SIZE / MAX_OVERFLOW for more at once)")
        self.local.depth = depth + 1
        self.deepest = max(self.deepest, depth + 1)
        try:
            yield
        finally:
            self.local.depth = depth
            if depth == 0:
                self.free.release()


def transient(error: BaseException) -> bool:
    """The database is out of reach for now (a disconnect SQLAlchemy saw, or one of :data:`TRANSIENT`), as opposed
    to an error of the statement, the login or the schema."""
    if getattr(error, "connection_invalidated", False):
        return True
    message = str(error).lower()
    return any(text in message for text in TRANSIENT) and not any(text in message for text in PERMANENT)


def wait_for_database(session: Any, deadline: float, sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> int:
    """Run the session's first statement, ``SELECT 1``, until the database answers or the ``deadline`` (of
    ``clock``) has passed (then the last error is raised), as long as each error is :func:`transient`; the failed
    tries."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    failed = 0
    while True:
        try:
            session.execute(text("SELECT 1"))
            if failed:
                log.warning("mlflowkit: the database answers again after %d failed tries", failed)
            return failed
        except DBAPIError as error:
            left = deadline - clock()
            if not transient(error) or left <= 0:
                raise
            if not failed:
                log.warning("mlflowkit: database out of reach (%s); waiting up to %.0f s",
                            str(error).strip().splitlines()[0][:200], left)
            failed += 1
            with suppress(DBAPIError):  # the connection is gone: the next try checks out another
                session.rollback()
            sleep(min(POLL, left))


def wait_seconds(db_type: str) -> float:
    """MLFLOWKIT_DB_WAIT_SECONDS for a PostgreSQL store; 0 for another database, or unset."""
    raw = os.environ.get(WAIT_VARIABLE, "").strip()
    if db_type != "postgresql" or not raw:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        log.warning("mlflowkit: %s=%r is not a number of seconds; sessions do not wait", WAIT_VARIABLE, raw)
        return 0.0
    return seconds


def managed(make_session: Callable[..., AbstractContextManager[Any]], gate: Gate | None,
            wait: float) -> Callable[..., Any]:
    """MLflow's session factory with the engine's gate (if any) around it and the wait for the database (if any)
    before the first statement."""
    @contextmanager
    def make_managed_session(*args: Any, **kwargs: Any) -> Iterator[Any]:
        outermost = getattr(_request, "deadline", None) is None
        if wait and outermost:
            _request.deadline = time.monotonic() + wait
        try:
            with gate.admit() if gate else nullcontext(), make_session(*args, **kwargs) as session:
                if wait:
                    wait_for_database(session, _request.deadline)
                yield session
        finally:
            if wait and outermost:
                _request.deadline = None

    return make_managed_session


def install(utils: ModuleType) -> None:
    """Wrap ``utils._get_managed_session_maker``, the factory of every SQL store's ``ManagedSessionMaker``."""
    original = getattr(utils, "_get_managed_session_maker", None)
    if original is None:
        return

    def _get_managed_session_maker(SessionMaker: Any, db_type: str) -> Callable[..., Any]:  # noqa: N803 (MLflow's)
        make_session = original(SessionMaker, db_type)
        gate, wait = Gate.of(getattr(SessionMaker, "kw", {}).get("bind")), wait_seconds(db_type)
        return make_session if gate is None and not wait else managed(make_session, gate, wait)

    utils._get_managed_session_maker = _get_managed_session_maker


after_import.register(TARGET, install)
