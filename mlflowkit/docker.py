"""The one place that runs the Docker CLI.

:func:`run` executes a command with a timeout and raises :class:`CommandError` (argv, exit code, stdout,
stderr) on failure. :class:`Compose` builds ``docker compose`` argv declaratively, one method per action.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mlflowkit.errors import CommandError, CommandTimeout, ComposeMissing, EngineNotRunning

MIN_COMPOSE = (2, 24)
# What the Docker CLI needs of the caller's environment to find the engine and itself; nothing else of it reaches
# a stack (Compose lets exported variables override --env-file, so an exported AWS key would win over .env).
ENGINE_VARIABLES = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR", "DOCKER_HOST",
                    "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")


def engine_environ(values: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's engine variables plus ``values``: the whole environment a Compose call gets."""
    return {**{k: v for k, v in os.environ.items() if k in ENGINE_VARIABLES}, **dict(values or {})}


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


def run_lines(argv: Sequence[str], *, timeout: float, on_line: Callable[[str], None],
              env: Mapping[str, str] | None = None) -> None:
    """Run ``argv`` with stdout and stderr merged, handing each line to ``on_line`` as it comes (builds: a
    progress view); killed after ``timeout``. The error carries the last 60 lines."""
    tail: deque[str] = deque(maxlen=60)
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", env=dict(env) if env is not None else None)
    with _supervised(proc, timeout) as deadline:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            on_line(line.rstrip("\n"))
        proc.wait()
    _check(argv, proc, deadline, timeout, "", "\n".join(tail))


@contextmanager
def stream(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> Iterator[IO[bytes]]:
    """Run ``argv`` and yield its stdout as a binary stream (e.g. ``docker save``); killed after ``timeout``.

    Raises CommandTimeout / CommandError (with stderr) once the caller is done reading.
    """
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(env) if env is not None else None)
    timed_out = _Deadline(proc, timeout)
    try:
        assert proc.stdout is not None
        yield proc.stdout
        proc.stdout.read()  # drain what the caller did not need, so the process can exit
    except BaseException:
        proc.kill()
        raise
    finally:
        timed_out.cancel()
        stderr = proc.communicate()[1].decode(errors="replace")
    if timed_out.is_set():
        raise CommandTimeout(argv, timeout, "", stderr)
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, "", stderr)


def feed(argv: Sequence[str], write: Callable[[IO[bytes]], None], *, timeout: float,
         env: Mapping[str, str] | None = None) -> str:
    """Run ``argv`` with ``write(stdin)`` producing its binary input (e.g. a tar stream); its stdout as text.

    Output goes to temporary files, so a chatty command never blocks the writer on a full pipe.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=out, stderr=err,
                                env=dict(env) if env is not None else None)
        with _supervised(proc, timeout) as deadline:
            assert proc.stdin is not None
            try:
                write(proc.stdin)
                proc.stdin.close()
            except BrokenPipeError:  # the command ended early: its exit code and stderr say why
                pass
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    _check(argv, proc, deadline, timeout, stdout, stderr)
    return stdout


@contextmanager
def _supervised(proc: subprocess.Popen, timeout: float) -> Iterator[_Deadline]:
    """The block drives ``proc``: it is killed when ``timeout`` passes or the block raises."""
    deadline = _Deadline(proc, timeout)
    try:
        yield deadline
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        deadline.cancel()


def _check(argv: Sequence[str], proc: subprocess.Popen, deadline: _Deadline, timeout: float, stdout: str,
           stderr: str) -> None:
    """CommandTimeout when the deadline killed ``proc``, CommandError on any other non-zero exit."""
    if deadline.is_set():
        raise CommandTimeout(argv, timeout, stdout, stderr)
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, stdout, stderr)


class _Deadline:
    """Kills a process once ``timeout`` passes, unless cancelled first; remembers whether it did."""

    def __init__(self, proc: subprocess.Popen, timeout: float) -> None:
        self._proc = proc
        self._fired = threading.Event()
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.start()

    def _fire(self) -> None:
        self._fired.set()
        self._proc.kill()

    def cancel(self) -> None:
        self._timer.cancel()

    def is_set(self) -> bool:
        return self._fired.is_set()


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

    def build(self, services: Sequence[str] = (), *, timeout: float, on_line: Callable[[str], None],
              no_cache: bool = False) -> None:
        """Build with BuildKit's plain progress, each output line handed to ``on_line``; every layer again when
        ``no_cache``."""
        argv = [*self.base_argv[:2], "--progress", "plain", *self.base_argv[2:], "build",
                *(("--no-cache",) if no_cache else ()), *services]
        run_lines(argv, timeout=timeout, on_line=on_line, env=self.env)

    def up(
        self, services: Sequence[str] = (), *, timeout: float, recreate: bool = False, no_deps: bool = False,
        progress: bool = True, wait: bool = True,
    ) -> None:
        """``up --detach``; with ``wait``, until every service is healthy (its healthcheck's interval decides when
        that is seen: a caller that can ask the service itself sooner passes ``wait=False``)."""
        args = ["up", "--detach", *(("--wait", "--wait-timeout", str(int(timeout))) if wait else ())]
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

    @contextmanager
    def output(self, *args: str, timeout: float | None = None) -> Iterator[IO[bytes]]:
        """``docker compose <args>``'s stdout as a binary stream (a dump, a tar of objects)."""
        with stream([*self.base_argv, *args], timeout=timeout or self.timeout, env=self.env) as out:
            yield out

    def input(self, *args: str, write: Callable[[IO[bytes]], None], timeout: float | None = None) -> str:
        """``docker compose <args>`` reading the binary stream ``write`` produces; its stdout."""
        return feed([*self.base_argv, *args], write, timeout=timeout or self.timeout, env=self.env)

    def exec(self, service: str, command: Sequence[str], *, timeout: float | None = None,
             input: str | None = None, env: Mapping[str, str] | None = None) -> str:
        options = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.call("exec", "-T", *options, service, *command, timeout=timeout, input=input)
