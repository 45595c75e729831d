"""ServedModel.wait: a real HTTP server on 127.0.0.1 that answers /ping only after a while; how often the
liveness callback is asked; a dead server fails at once."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlflowkit.errors import KitError
from mlflowkit.serving import ServedModel
from mlflowkit.stack import _state


def _server(ready_after: float) -> ThreadingHTTPServer:
    began = time.monotonic()

    class Ping(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200 if time.monotonic() - began >= ready_after else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_wait_sees_a_ready_server_within_a_quarter_second_and_asks_alive_sparingly():
    server = _server(ready_after=1.0)
    asked: list[float] = []
    try:
        served = ServedModel(f"http://127.0.0.1:{server.server_port}")
        began = time.monotonic()
        served.wait(timeout=10, alive=lambda: asked.append(time.monotonic()) or True, alive_every=0.5)
        took = time.monotonic() - began
    finally:
        server.shutdown()
    assert 1.0 <= took < 1.5, took
    assert 1 <= len(asked) <= 2, asked  # every 0.5 s, not on every poll (each ask is a `docker inspect`)


def test_wait_stops_at_once_when_the_server_is_dead():
    server = _server(ready_after=60)
    try:
        served = ServedModel(f"http://127.0.0.1:{server.server_port}")
        began = time.monotonic()
        with pytest.raises(KitError, match="exited before answering /ping"):
            served.wait(timeout=30, alive=lambda: False, alive_every=0.2)
        assert time.monotonic() - began < 2
    finally:
        server.shutdown()


def test_a_restarted_container_is_counted():
    state = _state({"Name": "/p-serve-1", "RestartCount": 2, "State": {"Status": "running"},
                    "Config": {"Labels": {"com.docker.compose.service": "serve"}}})
    assert (state.service, state.state, state.restarts) == ("serve", "running", 2)
    assert _state({"Name": "/x", "State": {}}).restarts == 0
