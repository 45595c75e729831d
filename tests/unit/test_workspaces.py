"""Workspaces of a stack run with --workspaces, without an engine: names, the levels as roles (MLflow's own where
they exist, made with their one permission where not, refused where one was changed), nothing half-made left, and
the CLI refusing what it cannot do in one line. (A real stack's teams: tests/e2e/test_stacks.py's --auth test.)"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlflowkit import envfile, people, workspaces
from mlflowkit.cli import app
from mlflowkit.client import Connection
from mlflowkit.errors import KitError
from mlflowkit.settings import Settings
from mlflowkit.topology import IMAGE_VARIABLE, TOPOLOGIES, WORKSPACES_SWITCH, ArtifactMode, Backend

runner = CliRunner()
USER, ADMIN = workspaces.Level.USER, workspaces.Level.ADMIN
GRANT = ("resource_type", "resource_pattern", "permission")


class Server:
    """MLflow's workspaces, roles and users API, as workspaces.py calls it (an MLflow 3.17 server's answers)."""

    def __init__(self) -> None:
        self.users = {"admin": 1, "alice": 2, "bob": 3}
        self.spaces = {"default": "Default workspace for legacy resources"}
        self.roles: dict[int, dict] = {}  # id -> {name, workspace, permissions, members}
        self.refuse_permissions = False
        self.calls: list[tuple[str, str]] = []
        self.server = people.Server("tracking", "http://tracking", ("admin", "pw"))

    def role(self, name: str, workspace: str, permission: str | None) -> int:
        number = len(self.roles) + 1
        grants = [("workspace", "*", permission)] if permission else []
        self.roles[number] = {"name": name, "workspace": workspace, "permissions": grants, "members": set()}
        return number

    def users_call(self, server, method, path, absent=False, **kwargs):
        assert path == "list", path
        return {"users": [{"username": u, "id": i, "is_admin": u == "admin"} for u, i in self.users.items()]}

    def call(self, server, method, path, absent=False, **kwargs):
        self.calls.append((method, path.removeprefix("/api/3.0/mlflow/")))
        body, params = kwargs.get("json") or {}, kwargs.get("params") or {}
        route = (method, path.removeprefix("/api/3.0/mlflow/"))
        if route == ("GET", "workspaces"):
            return {"workspaces": [{"name": n, "description": d} for n, d in self.spaces.items()]}
        if route == ("POST", "workspaces"):
            self.spaces[body["name"]] = body["description"]
            self.role("admin", body["name"], "MANAGE")  # MLflow makes both levels in a new workspace
            self.role("user", body["name"], "USE")
            return {}
        if method == "DELETE" and route[1].startswith("workspaces/"):
            assert params == {"mode": "RESTRICT"}  # never a cascade
            del self.spaces[route[1].split("/")[1]]
            return {}
        if route == ("GET", "roles/list"):
            return {"roles": [{"id": i, "name": r["name"], "workspace": r["workspace"],
                               "permissions": [dict(zip(GRANT, g, strict=True)) for g in r["permissions"]]}
                              for i, r in self.roles.items() if r["workspace"] == params["workspace"]]}
        if route == ("GET", "roles/users/list"):
            return {"assignments": [{"user_id": u, "role_id": params["role_id"]}
                                    for u in sorted(self.roles[params["role_id"]]["members"])]}
        if route == ("POST", "roles/create"):
            return {"role": {"id": self.role(body["name"], body["workspace"], None)}}
        if route == ("POST", "roles/permissions/add"):
            if self.refuse_permissions:
                raise KitError("POST roles/permissions/add failed: 500 the database went away")
            self.roles[body["role_id"]]["permissions"] = [("workspace", "*", body["permission"])]
            return {}
        if route == ("DELETE", "roles/delete"):
            del self.roles[body["role_id"]]
            return {}
        if route == ("POST", "roles/assign"):
            self.roles[body["role_id"]]["members"].add(self.users[body["username"]])
            return {}
        if route == ("DELETE", "roles/unassign"):
            self.roles[body["role_id"]]["members"].discard(self.users[body["username"]])
            return {}
        raise AssertionError(route)


@pytest.fixture
def fake(monkeypatch) -> Server:
    server = Server()
    monkeypatch.setattr(workspaces, "call", server.call)
    monkeypatch.setattr(people, "_call", server.users_call)
    return server


@pytest.mark.parametrize("name", ["vision", "nlp-2", "ab", "a" * 63])
def test_a_workspace_name_mlflow_takes(name):
    assert workspaces.check_name(name) == name


@pytest.mark.parametrize("name", ["", "a", "Vision", "-nlp", "nlp-", "a_b", "a" * 64, "api", "workspaces", "../x"])
def test_a_name_mlflow_refuses_is_refused_here_in_one_line(name):
    with pytest.raises(KitError, match="is not a workspace name MLflow takes"):
        workspaces.check_name(name)


def test_a_team_workspace_uses_mlflows_own_roles_and_the_default_gets_the_level_made(fake):
    workspaces.add(fake.server, "vision", "the vision team")
    made = len(fake.roles)
    workspaces.grant(fake.server, "vision", "alice", USER)
    assert len(fake.roles) == made, "a new workspace's own `user` role is used, none made"
    workspaces.grant(fake.server, "vision", "bob", ADMIN)
    assert workspaces.members(fake.server, "vision") == [workspaces.Member("alice", USER),
                                                          workspaces.Member("bob", ADMIN)]
    workspaces.grant(fake.server, "default", "alice", USER)  # default has no roles until the kit makes the level
    [role] = [r for r in fake.roles.values() if r["workspace"] == "default"]
    assert (role["name"], role["permissions"], role["members"]) == ("user", [("workspace", "*", "USE")], {2})
    with pytest.raises(KitError, match="alice is already in vision, as user"):
        workspaces.grant(fake.server, "vision", "alice", ADMIN)
    workspaces.revoke(fake.server, "vision", "alice")
    assert fake.calls[-1] == ("DELETE", "roles/unassign")
    assert workspaces.members(fake.server, "vision") == [workspaces.Member("bob", ADMIN)]


def test_unknown_workspaces_and_people_and_the_default_are_refused_naming_what_there_is(fake):
    workspaces.add(fake.server, "vision")
    with pytest.raises(KitError, match="nlp is not a workspace of the tracking server; its workspaces: "
                                       "default, vision"):
        workspaces.grant(fake.server, "nlp", "alice", USER)
    with pytest.raises(KitError, match="carol is not a user of the tracking server"):
        workspaces.grant(fake.server, "vision", "carol", USER)
    with pytest.raises(KitError, match="alice is not a member of vision"):
        workspaces.revoke(fake.server, "vision", "alice")
    with pytest.raises(KitError, match="vision is already a workspace"):
        workspaces.add(fake.server, "vision")
    with pytest.raises(KitError, match="the default workspace holds what clients without MLFLOW_WORKSPACE write"):
        workspaces.remove(fake.server, "default")
    workspaces.remove(fake.server, "vision")
    assert [w.name for w in workspaces.listed(fake.server)] == ["default"]


def test_a_level_role_someone_changed_is_refused_and_nobody_is_assigned(fake):
    workspaces.add(fake.server, "vision")
    [user] = [r for r in fake.roles.values() if r["workspace"] == "vision" and r["name"] == "user"]
    user["permissions"] = [("workspace", "*", "MANAGE")]  # a `user` that manages: not the level's role
    with pytest.raises(KitError, match="role user of workspace vision holds .* not the level's one permission"):
        workspaces.grant(fake.server, "vision", "alice", USER)
    assert all(not r["members"] for r in fake.roles.values())


def test_a_level_role_whose_permission_failed_is_removed_again(fake):
    fake.refuse_permissions = True
    with pytest.raises(KitError, match="the database went away"):
        workspaces.grant(fake.server, "default", "alice", USER)
    assert [r for r in fake.roles.values() if r["workspace"] == "default"] == [], "no role without its permission"
    assert ("DELETE", "roles/delete") in fake.calls


@pytest.mark.parametrize("body", [b'{"workspaces": "vision"}', b'{"workspaces": [{"id": 1}]}', b"[]"])
def test_an_answer_that_is_not_mlflows_is_refused_in_one_line(body):
    from tests.unit.test_people import answering

    with answering(body) as url, pytest.raises(KitError) as info:
        workspaces.listed(people.Server("tracking", url, ("admin", "pw"), timeout=10))
    assert "\n" not in info.value.message


def test_workspaces_are_offered_where_mlflow_has_them_and_refused_elsewhere_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOWKIT_HOME", str(tmp_path))
    offered = {t.name for t in TOPOLOGIES.values() if t.supports_workspaces}
    assert offered and all(TOPOLOGIES[n].backend is Backend.POSTGRESQL and TOPOLOGIES[n].has_tracking_server
                           and TOPOLOGIES[n].servers == (TOPOLOGIES[n].users_server,) for n in offered)
    assert not any(t.supports_workspaces for t in TOPOLOGIES.values()
                   if t.artifact_mode is ArtifactMode.ARTIFACTS_SERVER or t.replicas), "a separate artifacts server"
    for name in sorted(set(TOPOLOGIES) - offered):
        result = runner.invoke(app, ["up", name, "--workspaces"])  # refused before any engine is asked
        assert result.exit_code == 1 and f"--workspaces is not available for {name}" in result.output
        assert ", ".join(sorted(offered)) in result.output and "Traceback" not in result.output
        assert not Settings().env_file(name).exists(), "nothing written for a refused up"


def test_the_switch_is_kept_in_env_and_reaches_every_tracking_server(tmp_path):
    from tests.unit.test_topology import effective

    path = tmp_path / ".env"
    name = next(t.name for t in TOPOLOGIES.values() if t.supports_workspaces)
    assert WORKSPACES_SWITCH not in envfile.ensure(path, TOPOLOGIES[name])
    assert envfile.ensure(path, TOPOLOGIES[name], workspaces=True)[WORKSPACES_SWITCH] == "true"
    assert envfile.ensure(path, TOPOLOGIES[name])[WORKSPACES_SWITCH] == "true", "a later up keeps it"
    for topology in (t for t in TOPOLOGIES.values() if t.supports_workspaces):
        on, off = effective(topology.name, **{WORKSPACES_SWITCH: "true"}), effective(topology.name)
        for service in topology.servers:
            assert on["services"][service]["environment"][WORKSPACES_SWITCH] == "true", (topology.name, service)
            assert off["services"][service]["environment"][WORKSPACES_SWITCH] == "false", (topology.name, service)


def test_a_stack_without_workspaces_refuses_them_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOWKIT_HOME", str(tmp_path))
    name = next(t.name for t in TOPOLOGIES.values() if t.supports_workspaces)
    envfile.ensure(Settings().env_file(name), TOPOLOGIES[name])
    for argv in (["workspaces", "list", name], ["workspaces", "add", name, "vision"],
                 ["workspaces", "grant", name, "vision", "alice"], ["env", name, "--workspace", "vision"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, (argv, result.output)
        assert f"{name} runs without --workspaces" in result.output and "Traceback" not in result.output


def test_a_connections_workspace_is_the_variable_a_plain_client_reads():
    connection = Connection("http://127.0.0.1:5000", workspace="vision")
    assert connection.environ()["MLFLOW_WORKSPACE"] == "vision"
    assert Connection.from_env(connection.environ()).workspace == "vision"
    assert "MLFLOW_WORKSPACE" not in Connection("http://127.0.0.1:5000").environ()


@pytest.mark.parametrize(("image", "refused"), [("mlflowkit/mlflow:3.1.4", True), ("mlflowkit/mlflow:2.22.5", True),
                                                ("mlflowkit/mlflow:3.17.2", False), ("mlflowkit/mlflow:3.10.0", False),
                                                ("registry.example/team/mlflow:prod", False), ("", False)])
def test_an_mlflow_without_workspaces_is_refused_and_a_users_own_image_taken_as_it_is(image, refused):
    if refused:
        with pytest.raises(KitError, match="runs an MLflow without workspaces .* would isolate nothing"):
            workspaces.check_image(image)
    else:
        workspaces.check_image(image)


def test_up_with_workspaces_on_a_stack_of_an_older_mlflow_is_refused_before_the_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOWKIT_HOME", str(tmp_path))
    name = next(t.name for t in TOPOLOGIES.values() if t.supports_workspaces)
    path = Settings().env_file(name)
    envfile.ensure(path, TOPOLOGIES[name])
    envfile.set_value(path, IMAGE_VARIABLE, "mlflowkit/mlflow:3.1.4")  # as `up --mlflow 3.1.4` leaves it
    before = path.read_text()
    result = runner.invoke(app, ["up", name, "--workspaces"])
    assert result.exit_code == 1 and "mlflowkit/mlflow:3.1.4 runs an MLflow without workspaces" in result.output
    assert path.read_text() == before, "nothing written"
