"""``mlflow gc`` where each topology can run it: permanently delete runs (and experiments, logged models) in the
``deleted`` stage, their artifacts included.

MLflow's gc needs the backend store *and* a way to delete artifacts, which the topologies split differently:

- local stores (file, sqlite, server-file): this host sees the store and the artifact directory at their paths;
- a tracking server on PostgreSQL that holds the S3 keys (postgres-s3, proxied): run inside it, with its own
  address as the tracking URI so ``mlflow-artifacts:/`` URIs are deleted through its artifact proxy;
- a separate artifacts server (artifacts-only): run in the serving service's container, which shares the artifacts
  server's network, so the ``mlflow-artifacts://<host>:<port>/`` URIs the runs carry reach it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from mlflowkit.backup import check_supported
from mlflowkit.errors import KitError
from mlflowkit.stack import Stack
from mlflowkit.topology import ArtifactMode, Backend

Log = Callable[[str], None]
# Inside a container: the store URI from its environment (never on a command line), the admin of --auth if any.
_IN_STACK = ('export MLFLOW_TRACKING_USERNAME="${MLFLOW_TRACKING_USERNAME:-${MLFLOW_AUTH_ADMIN_USERNAME:-}}" '
             'MLFLOW_TRACKING_PASSWORD="${MLFLOW_TRACKING_PASSWORD:-${MLFLOW_AUTH_ADMIN_PASSWORD:-}}"; '
             'exec mlflow gc --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" "$@"')


def collect(stack: Stack, log: Log, *, older_than: str | None = None) -> str:
    """Run ``mlflow gc`` for ``stack`` (which must be up); its output."""
    check_supported(stack.topology, "gc")
    if not any(state.state == "running" for state in stack.states()):
        raise KitError(f"{stack.topology.name} is not up.", hint=f"`mlflowkit up {stack.topology.name}` first.")
    args = ["--older-than", older_than] if older_than else []
    topology = stack.topology
    timeout = stack.settings.command_timeout * 5
    if topology.backend is not Backend.POSTGRESQL:
        data = stack.env()["MLFLOW_DATA_DIR"]
        argv = [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", topology.backend.local_uri(data), *args]
        log(f"gc: {' '.join(argv[1:])}")
        env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", **stack.connection().environ()}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=Path(data))
        if proc.returncode != 0:
            raise KitError(f"mlflow gc failed for {topology.name}: {proc.stderr.strip().splitlines()[-1:]}",
                           details=proc.stderr)
        return proc.stdout + proc.stderr
    server = topology.port("MLFLOW_PORT")
    if topology.artifact_mode is ArtifactMode.ARTIFACTS_SERVER:
        # The runs' artifact URIs name the artifacts server as clients reach it; the serving service shares its
        # network namespace, so that address works there. The store URI goes in through the environment.
        env = stack.env()
        uri = (f"postgresql+psycopg2://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/"
               f"{env['POSTGRES_DB']}")
        compose = stack.compose(with_serve=True)
        compose = replace(compose, env={**(compose.env or {}), "MLFLOW_BACKEND_STORE_URI": uri})
        log(f"gc: mlflow gc in a one-shot of {topology.serve_service} (the artifacts server's network)")
        return compose.call("run", "--rm", "--no-deps", "-T", "-e", "MLFLOW_BACKEND_STORE_URI", "--entrypoint",
                            "sh", topology.serve_service, "-c", _IN_STACK, "gc", *args, timeout=timeout)
    log(f"gc: mlflow gc inside {server.service}, deleting artifacts through it")
    return stack.compose().exec(server.service, ["sh", "-c", _IN_STACK, "gc", "--tracking-uri",
                                                 f"http://127.0.0.1:{server.container_port}", *args],
                                timeout=timeout)
