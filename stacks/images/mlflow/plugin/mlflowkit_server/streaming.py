"""Proxied downloads stream from S3 to the client, without a temporary file on the server's disk.

MLflow 3.17's download route (``mlflow.server.artifact_router.download_artifact``) first downloads the whole
artifact into a temporary directory, then sends the file: every byte is written and read back on the server, and
the client waits for the full S3 transfer before its first byte. Repositories have no streaming hook for downloads
(uploads have ``StreamUploadMixin``, which :mod:`mlflowkit_server.s3_proxied` implements), so this module gives the
route one: whenever MLflow's ``artifact_router`` module is imported (before the app includes its routes), the
GET routes' endpoint becomes the one :func:`install` makes, which streams objects of the kit's ``s3-proxied://``
repository straight from S3 (4 MiB at a time, the next one read while this one is sent; ``Content-Length`` from
S3) and hands every other case — another repository, serving off, a missing object, a directory — to MLflow's own
endpoint unchanged. The route's path, and so ``--auth``'s permission check (a middleware keyed on the path), stays
MLflow's; so does the path validation.

Loaded at interpreter start by ``mlflowkit-server.pth``; it imports nothing until MLflow imports that module (old
MLflow images have no such module: nothing happens there).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

from mlflowkit_server import after_import

TARGET = "mlflow.server.artifact_router"
CHUNK = 4 * 1024 * 1024


def install(module: ModuleType) -> Callable[..., Any]:
    """Point ``module.artifact_router``'s GET routes at a streaming endpoint that falls back to MLflow's."""
    from fastapi.responses import StreamingResponse
    from mlflow.utils.mime_type_utils import _guess_mime_type
    from mlflow.utils.uri import validate_path_is_safe

    from mlflowkit_server.s3_proxied import ProxiedS3ArtifactRepository

    original = module.download_artifact

    async def download_artifact(artifact_path: str):  # the parameter name is the route's path parameter
        if not module._is_serving_proxied_artifacts():
            return await original(artifact_path)
        try:
            path = module._get_workspace_scoped_path(validate_path_is_safe(artifact_path))
            repo = module._get_artifact_repo()
        except Exception:  # noqa: BLE001 — MLflow's endpoint answers these as it always does
            return await original(artifact_path)
        if not isinstance(repo, ProxiedS3ArtifactRepository):
            return await original(artifact_path)
        opened = await asyncio.to_thread(repo.open_object, path)
        if opened is None:  # not the kit's repository, no such object, or a "directory"
            return await original(artifact_path)
        body, length = opened
        filename = path.rsplit("/", 1)[-1]
        return StreamingResponse(_chunks(body), headers={
            "Content-Type": _guess_mime_type(filename),
            "Content-Disposition": module._content_disposition(filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Length": str(length),
        })

    # The same routes (path, methods, name) with this endpoint, in the same places: FastAPI builds a route's
    # handler from its endpoint when the route is made, so each is made again rather than edited.
    router = module.artifact_router
    for index, route in enumerate(list(router.routes)):
        if getattr(route, "endpoint", None) is original:
            router.add_api_route(route.path, download_artifact, methods=sorted(route.methods), name=route.name)
            router.routes[index] = router.routes.pop()
    if mark_changed := getattr(router, "_mark_routes_changed", None):  # FastAPI >= 0.165 caches included routes
        mark_changed()
    return download_artifact


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    """The object's bytes, CHUNK at a time: the next chunk is read from S3 (in a thread) while this one is sent,
    so at most two chunks are in memory."""
    reading = asyncio.ensure_future(asyncio.to_thread(body.read, CHUNK))
    try:
        while chunk := await reading:
            reading = asyncio.ensure_future(asyncio.to_thread(body.read, CHUNK))
            yield chunk
    finally:
        await asyncio.gather(reading, return_exceptions=True)
        body.close()


if TARGET not in sys.modules:  # imported before this module (not so in the image): its app is built already
    after_import.register(TARGET, install)
