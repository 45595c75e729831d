"""``s3-proxied://bucket/prefix``: S3 for an MLflow server that proxies artifacts, without presigned URLs.

Why: an MLflow 3 server with ``--artifacts-destination s3://…`` advertises multipart transfers in
``/api/3.0/mlflow/server-info``, and MLflow 3 clients then move bytes through presigned URLs that carry the
*server's* S3 endpoint (``http://s3:8333`` in a compose network). A client outside that network cannot resolve
it and retries for minutes. Scenario 5 promises clients that only talk to the tracking server, so this
repository keeps every S3 operation but none of the presigned-URL capabilities (it is not a
``MultipartUploadMixin``/``MultipartDownloadMixin``/``PresignedUploadMixin``): the server advertises no
multipart support and proxies all bytes, for MLflow 3 and older clients alike.

Uploads stream (MLflow 3.17+, ``StreamUploadMixin``): the server's upload handler hands over the request body,
which goes to S3 in parts of about PART_SIZE bytes as it arrives — no temporary file. The ASGI path (uvicorn, what
MLflow 3 runs) sends up to PARTS_IN_FLIGHT parts at once while the next one arrives, as boto3 does, so at most
PARTS_IN_FLIGHT + 1 parts are in memory per upload. A body that fits one part is one PutObject; a larger one a
multipart upload, aborted if the body is cut off, so a half-sent artifact never becomes a visible object. Older
MLflow (no mixin) keeps its temporary-file path.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
from collections.abc import AsyncIterable, Callable
from mimetypes import guess_type
from typing import Any, BinaryIO

from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

try:  # MLflow 3.17+: the upload handlers stream into repositories that have it
    from mlflow.store.artifact.artifact_repo import StreamUploadMixin
    _BASES: tuple[type, ...] = (ArtifactRepository, StreamUploadMixin)
except ImportError:  # older MLflow images of an upgrade run the same plugin
    _BASES = (ArtifactRepository,)

SCHEME = "s3-proxied"
# S3's minimum part is 5 MiB (all but the last); 8 MiB is boto3's default chunk size too.
PART_SIZE = 8 * 1024 * 1024
# Parts sent to S3 at once by the ASGI path, besides the one arriving: S3 servers take parts in parallel (boto3
# sends 10 at a time), and memory stays bounded at (PARTS_IN_FLIGHT + 1) * PART_SIZE per upload.
PARTS_IN_FLIGHT = 3


class ProxiedS3ArtifactRepository(*_BASES):  # type: ignore[misc]
    """Delegates to :class:`S3ArtifactRepository` for ``s3://`` + the same bucket and prefix."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        # Only what the caller passed: older MLflow takes fewer arguments (2.x the URI alone, 3.1 also
        # tracking_uri), and the same image code serves the old version of an upgrade (`mlflowkit upgrade`).
        given = {key: value for key, value in (("tracking_uri", tracking_uri), ("registry_uri", registry_uri))
                 if value is not None}
        super().__init__(artifact_uri, **given)
        if not artifact_uri.startswith(f"{SCHEME}://"):
            raise ValueError(f"expected a {SCHEME}:// URI, got {artifact_uri!r}")
        s3_uri = "s3" + artifact_uri[len(SCHEME):]
        self._s3 = S3ArtifactRepository(s3_uri, **given)

    def log_artifact(self, local_file, artifact_path=None):
        return self._s3.log_artifact(local_file, artifact_path)

    def log_artifacts(self, local_dir, artifact_path=None):
        return self._s3.log_artifacts(local_dir, artifact_path)

    def list_artifacts(self, path=None):
        return self._s3.list_artifacts(path)

    def _download_file(self, remote_file_path, local_path):
        return self._s3._download_file(remote_file_path, local_path)

    def delete_artifacts(self, artifact_path=None):
        return self._s3.delete_artifacts(artifact_path)

    def open_object(self, path: str) -> tuple[Any, int] | None:
        """The body (a stream) and size of the object at ``path`` in this repository; None if there is none
        (a missing key, or a "directory"). For downloads that stream (:mod:`mlflowkit_server.streaming`)."""
        from botocore.exceptions import ClientError

        bucket, prefix = self._s3.parse_s3_compliant_uri(self._s3.artifact_uri)
        try:
            response = self._s3._get_s3_client().get_object(Bucket=bucket, Key=posixpath.join(prefix, path),
                                                            **getattr(self._s3, "_bucket_owner_params", {}))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return response["Body"], response["ContentLength"]

    # --- streaming uploads ------------------------------------------------------------------------------

    def log_artifact_from_stream(self, stream: BinaryIO, artifact_file_name: str,
                                 artifact_path: str | None = None) -> None:
        """The WSGI (Flask) handler's body: read it in parts, upload each as it fills."""
        upload = _Upload(self._s3, artifact_file_name, artifact_path)
        first = _read_part(stream.read)
        if len(first) < PART_SIZE:
            upload.whole(first)
            return
        upload.begin()
        try:
            part = first
            while part:
                upload.part(upload.number(), part)
                part = _read_part(stream.read)
            upload.complete()
        except BaseException:
            upload.abort()
            raise

    async def log_artifact_from_async_stream(self, chunks: AsyncIterable[bytes], artifact_file_name: str,
                                             artifact_path: str | None = None) -> None:
        """The ASGI (uvicorn) handler's body: up to PARTS_IN_FLIGHT parts upload while the next one arrives.
        A part is the chunks received until they reach PART_SIZE, joined once (S3 takes parts of any size from
        5 MiB; only the last may be smaller)."""
        upload = _Upload(self._s3, artifact_file_name, artifact_path)
        received: list[bytes] = []
        size = 0
        sending: set[asyncio.Future[None]] = set()
        try:
            async for chunk in chunks:
                received.append(chunk)
                size += len(chunk)
                if size < PART_SIZE:
                    continue
                if upload.upload_id is None:
                    await asyncio.to_thread(upload.begin)
                while len(sending) >= PARTS_IN_FLIGHT:
                    sending = await _one_done(sending)
                sending.add(asyncio.ensure_future(asyncio.to_thread(upload.part, upload.number(),
                                                                    b"".join(received))))
                received, size = [], 0
            while sending:
                sending = await _one_done(sending)
            if upload.upload_id is None:
                await asyncio.to_thread(upload.whole, b"".join(received))
                return
            if received:
                await asyncio.to_thread(upload.part, upload.number(), b"".join(received))
            await asyncio.to_thread(upload.complete)
        except BaseException:
            if sending:
                await asyncio.gather(*sending, return_exceptions=True)
            await asyncio.to_thread(upload.abort)
            raise


async def _one_done(sending: set[asyncio.Future[None]]) -> set[asyncio.Future[None]]:
    """Wait for one part upload to end (raising its error, if any); the ones still running."""
    done, pending = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
    for future in done:
        future.result()
    return pending


def _read_part(read: Callable[[int], bytes]) -> bytes:
    """Up to PART_SIZE bytes from a stream whose reads may return less than asked (a socket's do)."""
    data = bytearray()
    while len(data) < PART_SIZE:
        chunk = read(PART_SIZE - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


class _Upload:
    """One object's upload: a single PutObject, or a multipart upload whose parts arrive in order."""

    def __init__(self, s3: S3ArtifactRepository, artifact_file_name: str, artifact_path: str | None) -> None:
        bucket, key = s3.parse_s3_compliant_uri(s3.artifact_uri)
        if artifact_path:
            key = posixpath.join(key, artifact_path)
        self.bucket = bucket
        self.key = posixpath.join(key, os.path.basename(artifact_file_name))
        self.client = s3._get_s3_client()
        self.extra = _extra_args(s3, artifact_file_name)
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.numbered = 0

    def whole(self, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **self.extra)

    def begin(self) -> None:
        self.upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                             **self.extra)["UploadId"]

    def number(self) -> int:
        """The next part's number (1, 2, …): given out in order, as the parts arrive."""
        self.numbered += 1
        return self.numbered

    def part(self, number: int, data: bytes) -> None:
        response = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                           PartNumber=number, Body=data)
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def complete(self) -> None:
        parts = sorted(self.parts, key=lambda part: part["PartNumber"])  # they may land out of order
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": parts})

    def abort(self) -> None:
        if self.upload_id is not None:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


def _extra_args(s3: S3ArtifactRepository, name: str) -> dict[str, Any]:
    """What MLflow's own S3 upload sends: the guessed type and encoding, the expected bucket owner, and
    MLFLOW_S3_UPLOAD_EXTRA_ARGS (e.g. server-side encryption)."""
    extra: dict[str, Any] = {}
    guessed_type, guessed_encoding = guess_type(name)
    if guessed_type is not None:
        extra["ContentType"] = guessed_type
    if guessed_encoding is not None:
        extra["ContentEncoding"] = guessed_encoding
    extra.update(getattr(s3, "_bucket_owner_params", {}))
    if configured := os.environ.get("MLFLOW_S3_UPLOAD_EXTRA_ARGS"):
        extra.update(json.loads(configured))
    return extra
