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

Loaded at interpreter start by ``mlflowkit-server.pth``; it does nothing until MLflow imports its database utilities.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import ModuleType
from typing import Any

from mlflowkit_server import after_import

TARGET = "mlflow.store.db.utils"
NESTING = 2  # sessions one request holds at once (a session, and one opened inside it)


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


def gated(make_session: Callable[..., AbstractContextManager[Any]], gate: Gate) -> Callable[..., Any]:
    @contextmanager
    def make_managed_session(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with gate.admit(), make_session(*args, **kwargs) as session:
            yield session

    return make_managed_session


def install(utils: ModuleType) -> None:
    """Wrap ``utils._get_managed_session_maker``, the factory of every SQL store's ``ManagedSessionMaker``."""
    original = getattr(utils, "_get_managed_session_maker", None)
    if original is None:
        return

    def _get_managed_session_maker(SessionMaker: Any, db_type: str) -> Callable[..., Any]:  # noqa: N803 (MLflow's)
        make_session = original(SessionMaker, db_type)
        gate = Gate.of(getattr(SessionMaker, "kw", {}).get("bind"))
        return make_session if gate is None else gated(make_session, gate)

    utils._get_managed_session_maker = _get_managed_session_maker


after_import.register(TARGET, install)
