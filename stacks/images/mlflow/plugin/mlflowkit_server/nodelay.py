"""TCP_NODELAY on every connection an asyncio server in this image accepts, whatever its listening socket.

asyncio turns Nagle off only on sockets whose ``proto`` is IPPROTO_TCP. uvicorn with ``--workers`` > 1 (MLflow's
``--workers``, and ``mlflow models serve`` with workers) binds the shared listening socket itself as
``socket.socket(family)`` — proto 0 — so the connections its workers accept keep Nagle on, and every kept-alive
response waits for the client's delayed ACK: ~40 ms a request (uvicorn#3149; docs/performance.md). A stream socket of
the internet families with proto 0 *is* TCP, so this accepts it too. Loaded at interpreter start by
``mlflowkit-server.pth`` (the image's Dockerfile writes it).
"""

from __future__ import annotations

import socket
from asyncio import base_events


def set_nodelay(sock: socket.socket) -> None:
    if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
            and sock.proto in (0, socket.IPPROTO_TCP)):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


base_events._set_nodelay = set_nodelay  # type: ignore[attr-defined]
