"""The MLflow image's Nagle fix (stacks/images/mlflow/plugin/mlflowkit_server/nodelay.py), on real loopback sockets:
a listening socket bound as uvicorn's multi-worker mode binds it (proto 0) hands out connections with TCP_NODELAY."""

from __future__ import annotations

import asyncio
import importlib
import socket
import sys
from asyncio import base_events
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stacks" / "images" / "mlflow" / "plugin"))


@pytest.fixture
def patched(monkeypatch):
    monkeypatch.setattr(base_events, "_set_nodelay", base_events._set_nodelay)  # restored after the test
    return importlib.reload(importlib.import_module("mlflowkit_server.nodelay"))


async def accepted_nodelay(listening: socket.socket) -> int:
    """TCP_NODELAY of the server side of one connection accepted by an asyncio server on ``listening``."""
    seen: list[int] = []

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=listening)
    async with server:
        _, writer = await asyncio.open_connection(*listening.getsockname())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
    return seen[0]


def uvicorn_style_socket() -> socket.socket:
    sock = socket.socket(family=socket.AF_INET)  # what uvicorn's Config.bind_socket does for --workers > 1
    sock.bind(("127.0.0.1", 0))
    assert sock.proto == 0
    return sock


def test_without_the_fix_asyncio_leaves_nagle_on_for_such_a_socket():
    assert asyncio.run(accepted_nodelay(uvicorn_style_socket())) == 0  # the cause, as Python has it


def test_with_the_fix_the_accepted_connection_has_nodelay(patched):
    assert asyncio.run(accepted_nodelay(uvicorn_style_socket())) == 1


def test_the_fix_leaves_other_sockets_alone(patched):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket(socket.AF_UNIX) as unix:
        patched.set_nodelay(udp)
        patched.set_nodelay(unix)  # neither has TCP options; setting one would raise
