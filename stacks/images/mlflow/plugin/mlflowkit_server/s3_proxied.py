"""``s3-proxied://bucket/prefix``: S3 for an MLflow server that proxies artifacts, without presigned URLs.

Why: an MLflow 3 server with ``--artifacts-destination s3://…`` advertises multipart transfers in
``/api/3.0/mlflow/server-info``, and MLflow 3 clients then move bytes through presigned URLs that carry the
*server's* S3 endpoint (``http://s3:8333`` in a compose network). A client outside that network cannot resolve
it and retries for minutes. Scenario 5 promises clients that only talk to the tracking server, so this
repository keeps every S3 operation but none of the presigned-URL capabilities (it is not a
``MultipartUploadMixin``/``MultipartDownloadMixin``/``PresignedUploadMixin``): the server advertises no
multipart support and proxies all bytes, for MLflow 3 and older clients alike.
"""

from __future__ import annotations

from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

SCHEME = "s3-proxied"


class ProxiedS3ArtifactRepository(ArtifactRepository):
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
