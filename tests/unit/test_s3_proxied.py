"""The server plugin's streaming uploads (stacks/images/mlflow/plugin), against a recording stand-in for the S3
client: how a body is cut into parts, what reaches S3, and that a body cut off halfway is aborted (never completed,
so no object appears). The real S3 path is end to end: tests/e2e/test_streaming.py."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stacks" / "images" / "mlflow" / "plugin"))
from mlflowkit_server import s3_proxied  # noqa: E402
from mlflowkit_server.s3_proxied import PART_SIZE, ProxiedS3ArtifactRepository  # noqa: E402

MiB = 1024 * 1024


class RecordingS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.part_sizes: dict[str, list[int]] = {}  # in the order the parts arrived
        self.calls: list[str] = []
        self.extra: dict[str, object] = {}

    def put_object(self, Bucket, Key, Body, **extra):
        self.calls.append("put")
        self.extra = extra
        self.objects[f"{Bucket}/{Key}"] = bytes(Body)

    def create_multipart_upload(self, Bucket, Key, **extra):
        self.calls.append("create")
        self.extra = extra
        self.uploads[f"u{len(self.uploads)}"] = {}
        return {"UploadId": f"u{len(self.uploads) - 1}"}

    def upload_part(self, Bucket, Key, UploadId, PartNumber, Body):
        self.calls.append(f"part {len(Body) // MiB} MiB")
        self.part_sizes.setdefault(UploadId, []).append(len(Body))
        self.uploads[UploadId][PartNumber] = bytes(Body)
        return {"ETag": f"etag-{PartNumber}"}

    def complete_multipart_upload(self, Bucket, Key, UploadId, MultipartUpload):
        self.calls.append("complete")
        numbers = [part["PartNumber"] for part in MultipartUpload["Parts"]]
        assert numbers == sorted(self.uploads[UploadId])
        parts = self.uploads.pop(UploadId)
        self.objects[f"{Bucket}/{Key}"] = b"".join(parts[n] for n in numbers)

    def abort_multipart_upload(self, Bucket, Key, UploadId):
        self.calls.append("abort")
        self.uploads.pop(UploadId)

    def get_object(self, Bucket, Key):
        from botocore.exceptions import ClientError
        from botocore.response import StreamingBody

        if f"{Bucket}/{Key}" not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        data = self.objects[f"{Bucket}/{Key}"]
        return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentLength": len(data)}


@pytest.fixture
def s3(monkeypatch):
    client = RecordingS3()
    monkeypatch.setattr(s3_proxied.S3ArtifactRepository, "_get_s3_client", lambda self: client)
    monkeypatch.delenv("MLFLOW_S3_UPLOAD_EXTRA_ARGS", raising=False)
    return client


def repo() -> ProxiedS3ArtifactRepository:
    return ProxiedS3ArtifactRepository("s3-proxied://bucket/artifacts")


class Trickle(io.RawIOBase):
    """A body that arrives in uneven reads, as a socket's does (and can be cut off)."""

    def __init__(self, data: bytes, step: int, cut_at: int | None = None) -> None:
        self.data, self.step, self.cut_at, self.at = data, step, cut_at, 0

    def read(self, size: int = -1) -> bytes:
        if self.cut_at is not None and self.at >= self.cut_at:
            raise ConnectionResetError("client went away")
        size = min(size if size >= 0 else len(self.data), self.step)
        chunk = self.data[self.at:self.at + size]
        self.at += len(chunk)
        return chunk


async def chunks(data: bytes, step: int, cut_at: int | None = None):
    for start in range(0, len(data), step):
        if cut_at is not None and start >= cut_at:
            raise ConnectionResetError("client went away")
        await asyncio.sleep(0)
        yield data[start:start + step]


def body(size: int) -> bytes:
    return os.urandom(size)


def test_the_repository_streams_where_mlflow_can():
    from mlflow.store.artifact.artifact_repo import StreamUploadMixin

    assert isinstance(repo(), StreamUploadMixin)


@pytest.mark.parametrize("size", [0, 1, PART_SIZE - 1])
def test_a_body_within_one_part_is_one_put(s3, size):
    data = body(size)
    repo().log_artifact_from_stream(Trickle(data, 64 * 1024), "model.pkl", "run/artifacts")
    asyncio.run(repo().log_artifact_from_async_stream(chunks(data, 64 * 1024), "notes.txt", None))
    assert s3.calls == ["put", "put"]
    assert s3.objects == {"bucket/artifacts/run/artifacts/model.pkl": data, "bucket/artifacts/notes.txt": data}
    assert s3.extra == {"ContentType": "text/plain"}  # what MLflow's own upload sends: the guessed type


@pytest.mark.parametrize("size,parts", [(PART_SIZE, [8]), (PART_SIZE + 1, [8, 0]), (20 * MiB, [8, 8, 4])])
def test_a_larger_body_goes_up_in_parts_of_part_size(s3, size, parts):
    data = body(size)
    repo().log_artifact_from_stream(Trickle(data, 1_000_003), "big.bin", "a")
    assert s3.calls == ["create", *(f"part {p} MiB" for p in parts), "complete"]
    assert s3.objects["bucket/artifacts/a/big.bin"] == data
    assert s3.uploads == {}


@pytest.mark.parametrize("size", [PART_SIZE, PART_SIZE + 1, 20 * MiB, 3 * PART_SIZE + 5])
def test_the_async_path_sends_parts_of_the_chunks_that_reach_part_size(s3, size):
    """Each part is the chunks received until they reach PART_SIZE, joined once: every part but the last at least
    PART_SIZE (S3's rule is 5 MiB) and less than one chunk more; the object is the body, byte for byte."""
    data, step = body(size), 65_536 + 7
    asyncio.run(repo().log_artifact_from_async_stream(chunks(data, step), "big.bin", "b"))
    [sizes] = s3.part_sizes.values()
    assert sum(sizes) == size
    assert all(PART_SIZE <= n < PART_SIZE + step for n in sizes[:-1]), sizes
    assert s3.calls[0] == "create" and s3.calls[-1] == "complete"
    assert s3.objects["bucket/artifacts/b/big.bin"] == data
    assert s3.uploads == {}


def test_parts_go_up_several_at_once_and_no_more(s3, monkeypatch):
    """S3 takes parts in parallel: while a part is slow to land, the next ones go up too — at most
    PARTS_IN_FLIGHT at a time, so memory stays bounded."""
    import threading
    import time

    running, most, lock = 0, 0, threading.Lock()
    upload_part = s3.upload_part

    def slow_part(**kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return upload_part(**kwargs)

    monkeypatch.setattr(s3, "upload_part", slow_part)
    data = body(PART_SIZE * (s3_proxied.PARTS_IN_FLIGHT + 3))
    asyncio.run(repo().log_artifact_from_async_stream(chunks(data, MiB), "big.bin", "c"))
    assert most == s3_proxied.PARTS_IN_FLIGHT
    assert s3.objects["bucket/artifacts/c/big.bin"] == data


def test_a_body_cut_off_halfway_is_aborted_and_no_object_appears(s3):
    data = body(20 * MiB)
    with pytest.raises(ConnectionResetError):
        repo().log_artifact_from_stream(Trickle(data, 1 * MiB, cut_at=12 * MiB), "big.bin")
    with pytest.raises(ConnectionResetError):
        asyncio.run(repo().log_artifact_from_async_stream(chunks(data, 1 * MiB, cut_at=17 * MiB), "big.bin"))
    assert s3.calls == ["create", "part 8 MiB", "abort", "create", "part 8 MiB", "part 8 MiB", "abort"]
    assert s3.objects == {} and s3.uploads == {}


def test_a_small_body_cut_off_never_reaches_s3(s3):
    with pytest.raises(ConnectionResetError):
        asyncio.run(repo().log_artifact_from_async_stream(chunks(body(3 * MiB), MiB, cut_at=2 * MiB), "x.bin"))
    assert s3.calls == [] and s3.objects == {}


def test_configured_extra_upload_arguments_are_sent(s3, monkeypatch):
    monkeypatch.setenv("MLFLOW_S3_UPLOAD_EXTRA_ARGS", '{"ServerSideEncryption": "AES256"}')
    repo().log_artifact_from_stream(Trickle(b"x", 10), "data.csv.gz")
    assert s3.extra == {"ContentType": "text/csv", "ContentEncoding": "gzip", "ServerSideEncryption": "AES256"}


# --- streaming downloads (mlflowkit_server.streaming) -------------------------------------------------------------


@pytest.fixture
def app(s3, monkeypatch):
    """MLflow's download route as the image runs it, on a stand-in router whose own endpoint records its calls;
    ``app(path)`` calls the route's endpoint and returns the response and its whole body."""
    import importlib
    import types

    from fastapi import APIRouter
    from fastapi.responses import PlainTextResponse
    from mlflow.server import ARTIFACTS_DESTINATION_ENV_VAR, SERVE_ARTIFACTS_ENV_VAR, handlers
    from mlflowkit_server import streaming

    real = importlib.import_module(streaming.TARGET)
    stand_in = types.ModuleType("stand_in")
    for name in ("_is_serving_proxied_artifacts", "_get_workspace_scoped_path", "_get_artifact_repo",
                 "_content_disposition"):
        setattr(stand_in, name, getattr(real, name))
    calls: list[str] = []

    async def download_artifact(artifact_path: str):
        calls.append(artifact_path)
        return PlainTextResponse("MLflow's own endpoint", status_code=299)

    stand_in.download_artifact = download_artifact
    stand_in.artifact_router = APIRouter()
    stand_in.artifact_router.get("/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}")(download_artifact)
    streaming.install(stand_in)
    [route] = stand_in.artifact_router.routes
    assert route.endpoint is not download_artifact and route.methods == {"GET"}
    monkeypatch.setenv(SERVE_ARTIFACTS_ENV_VAR, "true")
    monkeypatch.setenv(ARTIFACTS_DESTINATION_ENV_VAR, "s3-proxied://bucket/artifacts")
    monkeypatch.setattr(handlers, "_artifact_repo", repo())

    def call(path: str):
        async def go():
            response = await route.endpoint(path)
            if hasattr(response, "body_iterator"):
                return response, b"".join([chunk async for chunk in response.body_iterator])
            return response, response.body
        return asyncio.run(go())

    call.calls = calls
    return call


def test_a_download_streams_the_object_from_s3(app, s3):
    data = body(3 * MiB + 5)
    s3.objects["bucket/artifacts/1/run/artifacts/model.pkl"] = data
    response, got = app("1/run/artifacts/model.pkl")
    assert (response.status_code, got == data, app.calls) == (200, True, [])
    assert response.headers["content-length"] == str(len(data))  # MLflow's own answer has none (a file streamed)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"] == "attachment; filename=model.pkl"  # MLflow's helper's


@pytest.mark.parametrize("case", ["missing", "serving off", "another repository"])
def test_every_other_case_is_mlflows_own_endpoint(app, s3, monkeypatch, case):
    from mlflow.server import SERVE_ARTIFACTS_ENV_VAR, handlers

    s3.objects["bucket/artifacts/present.txt"] = b"x"
    if case == "serving off":
        monkeypatch.setenv(SERVE_ARTIFACTS_ENV_VAR, "false")
    if case == "another repository":
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
        monkeypatch.setattr(handlers, "_artifact_repo", LocalArtifactRepository("/nonexistent"))
    path = "missing.txt" if case == "missing" else "present.txt"
    response, _ = app(path)
    assert (response.status_code, app.calls) == (299, [path])


def test_the_hook_installs_when_mlflow_imports_the_router():
    """In a fresh interpreter, as the image's .pth does it: the app MLflow builds answers GET with the kit's
    endpoint (and PUT with MLflow's); again when the launcher imports mlflow.server a second time
    (mlflowkit_server.in_process), as it does under `--app-name basic-auth`, whose CLI imports the app first."""
    import subprocess

    probe = ("import sys\n"
             "import mlflowkit_server.streaming\n"
             "from mlflowkit_server import in_process\n"
             "def routes():\n"
             "    from mlflow.server.artifact_router import artifact_router\n"
             "    from mlflow.server.fastapi_app import app\n"
             "    return sorted((sorted(r.methods)[0], r.endpoint.__module__) for r in artifact_router.routes)\n"
             "print(routes())\n"
             "for name in [name for name in sys.modules if in_process.reimported(name)]:\n"
             "    del sys.modules[name]\n"
             "print(routes())\n")
    plugin = str(Path(s3_proxied.__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": plugin})
    assert done.returncode == 0, done.stderr[-2000:]
    ours, theirs = "mlflowkit_server.streaming", "mlflow.server.artifact_router"
    expected = str([("GET", ours), ("GET", ours), ("PUT", theirs), ("PUT", theirs)])
    assert done.stdout.splitlines()[-2:] == [expected, expected], done.stdout[-2000:]
