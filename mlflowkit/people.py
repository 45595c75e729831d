"""The people of a stack that runs with --auth: MLflow's basic-auth users, each with a password of their own.

Everything goes through MLflow's own REST API, as the stack's admin (``users/create``, ``users/list``,
``users/update-password``, ``users/delete``): nothing here writes a users database. MLflow keeps a hash of each
password; the kit keeps the password it generated in the stack's state directory (``people/<name>``, mode 0600, in
a 0700 directory), so `mlflowkit env <topology> --user NAME` prints that person's environment again, never the
admin's.

Every MLflow server of a stack reads the same users: ha's replicas one PostgreSQL database, artifacts-only's
artifacts server the tracking server's SQLite file; so the tracking server is where people are made.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from mlflowkit.errors import KitError

NAME = re.compile(r"[a-z][a-z0-9._-]{0,62}")
PASSWORD_BYTES = 24  # secrets.token_urlsafe: 32 characters
USERS = "/api/2.0/mlflow/users"


@dataclass(frozen=True)
class Server:
    """The MLflow server that keeps a stack's users, as its admin reaches it from this host."""

    name: str  # the Compose service (for messages)
    url: str
    admin: tuple[str, str] | None  # None: a server without --auth (its workspaces only)
    verify: str | bool = True  # a CA bundle for the stack's TLS, else the system's
    timeout: float = 60


@dataclass(frozen=True)
class Person:
    name: str
    admin: bool
    password_kept: bool  # the kit holds a password for them (made by `mlflowkit users add` or `reset`)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise KitError(f"{name!r} is not a user name the kit makes.",
                       hint="lower-case letters, digits, '.', '_' and '-', starting with a letter, at most 63.")
    return name


class Passwords:
    """The passwords the kit made, one file per person in ``directory`` (0700; each file 0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, name: str) -> str | None:
        path = self.directory / check_name(name)
        return path.read_text().strip() if path.is_file() else None

    def put(self, name: str, password: str) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        path = self.directory / check_name(name)
        partial = path.with_name(f".{path.name}.partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(password + "\n")
        os.replace(partial, path)

    def drop(self, name: str) -> None:
        (self.directory / check_name(name)).unlink(missing_ok=True)

    def names(self) -> set[str]:
        if not self.directory.is_dir():
            return set()
        return {path.name for path in self.directory.iterdir() if NAME.fullmatch(path.name)}


def _call(server: Server, method: str, path: str, *, absent: bool = False, **kwargs: object) -> dict:
    """One call of MLflow's users API (``path`` under it) as the admin; see :func:`call`."""
    return call(server, method, f"{USERS}/{path}", absent=absent, **kwargs)


def call(server: Server, method: str, path: str, *, absent: bool = False, **kwargs: object) -> dict:
    """One call of the server's REST API (``path`` from its root) as the admin; ``absent``: a 404 (no such user,
    workspace, role) answers ``{}``. Any other failure, or an answer that is not a JSON object, is one line."""
    import requests

    url = f"{server.url}{path}"
    try:
        response = requests.request(method, url, auth=server.admin, verify=server.verify, timeout=server.timeout,
                                    **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        raise KitError(f"the {server.name} server does not answer {method} {url}: {exc}",
                       hint="is the stack up? `mlflowkit status`.") from None
    if response.status_code == 404 and absent:
        return {}
    if response.status_code == 404 and path == f"{USERS}/list":
        raise KitError(f"the {server.name} server has no {USERS}/list (an MLflow older than 3.x's user admin).",
                       hint="upgrade the stack (`mlflowkit upgrade`) to manage its people.")
    if response.status_code == 401:
        raise KitError(f"the {server.name} server refused the stack's admin ({method} {url}: 401).",
                       hint="its .env's admin password no longer matches the server's users database.")
    if not response.ok:
        try:  # MLflow's errors are {"error_code": …, "message": …}: the message is the line a person reads
            said = str(response.json()["message"])
        except (ValueError, KeyError, TypeError):
            said = response.text.strip()
        raise KitError(f"{method} {url} failed: {response.status_code} {said[:300]}")
    try:
        answer = response.json() if response.content else {}
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise KitError(f"{method} {url} answered {response.status_code} with no JSON object: "
                       f"{response.text.strip()[:120]!r}", hint="is that address the stack's MLflow server?")
    return answer


def _users(server: Server) -> list[dict]:
    users = _call(server, "GET", "list").get("users", [])
    if not isinstance(users, list) or not all(isinstance(u, dict) and isinstance(u.get("username"), str)
                                               for u in users):
        raise KitError(f"the {server.name} server's users/list is not a list of users: {str(users)[:120]!r}")
    return users


def listed(server: Server) -> dict[str, bool]:
    """Each user of ``server``: whether it is an admin (an answer of another shape is refused in one line)."""
    return {user["username"]: bool(user.get("is_admin")) for user in _users(server)}


def listed_ids(server: Server) -> dict[str, int]:
    """Each user of ``server``: its id (MLflow's roles name users by id)."""
    return {user["username"]: user["id"] for user in _users(server) if isinstance(user.get("id"), int)}


def people(server: Server, passwords: Passwords) -> list[Person]:
    """The users of the stack, sorted by name."""
    kept = passwords.names()
    return [Person(name, admin, name in kept) for name, admin in sorted(listed(server).items())]


def add(server: Server, passwords: Passwords, name: str) -> str:
    """Make ``name`` a user with a new password; return it (and keep it)."""
    check_name(name)
    if name in listed(server):
        raise KitError(f"{name} is already a user of the {server.name} server.",
                       hint=f"a new password: `mlflowkit users reset … {name}`; or remove them first.")
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    _call(server, "POST", "create", json={"username": name, "password": password})
    passwords.put(name, password)
    return password


def reset(server: Server, passwords: Passwords, name: str) -> str:
    """A new password for ``name``; return it (and keep it). The old one stops working."""
    _known(server, name)
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    _call(server, "PATCH", "update-password", json={"username": name, "password": password})
    passwords.put(name, password)
    return password


def remove(server: Server, passwords: Passwords, name: str) -> None:
    """Remove ``name``, and the kit's copy of their password."""
    _known(server, name)
    _call(server, "DELETE", "delete", json={"username": name})
    passwords.drop(name)


def ensure(server: Server, name: str, password: str) -> None:
    """``name`` is a user with ``password``: made when missing, its password set when not (a restored users
    database holds another stack's). Through ``users/get``, so MLflow 2.x servers too."""
    if _call(server, "GET", "get", absent=True, params={"username": name}).get("user"):
        _call(server, "PATCH", "update-password", json={"username": name, "password": password})
    else:
        _call(server, "POST", "create", json={"username": name, "password": password})


def _known(server: Server, name: str) -> None:
    check_name(name)
    if server.admin and name == server.admin[0]:
        raise KitError(f"{name} is the stack's own admin (its .env): the kit, the healthchecks and the serving "
                       "service log in as it.", hint="manage the people you added instead.")
    users = listed(server)
    if name not in users:
        raise KitError(f"{name} is not a user of the {server.name} server; its users: "
                       f"{', '.join(sorted(users)) or 'none'}.", hint="`mlflowkit users add … NAME` makes one.")
