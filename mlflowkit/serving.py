"""A served model: wait for ``/ping``, ``predict(dataframe)`` over HTTP, and stop what was started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlflowkit.client import MANAGED_VARIABLES, Connection
from mlflowkit.errors import KitError


@dataclass(frozen=True)
class ServedModel:
    """An MLflow scoring server at ``url`` (``mlflow models serve``)."""

    url: str
    timeout: float = 30  # per request

    def ping(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.url}/ping", timeout=min(self.timeout, 5)).status_code == 200
        except requests.RequestException:
            return False

    def wait(self, timeout: float, alive: Any = None, *, alive_every: float = 2.0) -> None:
        """Poll ``/ping`` (every 0.25 s) until it answers 200; ``alive()`` (asked every ``alive_every`` seconds)
        returning False aborts early."""
        deadline = time.monotonic() + timeout
        asked = time.monotonic()
        while time.monotonic() < deadline:
            if self.ping():
                return
            if alive is not None and time.monotonic() - asked >= alive_every:
                asked = time.monotonic()
                if not alive():
                    raise KitError(f"the scoring server for {self.url} exited before answering /ping.")
            time.sleep(0.25)
        raise KitError(f"{self.url}/ping did not answer 200 within {timeout:.0f} s.")

    def predict(self, frame: Any) -> list[Any]:
        """POST ``frame`` (a pandas DataFrame) to ``/invocations``; the predictions as a list."""
        import requests

        payload = {"dataframe_split": frame.to_dict(orient="split")}
        try:
            response = requests.post(f"{self.url}/invocations", json=payload, timeout=self.timeout)
        except requests.RequestException as exc:
            raise KitError(f"POST {self.url}/invocations failed: {exc}") from exc
        if response.status_code != 200:
            raise KitError(f"POST {self.url}/invocations answered {response.status_code}: {response.text[:300]}")
        return list(response.json()["predictions"])


@contextmanager
def serve_local(model_uri: str, connection: Connection, *, port: int | None = None,
                timeout: float = 120, workers: int = 1) -> Iterator[ServedModel]:
    """Run ``mlflow models serve`` as a local process on 127.0.0.1:``port`` (default: a free one); always
    stopped on exit, its process group included."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if k not in MANAGED_VARIABLES} | connection.environ()
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # it execs uvicorn from PATH
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    served = ServedModel(f"http://127.0.0.1:{port}")
    # Output to a file, not a pipe: a chatty server never blocks on it. Its own process group, so the
    # scoring server's workers go down with it.
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            try:
                served.wait(timeout, alive=lambda: proc.poll() is None)
            except KitError as exc:
                _stop(proc)
                log.seek(0)
                raise KitError(str(exc), details=log.read()[-3000:]) from None
            yield served
        finally:
            _stop(proc)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group we started, SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
