"""Runnable blocks of docs/tutorials/*.md: how they are marked, found and run (see docs/tutorials/README.md).

A fenced ``bash`` or ``python`` block runs when the line before its fence is an HTML comment
``<!-- run … -->`` (invisible on GitHub). Options in the comment:

- ``expect="text"`` (repeatable): the block must succeed and its output contain ``text``;
- ``fails="text"``: the block must fail (non-zero exit / an exception) and its output contain ``text``;
- ``session=kit`` (python only; default ``main``, ``session=kit,plain`` runs it in both): the Python process
  the block runs in, one long-lived interpreter per session, so a walk-through keeps its variables;
- ``timeout=N``: seconds (default 240).

Shell blocks run with ``bash -euo pipefail``, one process per block; what they ``export`` carries over to the
next blocks (shell and python), as in one terminal. Everything a block leaves running in the background is
stopped when it ends: each block is its own process group, killed by its id.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"

_FENCE = re.compile(r"^<!-- run(?P<options>[^>]*?)-->\n```(?P<lang>\w+)[^\n]*\n(?P<code>.*?)^```", re.S | re.M)
_OPTION = re.compile(r"""(\w[\w-]*)=(?:"([^"]*)"|'([^']*)'|(\S+))""")
_KNOWN = {"expect", "fails", "session", "timeout"}


@dataclass(frozen=True)
class Block:
    source: str  # "docs/tutorials/x.md:LINE"
    lang: str  # bash | python
    code: str
    expect: tuple[str, ...] = ()
    fails: str | None = None
    sessions: tuple[str, ...] = ("main",)
    timeout: float = 240.0


def runnable_blocks(path: Path) -> list[Block]:
    """The marked blocks of ``path``, in order; an unknown option or language is an error, not a skip."""
    text = path.read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 2
        source = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}"
        options: dict[str, list[str]] = {}
        for key, *values in _OPTION.findall(match["options"]):
            options.setdefault(key, []).append(next(v for v in values if v))
        rest = _OPTION.sub("", match["options"]).strip()
        if rest or set(options) - _KNOWN:
            raise ValueError(f"{source}: cannot read the run marker {match['options'].strip()!r}")
        if match["lang"] not in ("bash", "python"):
            raise ValueError(f"{source}: a runnable block must be bash or python, not {match['lang']}")
        if "session" in options and match["lang"] != "python":
            raise ValueError(f"{source}: session= is for python blocks")
        blocks.append(Block(
            source=source, lang=match["lang"], code=match["code"],
            expect=tuple(options.get("expect", ())), fails=(options.get("fails") or [None])[0],
            sessions=tuple(options.get("session", ["main"])[0].split(",")),
            timeout=float(options.get("timeout", [240])[0]),
        ))
    return blocks


def marked_fences(path: Path) -> int:
    """How many ``<!-- run`` markers the file has (each must sit right above a fence it applies to)."""
    return len(re.findall(r"^<!-- run\b", path.read_text(), flags=re.M))


# One Python interpreter per session: reads {"code", "name", "env"} lines on stdin, runs each in one
# namespace with that environment, answers {"ok", "output"} on the result pipe.
_WORKER = r"""
import contextlib, faulthandler, io, json, os, sys, traceback
faulthandler.enable()  # a crash leaves its stack in the session log
results = os.fdopen(int(sys.argv[1]), "w")
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    request = json.loads(line)
    # Only what changed: setenv/unsetenv while MLflow's threads read the environment can crash the process.
    for key in [k for k in os.environ if k not in request["env"]]:
        del os.environ[key]
    for key, value in request["env"].items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    buffer = io.StringIO()
    ok = True
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            exec(compile(request["code"], request["name"], "exec"), namespace)
        except BaseException:
            ok = False
            traceback.print_exc()
    results.write(json.dumps({"ok": ok, "output": buffer.getvalue()}) + "\n")
    results.flush()
"""


def _kill_group(pid: int) -> None:
    """SIGTERM, then SIGKILL, the process group ``pid`` leads (one we started with start_new_session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.2)


class _Session:
    def __init__(self, name: str, cwd: Path, log: Path) -> None:
        self.name = name
        read_fd, write_fd = os.pipe()
        self.log = log
        self._log = open(log, "a")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(write_fd)], stdin=subprocess.PIPE,
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, text=True,
                                     pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        self._results = read_fd
        self._pending = b""

    def run(self, code: str, name: str, env: dict[str, str], timeout: float) -> tuple[bool, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"code": code, "name": name, "env": env}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{name}: python block still running after {timeout:.0f} s")
            ready, _, _ = select.select([self._results], [], [], left)
            if ready:
                chunk = os.read(self._results, 65536)
                if not chunk:
                    code = self.proc.wait()
                    raise RuntimeError(f"{name}: the python session {self.name!r} died (exit {code}); its log:\n"
                                       + self.log.read_text()[-4000:])
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        answer = json.loads(line)
        return answer["ok"], answer["output"]

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except (subprocess.TimeoutExpired, OSError):
            pass
        _kill_group(self.proc.pid)  # and whatever it started that is still there
        os.close(self._results)
        self._log.close()


@dataclass
class Outcome:
    block: Block
    ok: bool
    output: str
    seconds: float
    session: str = ""


@dataclass
class TutorialRunner:
    """Runs one tutorial's blocks in order, in ``cwd``, starting from environment ``env``."""

    env: dict[str, str]
    cwd: Path
    sessions: dict[str, _Session] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    def run(self, block: Block) -> list[Outcome]:
        if block.lang == "bash":
            runs = [("", lambda: self._bash(block))]
        else:
            runs = [(s, lambda s=s: self._python(block, s)) for s in block.sessions]
        outcomes = []
        for session, call in runs:
            start = time.monotonic()
            ok, output = call()
            outcome = Outcome(block, ok, output, time.monotonic() - start, session)
            self.outcomes.append(outcome)
            outcomes.append(outcome)
        return outcomes

    def _bash(self, block: Block) -> tuple[bool, str]:
        with tempfile.NamedTemporaryFile(dir=self.cwd, prefix=".state-", delete=False) as state, \
                tempfile.TemporaryFile(mode="w+") as out:
            script = f"{block.code}\nenv -0 > {shlex.quote(state.name)}\n"
            proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], env=self.env, cwd=self.cwd,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=block.timeout)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                _kill_group(proc.pid)  # a background server the block left behind, too
                proc.wait()
            out.seek(0)
            output = out.read()
            if code is None:
                return False, output + f"\n[timed out after {block.timeout:.0f} s]"
            if code == 0:
                raw = Path(state.name).read_bytes()
                self.env = {k: v for k, _, v in (item.decode().partition("=") for item in raw.split(b"\0") if item)
                            if k not in ("_", "SHLVL", "PWD", "OLDPWD")}
            os.unlink(state.name)
            return code == 0, output + ("" if code == 0 else f"\n[exit {code}]")

    def _python(self, block: Block, session: str) -> tuple[bool, str]:
        if session not in self.sessions:
            self.sessions[session] = _Session(session, self.cwd, self.cwd / f".python-{session}.log")
        try:
            return self.sessions[session].run(block.code, f"{block.source} [{session}]", self.env, block.timeout)
        except (TimeoutError, RuntimeError) as exc:
            self.sessions.pop(session).close()
            return False, str(exc)

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()


def check(outcome: Outcome) -> str | None:
    """Why ``outcome`` breaks its block's promise (None: it keeps it)."""
    block = outcome.block
    where = block.source + (f" [session {outcome.session}]" if outcome.session else "")
    if block.fails is not None:
        if outcome.ok:
            return f"{where} should have failed with {block.fails!r} but succeeded"
        if block.fails not in outcome.output:
            return f"{where} failed, but without {block.fails!r}"
        return None
    if not outcome.ok:
        return f"{where} failed"
    missing = [text for text in block.expect if text not in outcome.output]
    if missing:
        return f"{where} succeeded, but its output lacks {missing}"
    return None
