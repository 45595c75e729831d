"""Every topology, for real: up → validate (log, register, alias, load, serve, predict, where it landed) →
down keeping volumes → up → the earlier run and model version are still there → validate again → the
topology's tutorial on that stack, to its `down --volumes`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlflowkit import faults
from mlflowkit.client import Client
from mlflowkit.docker import run
from mlflowkit.errors import KitError
from mlflowkit.settings import Settings
from mlflowkit.topology import DEFAULT, TOPOLOGIES, ArtifactMode
from mlflowkit.validate import Report, steps_for, validate_isolated
from tests.e2e.conftest import defaults_group

pytestmark = pytest.mark.e2e


def assert_passed(report: Report, stack, ui: bool | None = None) -> None:
    """Every step passed, and the steps are the ones the topology declares (``ui`` as validation was asked)."""
    table = "\n".join(f"{s.name}: {'PASS' if s.ok else 'FAIL'} {s.detail}\n{s.logs}" for s in report.steps)
    assert report.ok, f"validation of {report.topology} failed:\n{table}\n\nlogs:\n{stack.logs(tail=40)}"
    assert [s.name for s in report.steps] == [name for name, _ in steps_for(stack, ui=ui)]


def assert_missing_s3_keys_are_explained(stack) -> None:
    """A client of a topology whose clients write S3, but without the keys: one clear error, with the fix."""
    import tempfile

    conn = dataclasses.replace(stack.connection(), aws_access_key_id=None, aws_secret_access_key=None)
    client = Client(conn)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as handle:
        handle.write("x")
        handle.flush()
        with pytest.raises(KitError) as info, client.run("no-keys") as run:
            run.log_artifact(handle.name)
    assert "Unable to locate credentials" in str(info.value) or "NoCredentialsError" in str(info.value)
    assert "AWS_ACCESS_KEY_ID" in (info.value.hint or "")


def assert_each_server_is_one_process(stack) -> None:
    """The image's launcher (mlflowkit_server.in_process) serves MLflow in the process of `mlflow server` itself:
    with one worker, each server container's main process is `mlflow server` and has no child (not the CLI
    waiting beside a uvicorn child). The engine's healthcheck runs its own processes beside it, whenever its
    interval falls: children of the container's runtime, not of the main process, so they are not counted."""
    for service in stack.topology.servers:
        numbers = [s.replica for s in stack.states() if s.service == service and s.state == "running"]
        assert numbers, f"no running {service} container"
        for number in numbers:  # every replica of a replicated server
            container = faults.container(stack, service, number)
            main = run(["docker", "inspect", "--format", "{{.State.Pid}}", container], timeout=30).stdout.strip()
            rows = run(["docker", "top", container, "-o", "pid,ppid,args"], timeout=30).stdout.splitlines()[1:]
            processes = {pid: (ppid, args) for pid, ppid, args in (row.split(None, 2) for row in rows)}
            assert "mlflow server" in processes[main][1], f"{service} #{number}'s main process: {processes[main]}"
            tree, grew = {main}, True
            while grew:  # the main process's descendants
                children = {pid for pid, (ppid, _) in processes.items() if ppid in tree} - tree
                tree, grew = tree | children, bool(children)
            assert tree == {main}, f"{service} #{number} runs {len(tree)} processes:\n" + "\n".join(
                f"{pid} {processes[pid][1]}" for pid in sorted(tree))


@pytest.fixture
def no_ambient_aws(monkeypatch, tmp_path):
    """Nothing from this machine's AWS set-up may stand in for the keys a test withholds."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_ambient_aws")
@pytest.mark.parametrize("name", [  # the README's first stack is in `make test`
    pytest.param(name, marks=[defaults_group(name), *([pytest.mark.smoke] if name == DEFAULT else [])])
    for name in sorted(TOPOLOGIES)])
def test_stack_validates_keeps_its_data_and_runs_its_tutorial(name, make_stack, tmp_path, request):
    """On the topology's default ports and settings, as `make stack-<topology>` brings it up; then the reader's
    path: docs/tutorials/<topology>.md from top to bottom on that stack, ending with its `down --volumes`."""
    from tests.e2e.test_tutorials import run_tutorial

    stack = make_stack(TOPOLOGIES[name], default_ports=True)
    stack.up()
    first = validate_isolated(stack)
    assert_passed(first, stack)
    assert_each_server_is_one_process(stack)
    if stack.topology.client_needs_s3_credentials:
        assert_missing_s3_keys_are_explained(stack)

    stack.down()  # volumes kept
    assert stack.states() == []
    if stack.topology.uses_data_dir:
        assert any(Path(stack.env()["MLFLOW_DATA_DIR"]).iterdir()), "the data directory must survive `down`"
    else:
        assert stack.volumes(), "named volumes must survive `down`"

    stack.up()
    second = validate_isolated(stack, ui=False)  # the first proved the UI; this one proves the data stayed
    assert_passed(second, stack, ui=False)
    assert first.run_id in second.earlier_runs
    assert int(second.model_version) == int(first.model_version) + 1

    # The tutorial's last block is `mlflowkit down <topology> --volumes`: the stack's data goes with it, named
    # volumes and a local store alike.
    run_tutorial(name, stack.settings, tmp_path, request)
    assert stack.states() == [] and stack.volumes() == []
    if stack.topology.uses_data_dir:
        data = Path(stack.env()["MLFLOW_DATA_DIR"])
        assert sorted(p.name for p in data.iterdir()) == [], "`down --volumes` must delete the local store"


def test_failed_up_shows_the_cause_and_leaves_no_container(make_stack, e2e_settings):
    settings = dataclasses.replace(e2e_settings, up_timeout=60)
    stack = make_stack(TOPOLOGIES["postgres-s3"], settings, MLFLOW_WORKERS="not-a-number")
    with pytest.raises(KitError) as info:
        stack.up()
    assert "did not come up" in str(info.value)
    assert "not-a-number" in (info.value.details or ""), info.value.details
    assert stack.states() == [], "a failed up must not leave containers behind"


def test_two_stacks_run_side_by_side_and_two_connections_do_not_interfere(make_stack):
    """Distinct projects, ports and stores; one process, two clients, interleaved calls."""
    file_stack, sqlite_stack = make_stack(TOPOLOGIES["file"]), make_stack(TOPOLOGIES["sqlite"])
    file_stack.up()
    sqlite_stack.up()
    a, b = Client(file_stack.connection()), Client(sqlite_stack.connection())
    with a.run("side-by-side") as run_a, b.run("side-by-side") as run_b:
        run_a.log_params({"stack": "file"})
        run_b.log_params({"stack": "sqlite"})
        run_a.log_metrics({"m": 1.0})
        run_b.log_metrics({"m": 2.0})
    assert [r.run_id for r in a.search_runs("side-by-side")] == [run_a.run_id]
    assert [r.run_id for r in b.search_runs("side-by-side")] == [run_b.run_id]
    assert a.get_run(run_a.run_id).data.params == {"stack": "file"}
    assert b.get_run(run_b.run_id).data.metrics == {"m": 2.0}
    for stack in (file_stack, sqlite_stack):
        assert {s.service: s.health for s in stack.states()} == {"mlflow": "healthy"}


def test_down_of_a_stack_that_is_not_up_is_one_clear_line(e2e_settings, monkeypatch):
    from typer.testing import CliRunner

    from mlflowkit.cli import app

    for key, value in e2e_settings.environ().items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["down", "sqlite"])
    assert result.exit_code == 1
    assert f"error: sqlite is not up (no containers in project {e2e_settings.project_prefix}-sqlite)" in result.output


def test_built_images_hold_no_secret_and_run_as_non_root(e2e_settings):
    """The images' configuration and history: no passwords or keys, no CA bundle, a non-root user."""
    import json

    from mlflowkit import images
    from mlflowkit.docker import run

    for image in images.names(e2e_settings):
        config = json.loads(run(["docker", "image", "inspect", image], timeout=30).stdout)[0]["Config"]
        env_names = [item.split("=", 1)[0] for item in config.get("Env") or []]
        assert not [n for n in env_names if any(w in n for w in ("PASSWORD", "SECRET", "ACCESS_KEY", "TOKEN"))]
        if "mlflow" in image.split("/")[-1]:  # no usage telemetry from any MLflow container
            assert {"MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=true"} <= set(config.get("Env") or [])
        assert config.get("User") not in ("", "root", "0"), f"{image} runs as root"
        history = run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image], timeout=30).stdout
        assert "AWS_SECRET_ACCESS_KEY=" not in history and "POSTGRES_PASSWORD=" not in history
        leftovers = run(["docker", "run", "--rm", "--entrypoint", "sh", image, "-c",
                         "ls /run/secrets 2>/dev/null; ls /opt/mlflowkit-server 2>/dev/null; true"], timeout=60).stdout
        assert leftovers.strip() == "", f"{image} keeps build-time files: {leftovers}"


def _secret_values(settings) -> list[bytes]:
    """Every secret value in the .env files of this run and of this checkout, plus a freshly generated set."""
    from mlflowkit import envfile

    files = [*Path(settings.home).glob("*/.env"), *Settings().stacks_dir.glob("*/.env")]
    pairs = [item for f in files for item in envfile.parse(f.read_text()).items()]
    pairs += [*envfile.defaults(TOPOLOGIES["proxied"]).items(), *envfile.auth_values().items()]
    secret = ("PASSWORD", "SECRET", "ACCESS_KEY")
    return [v.encode() for k, v in pairs if any(word in k for word in secret) and len(v) >= 12]


def test_image_layers_hold_no_private_key_credentials_file_or_generated_secret(e2e_settings, tmp_path):
    """Byte-level: every file of every layer (docker save). First proven on a probe image that hides a key (after
    a certificate, in one file) and a secret in a layer a later layer deletes — as the engine saves it and with
    its layers recompressed as the containerd image store keeps them; then the kit's images must come out clean."""
    from mlflowkit import images
    from mlflowkit.docker import run
    from tests.unit.test_scan import PEM_CERTIFICATE, PEM_KEY, recompressed

    needle = b"probe-secret-0123456789"
    (tmp_path / "bundle.pem").write_bytes(PEM_CERTIFICATE + PEM_KEY)
    (tmp_path / "Dockerfile").write_text(
        f"FROM {images.base_image(e2e_settings)}\n"
        f"COPY bundle.pem /root/bundle.pem\nRUN echo {needle.decode()} > /tmp/s\n"
        "RUN rm /root/bundle.pem /tmp/s\n")
    probe = "mlflowkit-e2e/scan-probe:latest"
    run(["docker", "build", "-q", "-t", probe, str(tmp_path)], timeout=180)
    try:
        found = {(f.path.lstrip("./"), f.reason) for f in images.scan(probe, [needle])}
        saved = tmp_path / "probe.tar"
        run(["docker", "save", "-o", str(saved), probe], timeout=180)
    finally:
        run(["docker", "image", "rm", "-f", probe], timeout=60)
    expected = {("root/bundle.pem", "a private key"), ("tmp/s", "contains a generated secret of this kit")}
    assert expected <= found
    for compression in ("gz", "zst"):
        with recompressed(saved, compression) as archive:
            again = {(f.path.lstrip("./"), f.reason) for f in images.scan_archive(archive, probe, [needle])}
        assert expected <= again, compression

    needles = _secret_values(e2e_settings)
    assert len(needles) >= 4
    findings = [finding for image in images.names(e2e_settings) for finding in images.scan(image, needles)]
    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize("name", ["proxied", "artifacts-only"])
def test_auth_refuses_anonymous_writes_and_validates_authenticated(name, make_stack):
    """With workspaces where the topology has them (proxied): the whole validation, serving included, runs in the
    default workspace as before workspaces; then two teams in workspaces of their own."""
    stack = make_stack(TOPOLOGIES[name])
    stack.up(auth=True, workspaces=stack.topology.supports_workspaces)
    assert stack.workspaces_enabled == stack.topology.supports_workspaces
    report = validate_isolated(stack)
    assert_passed(report, stack)
    assert "anonymous refused" in [step.name for step in report.steps]
    _artifacts_stream_through_the_proxy(stack)
    _people_act_as_themselves(stack)
    if stack.workspaces_enabled:
        _workspaces_keep_teams_apart(stack)


def _workspaces_keep_teams_apart(stack) -> None:
    """`mlflowkit workspaces` on a real stack: carol (vision) and dave (nlp), each a `user` of their team's workspace.
    Carol writes through a plain MLflow client given only `env --user carol --workspace vision`: an experiment, a
    run with an artifact (through the proxy), a registered model. Dave sees none of it and reads none of it — by id,
    by name, in lists, the artifact through both of the server's artifact routes — from his workspace, from the
    default one, and with a forged workspace header naming hers. Carol reads all of it; revoked, she creates
    nothing more there; a workspace holding data is not removed."""
    import os
    import tempfile

    import requests

    from mlflowkit import workspaces
    from mlflowkit.workspaces import Level, Member

    server = stack.workspace_server()
    teams = {"vision": "carol", "nlp": "dave"}
    for team, person in teams.items():
        stack.add_person(person)
        workspaces.add(server, team, f"the {team} team")
        workspaces.grant(server, team, person, Level.USER)
    assert {w.name for w in workspaces.listed(server)} >= {"default", "vision", "nlp"}
    assert workspaces.members(server, "vision") == [Member("carol", Level.USER)]
    assert Member("carol", Level.USER) in workspaces.members(server, "default")  # as every person the kit adds

    carol = stack.client_connection(user="carol", workspace="vision")
    dave = stack.client_connection(user="dave", workspace="nlp")
    assert carol.environ()["MLFLOW_WORKSPACE"] == "vision"
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "hers.txt")
        with open(path, "w") as handle:
            handle.write("vision's")
        with Client(carol).run("vision-work") as run:
            run.log_params({"team": "vision"})
            run.log_artifact(path)
    experiment = Client(carol).get_experiment("vision-work")
    assert experiment.workspace == "vision" and "/workspaces/vision/" in experiment.artifact_location

    def call(who, method: str, route: str, workspace: str | None, **query) -> requests.Response:
        where = {"params": query} if method == "GET" else {"json": query}
        headers = {"X-MLFLOW-WORKSPACE": workspace} if workspace else {}
        return requests.request(method, f"{who.tracking_uri}{route}", **where, headers=headers,
                                auth=(who.username, who.password), timeout=60)

    made = call(carol, "POST", "/api/2.0/mlflow/registered-models/create", "vision", name="vision-model")
    assert made.status_code == 200, made.text
    stored = Client(carol).get_run(run.run_id)
    assert stored.data.params == {"team": "vision"}
    key = stored.info.artifact_uri.split("mlflow-artifacts:/", 1)[1].strip("/")
    reads = [("GET", "/api/2.0/mlflow/experiments/get", {"experiment_id": experiment.experiment_id}),
             ("GET", "/api/2.0/mlflow/runs/get", {"run_id": run.run_id}),
             ("GET", "/api/2.0/mlflow/artifacts/list", {"run_id": run.run_id}),
             ("GET", "/get-artifact", {"run_id": run.run_id, "path": "hers.txt"}),
             ("GET", f"/api/2.0/mlflow-artifacts/artifacts/{key}/hers.txt", {}),
             ("GET", "/api/2.0/mlflow/registered-models/get", {"name": "vision-model"})]
    for method, route, query in reads:
        assert call(carol, method, route, "vision", **query).status_code == 200, route
        for workspace in ("nlp", None, "vision"):  # his, the default, and a forged header naming hers
            refused = call(dave, method, route, workspace, **query)
            assert refused.status_code == 403, (route, workspace, refused.status_code, refused.text[:200])
    assert call(carol, "GET", "/get-artifact", "vision", run_id=run.run_id, path="hers.txt").text == "vision's"
    for workspace in ("nlp", None, "vision"):
        listed = call(dave, "POST", "/api/2.0/mlflow/experiments/search", workspace, max_results=100).json()
        assert "vision-work" not in {e["name"] for e in listed.get("experiments", [])}, workspace
        models = call(dave, "GET", "/api/2.0/mlflow/registered-models/search", workspace, max_results=100).json()
        assert "vision-model" not in {m["name"] for m in models.get("registered_models", [])}, workspace
    assert [w.name for w in workspaces.listed(dataclasses.replace(server, admin=(dave.username, dave.password)))] \
        == ["default", "nlp"], "a member lists only the workspaces he is in"
    # his own team's workspace is his to write in
    assert Client(dave).experiment("nlp-work")

    workspaces.revoke(server, "vision", "carol")  # out: nothing new there (what she made stays hers)
    refused = call(carol, "POST", "/api/2.0/mlflow/experiments/create", "vision", name="after-revoke")
    assert refused.status_code == 403, refused.text
    assert workspaces.members(server, "vision") == []
    with pytest.raises(KitError, match="still contains"):  # MLflow's RESTRICT: a workspace with data stays
        workspaces.remove(server, "vision")


def _people_act_as_themselves(stack) -> None:
    """`mlflowkit users` on a real stack: each person logs in with a password of their own and writes as
    themselves; the other's experiment, and its artifacts (through the tracking server on proxied, the artifacts
    server on artifacts-only, which reads the same users and permissions), refuse them; the serving service's user
    reads the served model and cannot move its alias; a reset password and a removed person are refused at once."""
    import requests

    from mlflowkit import people
    from mlflowkit.validate import MODEL_NAME

    server, kept = stack.user_server(), stack.passwords
    for name in ("alice", "bob"):
        stack.add_person(name)  # with workspaces: a user of the default one too
    # the serving service's user, made by the validation's serve step: no admin, no password the kit hands out
    assert [(p.name, p.admin, p.password_kept) for p in people.people(server, kept)] == \
        [("admin", True, False), ("alice", False, True), ("bob", False, True), ("serving", False, False)]
    alice, bob = stack.person_connection("alice"), stack.person_connection("bob")
    assert (alice.username, bob.username) == ("alice", "bob") and alice.password != bob.password
    api = f"{alice.tracking_uri}/api/2.0/mlflow"

    def call(who, method: str, path: str, **body) -> requests.Response:
        where = {"params": body} if method == "GET" else {"json": body}
        return requests.request(method, f"{api}/{path}", **where, auth=(who.username, who.password), timeout=60)

    made = call(alice, "POST", "experiments/create", name="alice-own")
    assert made.status_code == 200, made.text
    experiment = made.json()["experiment_id"]
    run = call(alice, "POST", "runs/create", experiment_id=experiment)
    assert run.status_code == 200, run.text
    refused = call(bob, "POST", "runs/create", experiment_id=experiment)  # READ by default: not his experiment
    assert refused.status_code == 403, refused.text
    artifacts = (f"http://127.0.0.1:{stack.env()['ARTIFACTS_PORT']}"
                 if stack.topology.artifact_mode is ArtifactMode.ARTIFACTS_SERVER else alice.tracking_uri)
    run_id = run.json()["run"]["info"]["run_id"]
    url = f"{artifacts}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/alice.txt"
    stored = requests.put(url, data=b"hers", auth=(alice.username, alice.password), timeout=60)
    assert stored.status_code == 200, stored.text
    taken = requests.put(url, data=b"his", auth=(bob.username, bob.password), timeout=60)
    assert taken.status_code == 403, taken.text

    values = stack.env()  # the identity the served model's code runs with reads it and cannot move its alias
    serving = (values["MLFLOW_SERVE_USERNAME"], values["MLFLOW_SERVE_PASSWORD"])
    assert requests.get(f"{api}/registered-models/get", params={"name": MODEL_NAME}, auth=serving, timeout=60).ok
    moved = requests.post(f"{api}/registered-models/alias", json={"name": MODEL_NAME, "alias": "taken", "version": "1"},
                          auth=serving, timeout=60)
    assert moved.status_code == 403, moved.text

    old = alice.password
    people.reset(server, kept, "alice")
    renewed = stack.person_connection("alice")
    assert renewed.password != old and call(renewed, "GET", "experiments/get", experiment_id=experiment).ok
    people.remove(server, kept, "bob")
    for who in ((alice.username, old), (bob.username, bob.password)):
        for base in {alice.tracking_uri, artifacts}:
            probe = requests.get(f"{base}/api/2.0/mlflow/users/current", auth=who, timeout=60)
            assert probe.status_code == 401, (base, who[0], probe.status_code)
    assert "bob" not in people.listed(server) and kept.names() == {"alice"}


def _artifacts_stream_through_the_proxy(stack) -> None:
    """The artifact proxy streams (stacks/images/mlflow/plugin): an upload of three parts arrives whole, byte for
    byte, with --auth on, and comes back streamed from S3; a body cut off halfway leaves no object, in MLflow or S3."""
    import base64
    import hashlib
    import os
    import socket
    import time
    from urllib.parse import urlsplit

    import requests

    values = stack.env()
    conn = stack.connection()
    base = (f"http://127.0.0.1:{values['ARTIFACTS_PORT']}"
            if stack.topology.artifact_mode is ArtifactMode.ARTIFACTS_SERVER else conn.tracking_uri)
    url = f"{base}/api/2.0/mlflow-artifacts/artifacts/streaming-e2e"
    auth = (conn.username, conn.password)
    whole = os.urandom(20 * 1024 * 1024 + 12345)  # 8 + 8 + 4 MiB parts and a bit
    requests.put(f"{url}/whole.bin", data=whole, auth=auth, timeout=120).raise_for_status()
    got = requests.get(f"{url}/whole.bin", auth=auth, timeout=120)
    got.raise_for_status()
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(whole).hexdigest()
    # Streamed from S3 (mlflowkit_server.streaming): S3's length up front; MLflow's own route sends a temporary
    # file chunked, without one.
    assert got.headers.get("Content-Length") == str(len(whole)), dict(got.headers)
    missing = requests.get(f"{url}/never-uploaded.bin", auth=auth, timeout=60)
    assert missing.status_code >= 400 and "never-uploaded.bin" in missing.text  # MLflow's own answer

    host, port = urlsplit(base).hostname, urlsplit(base).port
    token = base64.b64encode(f"{conn.username}:{conn.password}".encode()).decode()
    head = (f"PUT /api/2.0/mlflow-artifacts/artifacts/streaming-e2e/cut.bin HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Basic {token}\r\nContent-Length: {len(whole)}\r\n\r\n")
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(head.encode() + whole[:len(whole) // 2 + 1])  # into the second part, then gone
    listed: list[list[str]] = []
    for _ in range(5):  # a few seconds in which the server notices the disconnect (and aborts the upload)
        files = requests.get(url.rsplit("/", 1)[0], params={"path": "streaming-e2e"}, auth=auth, timeout=60)
        files.raise_for_status()
        listed.append(sorted(f["path"] for f in files.json().get("files", [])))
        time.sleep(1)
    assert listed == [["whole.bin"]] * 5, "a cut-off upload became an artifact"
    assert not stack.s3_object_exists(values["S3_BUCKET"], "streaming-e2e/cut.bin")
    assert stack.s3_object_exists(values["S3_BUCKET"], "streaming-e2e/whole.bin")


def test_the_callers_shell_cannot_override_the_stacks_env(make_stack, monkeypatch):
    """Compose lets exported variables win over --env-file: a shell holding other AWS keys, ports, a database
    password or an MLflow URI (a real AWS profile, or `eval "$(mlflowkit env …)"` of another stack) must change
    nothing in the stack, and no container may carry those values."""
    import json

    from mlflowkit.docker import run

    hostile = {"AWS_ACCESS_KEY_ID": "hostile-key-id", "AWS_SECRET_ACCESS_KEY": "hostile-secret-0123456789",
               "POSTGRES_PASSWORD": "hostile-postgres-password", "MLFLOW_PORT": "1", "SERVE_PORT": "2",
               "S3_BUCKET": "hostile-bucket", "MLFLOW_TRACKING_URI": "http://hostile.invalid:5000",
               "MLFLOW_S3_ENDPOINT_URL": "http://hostile.invalid:8333", "MLFLOW_WORKERS": "not-a-number"}
    for key, value in hostile.items():
        monkeypatch.setenv(key, value)
    stack = make_stack(TOPOLOGIES["proxied"])
    stack.up()
    assert_passed(validate_isolated(stack), stack)
    ids = run(["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={stack.project}"],
              timeout=30).stdout.split()
    carried = []
    for container in json.loads(run(["docker", "inspect", *ids], timeout=30).stdout):
        text = json.dumps([container["Config"]["Env"], container["Config"]["Cmd"], container["HostConfig"]])
        carried += [(container["Name"], key) for key, value in hostile.items()
                    if len(value) > 2 and value in text]
    assert len(ids) >= len(stack.topology.services) and carried == []
