"""The people of an --auth stack, without an engine: names, the kit's password files, a change undone where it
failed halfway, and `mlflowkit env`/`users` refusing what they cannot do in one line. (A real stack's users:
tests/e2e/test_stacks.py::test_auth_refuses_anonymous_writes_and_validates_authenticated.)"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from mlflowkit import envfile, people
from mlflowkit.cli import app
from mlflowkit.errors import KitError
from mlflowkit.settings import Settings
from mlflowkit.topology import TOPOLOGIES

runner = CliRunner()


@pytest.mark.parametrize("name", ["alice", "bob.smith", "ci-bot_2", "a" * 63])
def test_a_user_name_the_kit_makes(name):
    assert people.check_name(name) == name


@pytest.mark.parametrize("name", ["", "Alice", "1bob", "../admin", "a b", "a" * 64, "alice\n"])
def test_a_name_that_is_not_one_is_refused_in_one_line(name):
    with pytest.raises(KitError, match="is not a user name the kit makes"):
        people.check_name(name)


def test_passwords_are_private_files_that_can_be_read_back_and_dropped(tmp_path):
    kept = people.Passwords(tmp_path / "people")
    assert kept.get("alice") is None and kept.names() == set()
    kept.put("alice", "s3cret")
    kept.put("alice", "newer")  # replaced whole
    assert kept.get("alice") == "newer" and kept.names() == {"alice"}
    assert stat.S_IMODE((tmp_path / "people").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "people" / "alice").stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "people").iterdir()] == ["alice"]  # no partial file left
    kept.drop("alice")
    assert kept.get("alice") is None
    with pytest.raises(KitError):
        kept.get("../.env")


class Server:
    """A server's users as MLflow's REST API answers the calls people.py makes."""

    def __init__(self) -> None:
        self.users = {"admin": True}
        self.server = people.Server("tracking", "http://tracking", ("admin", "pw"))
        self.calls: list[tuple[str, str]] = []

    def call(self, server, method, path, absent=False, **kwargs):
        self.calls.append((method, path))
        if path == "list":
            return {"users": [{"username": u, "is_admin": a} for u, a in self.users.items()]}
        if path == "get":
            name = kwargs["params"]["username"]
            return {"user": {"username": name}} if name in self.users else {}
        name = kwargs["json"]["username"]
        if path == "create":
            self.users[name] = False
        elif path == "delete":
            del self.users[name]
        return {}


@pytest.fixture
def fake(monkeypatch) -> Server:
    server = Server()
    monkeypatch.setattr(people, "_call", server.call)
    return server


def test_a_person_is_made_with_a_password_the_kit_keeps(tmp_path, fake):
    kept = people.Passwords(tmp_path)
    password = people.add(fake.server, kept, "alice")
    assert len(password) >= 32 and kept.get("alice") == password and "alice" in fake.users
    assert people.people(fake.server, kept) == [people.Person("admin", True, False),
                                                 people.Person("alice", False, True)]
    with pytest.raises(KitError, match="alice is already a user of the tracking server"):
        people.add(fake.server, kept, "alice")
    assert kept.get("alice") == password  # the refused second add changed nothing
    assert people.reset(fake.server, kept, "alice") not in (password, kept.get("nobody"))
    assert ("PATCH", "update-password") in fake.calls


def test_remove_refuses_the_stacks_admin_and_unknown_people_naming_the_users(tmp_path, fake):
    kept = people.Passwords(tmp_path)
    with pytest.raises(KitError, match="admin is the stack's own admin"):
        people.remove(fake.server, kept, "admin")
    with pytest.raises(KitError, match="bob is not a user of the tracking server; its users: admin"):
        people.remove(fake.server, kept, "bob")
    people.add(fake.server, kept, "alice")
    people.remove(fake.server, kept, "alice")
    assert "alice" not in fake.users and kept.get("alice") is None


def test_ensure_makes_a_missing_user_and_sets_the_password_of_one_found(fake):
    people.ensure(fake.server, "serving", "first")
    assert fake.calls[-1] == ("POST", "create") and "serving" in fake.users
    people.ensure(fake.server, "serving", "second")  # e.g. a restored users database: another stack's password
    assert fake.calls[-1] == ("PATCH", "update-password")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOWKIT_HOME", str(tmp_path))
    return Settings()


def test_env_of_an_auth_stack_needs_a_person_or_admin(home):
    envfile.ensure(home.env_file("postgres-s3"), TOPOLOGIES["postgres-s3"], auth=True)
    bare = runner.invoke(app, ["env", "postgres-s3"])
    assert bare.exit_code == 1 and "postgres-s3 runs with --auth: say whose connection to use" in bare.output
    assert "MLFLOW_TRACKING_PASSWORD" not in bare.output
    admin = runner.invoke(app, ["env", "postgres-s3", "--admin"])
    assert admin.exit_code == 0 and "export MLFLOW_TRACKING_USERNAME=admin" in admin.output
    unknown = runner.invoke(app, ["env", "postgres-s3", "--user", "alice"])
    assert unknown.exit_code == 1 and "the kit holds no password for alice on postgres-s3" in unknown.output
    people.Passwords(home.state_dir("postgres-s3") / "people").put("alice", "her-own")
    alice = runner.invoke(app, ["env", "postgres-s3", "--user", "alice"])
    assert alice.exit_code == 0, alice.output
    assert "export MLFLOW_TRACKING_USERNAME=alice" in alice.output
    assert "export MLFLOW_TRACKING_PASSWORD=her-own" in alice.output
    from mlflowkit import stack_connection

    with pytest.raises(KitError, match="postgres-s3 runs with --auth: say whose connection to use"):
        stack_connection("postgres-s3")
    assert stack_connection("postgres-s3", user="alice").password == "her-own"
    assert stack_connection("postgres-s3", admin=True).username == "admin"


def test_people_of_a_stack_without_auth_are_refused_in_one_line(home):
    envfile.ensure(home.env_file("proxied"), TOPOLOGIES["proxied"])
    assert "export MLFLOW_TRACKING_URI=" in runner.invoke(app, ["env", "proxied"]).output
    for argv in (["env", "proxied", "--admin"], ["env", "proxied", "--user", "alice"],
                 ["users", "add", "proxied", "alice"], ["users", "list", "proxied"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, argv
        assert "proxied runs without --auth" in result.output, (argv, result.output)
        assert "Traceback" not in result.output


def test_an_auth_stack_made_by_an_older_kit_gets_the_serving_user_and_keeps_the_rest(tmp_path):
    path = tmp_path / ".env"
    first = envfile.ensure(path, TOPOLOGIES["proxied"], auth=True)
    older = "".join(line + "\n" for line in path.read_text().splitlines() if not line.startswith("MLFLOW_SERVE_"))
    path.write_text(older)
    again = envfile.ensure(path, TOPOLOGIES["proxied"])  # a later `up` without --auth: the stack keeps auth
    assert again["MLFLOW_SERVE_USERNAME"] == "serving" and len(again["MLFLOW_SERVE_PASSWORD"]) >= 32
    assert again["MLFLOW_SERVE_PASSWORD"] != first["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert {k: v for k, v in again.items() if not k.startswith("MLFLOW_SERVE_")} == \
        {k: v for k, v in first.items() if not k.startswith("MLFLOW_SERVE_")}
    assert "MLFLOW_SERVE_USERNAME" not in envfile.ensure(tmp_path / "plain.env", TOPOLOGIES["proxied"])


@pytest.mark.parametrize("name", [t.name for t in TOPOLOGIES.values() if t.supports_auth])
def test_the_serving_service_holds_its_own_user_not_the_admins(name):
    from tests.unit.test_topology import effective

    serve = effective(name, MLFLOW_AUTH_ARGS="--app-name basic-auth", MLFLOW_SERVE_USERNAME="serving",
                      MLFLOW_SERVE_PASSWORD="its-own")["services"]["serve"]
    environment = serve["environment"]
    assert (environment["MLFLOW_TRACKING_USERNAME"], environment["MLFLOW_TRACKING_PASSWORD"]) == ("serving", "its-own")
    assert not any(key.startswith("MLFLOW_AUTH_ADMIN") for key in environment), sorted(environment)


@contextlib.contextmanager
def answering(body: bytes) -> Iterator[str]:
    """A local HTTP server that answers every GET with ``body`` (200); yields its URL."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("body", [b"<html>not MLflow</html>", b"[1, 2]", b'{"users": "admin"}',
                                  b'{"users": [{"name": "no username"}]}', b'{"users": [null]}'])
def test_an_answer_that_is_not_mlflows_is_refused_in_one_line(body):
    """Whatever answers at the stack's address is outside the kit: a page, a list, users of another shape."""
    with answering(body) as url, pytest.raises(KitError) as info:
        people.listed(people.Server("tracking", url, ("admin", "pw"), timeout=10))
    assert "users/list" in str(info.value) and "\n" not in info.value.message
