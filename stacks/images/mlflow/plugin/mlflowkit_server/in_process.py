"""``python -m mlflowkit_server.in_process mlflow <args>``: MLflow's CLI, with ``mlflow server`` serving in this
process instead of in a uvicorn process it spawns. (:mod:`mlflowkit_server.prepare` ends the same way.)

``mlflow server`` (MLflow 3.17) imports MLflow's CLI, prepares the stores, then spawns ``python -m uvicorn …
mlflow.server.fastapi_app:app`` and stays beside it only to forward signals and wait. That child imports MLflow a
second time (about 1.7 s of CPU at every start, the cores shared with the stack's other services) and the parent
holds ~150 MB for nothing. Started through this module, the CLI's spawn is intercepted: the
command and environment MLflow built are kept, the CLI unwinds, and this process serves them with uvicorn's own
command line (the app import then costs ~0.1 s: MLflow is loaded). The packages that read the server's environment
at import (:data:`REIMPORTED`) are imported again first, under that environment: ``mlflow.server`` (its security
middleware, its Prometheus exporter), and ``prometheus_client`` with its Flask exporter (whether metrics go to the
multiprocess directory; and a fresh default registry, where ``mlflow.server`` registers its metrics again).

Only what this process can serve exactly as the child would is taken: uvicorn through this interpreter, not waited
for, and no job runner to start beside it (MLflow starts one only when its job execution is enabled, and then its
environment names the runner's queue). Anything else — gunicorn or waitress, older MLflow versions that wait for
their server — is spawned by MLflow as before.

``mlflow models serve --env-manager local`` is taken the same way: after downloading the model, MLflow's pyfunc
backend starts ``bash -c "exec uvicorn … mlflow.pyfunc.scoring_server.app:app"`` (its environment names the model's
local path) and waits for it. Where that ``uvicorn`` is this interpreter's, the launcher serves the scoring app here.
"""

from __future__ import annotations

import gc
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from mlflowkit_server import after_import

UVICORN = [sys.executable, "-m", "uvicorn"]
JOB_QUEUE = "_MLFLOW_HUEY_STORAGE_PATH"  # mlflow.server.constants.HUEY_STORAGE_PATH_ENV_VAR
REIMPORTED = ("mlflow.server", "prometheus_client", "prometheus_flask_exporter")
SCORING_APP = "mlflow.pyfunc.scoring_server.app:app"
SCORING_BACKEND = "mlflow.pyfunc.backend"  # where `mlflow models serve` starts its scoring server


class Launch(BaseException):
    """Raised in place of MLflow's spawn of its server (a BaseException: no ``except Exception`` on the way holds
    it)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        super().__init__(" ".join(command))
        self.command, self.env = list(command), dict(env)


def servable(command: Sequence[str], synchronous: bool, env: Mapping[str, str]) -> bool:
    """Whether this process can serve ``command`` as MLflow's spawned child would."""
    return list(command[:len(UVICORN)]) == UVICORN and not synchronous and JOB_QUEUE not in env


def scoring_command(cmd: Any, env: Mapping[str, str]) -> list[str] | None:
    """The uvicorn command line of MLflow's ``bash -c "exec uvicorn … <scoring app>"``, run by this interpreter; None
    for anything else, or where ``env``'s PATH finds another interpreter's ``uvicorn``."""
    if not isinstance(cmd, list) or len(cmd) != 3 or cmd[:2] != ["bash", "-c"]:
        return None
    words = shlex.split(cmd[2])
    if words[:2] != ["exec", "uvicorn"] or words[-1] != SCORING_APP:
        return None
    found = shutil.which("uvicorn", path=env.get("PATH"))
    if found is None or Path(found).parent != Path(sys.executable).parent:
        return None
    return [*UVICORN, *words[2:]]


def _take_scoring_server(backend: ModuleType) -> None:
    """``backend.subprocess`` with a Popen that raises :class:`Launch` for the scoring server's command."""
    real = backend.subprocess

    class Subprocess:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def Popen(cmd: Any, *args: Any, env: Mapping[str, str] | None = None, **kwargs: Any) -> Any:  # noqa: N802
            command = scoring_command(cmd, env if env is not None else os.environ)
            if command is not None:
                raise Launch(command, env if env is not None else os.environ)
            return real.Popen(cmd, *args, env=env, **kwargs)

    backend.subprocess = Subprocess()


def intercept() -> None:
    """From now on, MLflow's server launcher raises :class:`Launch` where it would spawn a command :func:`servable`,
    and ``mlflow models serve`` where it would start its scoring server (:func:`scoring_command`)."""
    if SCORING_BACKEND in sys.modules:
        _take_scoring_server(sys.modules[SCORING_BACKEND])
    else:
        after_import.register(SCORING_BACKEND, _take_scoring_server)
    import mlflow.server

    spawn = getattr(mlflow.server, "_exec_cmd", None)
    if spawn is None:
        return

    def exec_cmd(cmd: Any, *args: Any, **kwargs: Any) -> Any:
        env = kwargs.get("extra_env") or {}
        if isinstance(cmd, list | tuple) and servable(cmd, kwargs.get("synchronous", True), env):
            raise Launch(cmd, env)
        return spawn(cmd, *args, **kwargs)

    mlflow.server._exec_cmd = exec_cmd


def reimported(module: str) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in REIMPORTED)


def serve(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run a :class:`Launch`'s uvicorn command line here, with its environment; returns when the server stops."""
    os.environ.update(env)
    for name in [name for name in sys.modules if reimported(name)]:
        del sys.modules[name]
    gc.collect()  # the CLI's copies of those modules, and the stores it opened with them
    from uvicorn.main import main

    args = list(command[len(UVICORN):])
    sys.argv = ["uvicorn", *args]
    return main.main(args=args, prog_name="uvicorn")


def main(argv: list[str]) -> int:
    """``argv``: ``mlflow <args>``, run by MLflow's CLI as the ``mlflow`` script would, its server in this process."""
    if not argv or argv[0] != "mlflow":
        raise SystemExit("usage: python -m mlflowkit_server.in_process mlflow <args>")
    from mlflow.cli import cli

    intercept()
    sys.argv = argv
    try:
        return cli(argv[1:], prog_name="mlflow")
    except Launch as launch:
        command, env = launch.command, launch.env
    # Outside the handler: the exception, and with it the CLI's frames, are gone before the server starts.
    return serve(command, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
