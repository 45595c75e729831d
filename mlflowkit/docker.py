"""The one place that runs the Docker CLI.

:func:`run` executes a command with a timeout and raises :class:`CommandError` (argv, exit code, stdout,
stderr) on failure. :class:`Compose` builds ``docker compose`` argv declaratively, one method per action.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mlflowkit.errors import CommandError, CommandTimeout, ComposeMissing, EngineNotRunning

MIN_COMPOSE = (2, 24)


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise CommandError on a non-zero exit, CommandTimeout when it outlives ``timeout``.

    ``capture=False`` streams output to the terminal (progress of builds and ``up``) and keeps none.
    """
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=capture,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            input=input,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandTimeout(argv, timeout, _text(exc.stdout), _text(exc.stderr)) from None
    except FileNotFoundError:
        raise CommandError(argv, 127, "", f"{argv[0]}: command not found") from None
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout or "", proc.stderr or "")
    return proc


@contextmanager
def stream(argv: Sequence[str], *, timeout: float) -> Iterator[IO[bytes]]:
    """Run ``argv`` and yield its stdout as a binary stream (e.g. ``docker save``); killed after ``timeout``.

    Raises CommandTimeout / CommandError (with stderr) once the caller is done reading.
    """
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timed_out = threading.Event()
    timer = threading.Timer(timeout, lambda: (timed_out.set(), proc.kill()))
    timer.start()
    try:
        assert proc.stdout is not None
        yield proc.stdout
        proc.stdout.read()  # drain what the caller did not need, so the process can exit
    except BaseException:
        proc.kill()
        raise
    finally:
        timer.cancel()
        stderr = proc.communicate()[1].decode(errors="replace")
    if timed_out.is_set():
        raise CommandTimeout(argv, timeout, "", stderr)
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, "", stderr)


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def check_engine(timeout: float = 20) -> None:
    """Raise EngineNotRunning / ComposeMissing unless an engine and Compose >= 2.24 answer."""
    try:
        run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=timeout)
    except CommandError as exc:
        raise EngineNotRunning(exc.stderr) from None
    try:
        out = run(["docker", "compose", "version", "--short"], timeout=timeout).stdout.strip()
    except CommandError:
        raise ComposeMissing() from None
    if parse_version(out) < MIN_COMPOSE:
        raise ComposeMissing(out)


def parse_version(text: str) -> tuple[int, ...]:
    """``"v2.40.3"`` -> ``(2, 40, 3)``; ``"2.24.0-desktop.1"`` -> ``(2, 24, 0)``; unparsable -> ``(0,)``."""
    match = re.match(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text.strip())
    return tuple(int(part) for part in match.groups() if part is not None) if match else (0,)


def image_exists(image: str, timeout: float = 30) -> bool:
    try:
        run(["docker", "image", "inspect", image], timeout=timeout)
    except CommandError:
        return False
    return True


@dataclass(frozen=True)
class Compose:
    """Options of one compose project; each method appends its subcommand to :attr:`base_argv`."""

    files: tuple[Path, ...]
    project: str
    env_file: Path | None = None
    profiles: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None  # process environment for the CLI (None: inherit)
    timeout: float = 120

    @property
    def base_argv(self) -> list[str]:
        argv = ["docker", "compose", "--project-name", self.project]
        for file in self.files:
            argv += ["--file", str(file)]
        if self.env_file is not None:
            argv += ["--env-file", str(self.env_file)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        return argv

    def call(self, *args: str, timeout: float | None = None, capture: bool = True, input: str | None = None) -> str:
        """``docker compose <base options> <args>``; its stdout (nothing when ``capture=False`` streams it)."""
        proc = run([*self.base_argv, *args], timeout=timeout or self.timeout, env=self.env, capture=capture,
                   input=input)
        return proc.stdout or ""

    def build(self, services: Sequence[str] = (), *, timeout: float) -> None:
        """Build, streaming Compose's progress to the terminal."""
        self.call("build", *services, timeout=timeout, capture=False)

    def up(
        self, services: Sequence[str] = (), *, timeout: float, recreate: bool = False, no_deps: bool = False,
        progress: bool = True,
    ) -> None:
        args = ["up", "--detach", "--wait", "--wait-timeout", str(int(timeout))]
        if recreate:
            args.append("--force-recreate")
        if no_deps:
            args.append("--no-deps")
        self.call(*args, *services, timeout=timeout + 30, capture=not progress)

    def down(self, *, volumes: bool = False, timeout: float | None = None) -> None:
        self.call("down", "--remove-orphans", *(("--volumes",) if volumes else ()), timeout=timeout)

    def logs(self, services: Sequence[str] = (), *, tail: int | None = None) -> str:
        args = ["logs", "--no-color", "--timestamps"]
        if tail is not None:
            args += ["--tail", str(tail)]
        return self.call(*args, *services)

    def exec(self, service: str, command: Sequence[str], *, timeout: float | None = None,
             input: str | None = None) -> str:
        return self.call("exec", "-T", service, *command, timeout=timeout, input=input)
