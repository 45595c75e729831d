"""The workspaces of a stack run with --workspaces: MLflow's own (``--enable-workspaces``, 3.10+, SQL stores), each
a team's experiments, models, prompts and traces, seen only by its members.

Everything goes through MLflow's REST API as the stack's admin (``/api/3.0/mlflow/workspaces``, ``roles``): nothing
here writes a database. A person joins a workspace at one of MLflow's two **levels**, each a role of that workspace
holding one workspace-wide permission (MLflow makes both in every new workspace; the kit makes them in ``default``):

- ``user``: USE, reads everything in the workspace and creates experiments and models, owning (MANAGE) what they
  create, writing nothing of others';
- ``admin``: MANAGE, everything in the workspace, its members included.

(MLflow takes only these two workspace-wide; a read-only member would need a grant per resource type.)

The ``default`` workspace holds what was there before workspaces and what a client without ``MLFLOW_WORKSPACE``
writes. The stack's basic-auth config grants every user its default permission (READ) there
(``grant_default_workspace_access``), as before workspaces; the kit makes each person it adds a ``user`` of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from mlflowkit.errors import KitError
from mlflowkit.people import Server, call, listed_ids

WORKSPACES = "/api/3.0/mlflow/workspaces"
ROLES = "/api/3.0/mlflow/roles"
DEFAULT = "default"
# MLflow's rule (WorkspaceNameValidator): Kubernetes-style names, 2-63 characters, some reserved.
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
RESERVED = frozenset({"workspaces", "api", "ajax-api", "static-files"})
FIRST_VERSION = (3, 10)  # the first MLflow with workspaces


class Level(str, Enum):
    USER = "user"
    ADMIN = "admin"

    @property
    def permission(self) -> str:
        return {Level.USER: "USE", Level.ADMIN: "MANAGE"}[self]


@dataclass(frozen=True)
class Workspace:
    name: str
    description: str


@dataclass(frozen=True)
class Member:
    person: str
    level: Level


def check_name(name: str) -> str:
    if not (2 <= len(name) <= 63 and NAME.fullmatch(name)) or name in RESERVED:
        raise KitError(f"{name!r} is not a workspace name MLflow takes.",
                       hint="2-63 lower-case letters, digits and inner '-' (not workspaces, api, ajax-api, "
                            "static-files).")
    return name


def check_image(image: str) -> None:
    """Refuse an image of an MLflow without workspaces (the kit's images are tagged with their version; another
    tag is the user's own image, taken as it is): an older server would ignore the switch and isolate nothing."""
    found = re.match(r"(\d+)\.(\d+)\.", image.rsplit(":", 1)[-1] + ".")
    if found and (int(found[1]), int(found[2])) < FIRST_VERSION:
        raise KitError(f"{image} runs an MLflow without workspaces (they came with "
                       f"{'.'.join(map(str, FIRST_VERSION))}): --workspaces would isolate nothing.",
                       hint="`mlflowkit upgrade` the stack first, or bring it up without --workspaces.")


def listed(server: Server) -> list[Workspace]:
    """The stack's workspaces, sorted by name (an answer of another shape is refused in one line)."""
    found = call(server, "GET", WORKSPACES).get("workspaces", [])
    if not isinstance(found, list) or not all(isinstance(w, dict) and isinstance(w.get("name"), str)
                                               for w in found):
        raise KitError(f"the {server.name} server's workspaces are not a list of workspaces: {str(found)[:120]!r}",
                       hint="is the stack up with --workspaces?")
    return sorted((Workspace(w["name"], str(w.get("description") or "")) for w in found), key=lambda w: w.name)


def add(server: Server, name: str, description: str = "") -> None:
    check_name(name)
    if name in _names(server):
        raise KitError(f"{name} is already a workspace of the {server.name} server.")
    call(server, "POST", WORKSPACES, json={"name": name, "description": description})


def remove(server: Server, name: str) -> None:
    """Remove an empty workspace (MLflow's RESTRICT: one that still holds experiments or models is refused)."""
    _known(server, name)
    if name == DEFAULT:
        raise KitError("the default workspace holds what clients without MLFLOW_WORKSPACE write; it stays.")
    call(server, "DELETE", f"{WORKSPACES}/{name}", params={"mode": "RESTRICT"})


def members(server: Server, workspace: str) -> list[Member]:
    """Who is in ``workspace`` at which level (through the levels' roles), sorted by person."""
    _known(server, workspace)
    return _members(server, _level_roles(server, workspace))


def _members(server: Server, roles: dict[Level, int]) -> list[Member]:
    names = {number: name for name, number in listed_ids(server).items()}
    found = []
    for level, role in roles.items():
        assignments = call(server, "GET", f"{ROLES}/users/list", params={"role_id": role}).get("assignments", [])
        if not isinstance(assignments, list) or not all(isinstance(a, dict) for a in assignments):
            raise KitError(f"the {server.name} server's members of role {role} are not a list: "
                           f"{str(assignments)[:120]!r}")
        found += [Member(names[a.get("user_id")], level) for a in assignments if a.get("user_id") in names]
    return sorted(found, key=lambda m: (m.person, m.level.value))


def grant(server: Server, workspace: str, person: str, level: Level) -> None:
    """Make ``person`` a member of ``workspace`` at ``level`` (at most one level per workspace: change it by
    revoking first)."""
    _known(server, workspace)
    _person(server, person)
    roles = _level_roles(server, workspace)
    held = [m.level.value for m in _members(server, roles) if m.person == person]
    if held:
        raise KitError(f"{person} is already in {workspace}, as {held[0]}.",
                       hint=f"revoke it first (`mlflowkit workspaces revoke … {workspace} {person}`).")
    role = roles.get(level) or _make_role(server, workspace, level)
    call(server, "POST", f"{ROLES}/assign", json={"username": person, "role_id": role})


def revoke(server: Server, workspace: str, person: str) -> None:
    """``person`` leaves ``workspace`` (what they made stays, with its owner's grants)."""
    _known(server, workspace)
    _person(server, person)
    roles = _level_roles(server, workspace)
    held = [m.level for m in _members(server, roles) if m.person == person]
    if not held:
        raise KitError(f"{person} is not a member of {workspace}.")
    for level in held:
        call(server, "DELETE", f"{ROLES}/unassign", json={"username": person, "role_id": roles[level]})


def _names(server: Server) -> set[str]:
    return {w.name for w in listed(server)}


def _known(server: Server, name: str) -> None:
    check_name(name)
    names = _names(server)
    if name not in names:
        raise KitError(f"{name} is not a workspace of the {server.name} server; its workspaces: "
                       f"{', '.join(sorted(names))}.", hint="`mlflowkit workspaces add … NAME` makes one.")


def _person(server: Server, person: str) -> None:
    users = listed_ids(server)
    if person not in users:
        raise KitError(f"{person} is not a user of the {server.name} server.",
                       hint="`mlflowkit users add … NAME` makes one.")


def _level_roles(server: Server, workspace: str) -> dict[Level, int]:
    """The roles of ``workspace`` that are the kit's levels: named after one and holding exactly its one
    workspace-wide permission. A role of a level's name with other permissions is refused, not used."""
    roles = call(server, "GET", f"{ROLES}/list", params={"workspace": workspace}).get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, dict) for r in roles):
        raise KitError(f"the {server.name} server's roles of {workspace} are not a list: {str(roles)[:120]!r}")
    found = {}
    for role in roles:
        if role.get("workspace") != workspace or role.get("name") not in {level.value for level in Level}:
            continue
        level = Level(role["name"])
        grants = [(p.get("resource_type"), p.get("resource_pattern"), p.get("permission"))
                  for p in role.get("permissions") or [] if isinstance(p, dict)]
        if grants != [("workspace", "*", level.permission)] or not isinstance(role.get("id"), int):
            raise KitError(f"role {level.value} of workspace {workspace} holds {grants}, not the level's one "
                           f"permission ({level.permission} on the whole workspace).",
                           hint="rename or fix that role through MLflow's roles API; the kit does not change it.")
        found[level] = role["id"]
    return found


def _make_role(server: Server, workspace: str, level: Level) -> int:
    made = call(server, "POST", f"{ROLES}/create", json={"name": level.value, "workspace": workspace}).get("role")
    if not isinstance(made, dict) or not isinstance(made.get("id"), int):
        raise KitError(f"the {server.name} server made role {level.value} of {workspace} but answered "
                       f"{str(made)[:120]!r}")
    try:
        call(server, "POST", f"{ROLES}/permissions/add", json={
            "role_id": made["id"], "resource_type": "workspace", "resource_pattern": "*",
            "permission": level.permission})
    except KitError:  # no role without its permission left behind
        call(server, "DELETE", f"{ROLES}/delete", json={"role_id": made["id"]})
        raise
    return made["id"]
