"""Build the kit's images (stacks/images/compose.yaml) from the configured base image; scan them for secrets."""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mlflowkit.docker import Compose, check_engine, image_exists, run, stream
from mlflowkit.errors import CommandError, KitError
from mlflowkit.settings import Settings

_EMPTY_CA = Path(os.devnull)


def compose(settings: Settings) -> Compose:
    ca = settings.effective_ca_bundle() or _EMPTY_CA
    env = {**os.environ, "BASE_IMAGE": settings.base_image, "HOST_CA_BUNDLE": str(ca)}
    return Compose(files=(settings.images_compose_file,), project="mlflowkit-images", env=env,
                   timeout=settings.build_timeout)


def names(settings: Settings, *services: str) -> list[str]:
    """The image tags the stacks run (as the images compose file resolves them); of ``services`` if given."""
    out = compose(settings).call("config", "--images", *services)
    return [line.strip() for line in out.splitlines() if line.strip()]


def ensure_base(settings: Settings, log: Callable[[str], None]) -> None:
    """The base image must exist locally or be pullable; say how to make one when neither holds."""
    if image_exists(settings.base_image):
        return
    log(f"build: pulling base image {settings.base_image}")
    try:
        run(["docker", "pull", settings.base_image], timeout=300)
    except CommandError as exc:
        raise KitError(
            f"base image {settings.base_image} is not here and cannot be pulled ({exc.message}).",
            hint="without a registry, make one: `bash stacks/images/base/debootstrap.sh mlflowkit/base:bookworm`, "
            "then `export BASE_IMAGE=mlflowkit/base:bookworm`.",
        ) from None


def build(settings: Settings, log: Callable[[str], None], services: list[str] | None = None) -> None:
    """Build (or refresh from cache) every image, streaming Compose's progress."""
    check_engine()
    ensure_base(settings, log)
    log(f"build: images from base {settings.base_image}")
    try:
        compose(settings).build(services or [], timeout=settings.build_timeout)
    except CommandError as exc:
        raise KitError(f"image build failed: {exc.message}", hint="the build output above names the step.") from None


def missing(settings: Settings) -> list[str]:
    return [image for image in names(settings) if not image_exists(image)]


def ensure(settings: Settings, log: Callable[[str], None]) -> None:
    """Build the images only when one of them is missing."""
    absent = missing(settings)
    if absent:
        log(f"build: missing {', '.join(absent)}")
        build(settings, log)



# --- secrets scan -------------------------------------------------------------------------------------

_PRIVATE_KEY = re.compile(rb"\A\s*-----BEGIN [A-Z ]*PRIVATE KEY-----")
_CREDENTIAL_FILES = re.compile(r"(^|/)(\.env|\.pgpass|\.netrc|\.aws/credentials|\.docker/config\.json)$|"
                               r"(^|/)run/secrets/.")


@dataclass(frozen=True)
class Finding:
    image: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.image}: /{self.path.lstrip('./')}: {self.reason}"


def scan(image: str, needles: Iterable[bytes] = (), *, timeout: float = 600) -> list[Finding]:
    """Read every file of every layer of ``image`` (``docker save``), byte for byte, and report the ones that
    are a private key, sit where credentials are kept, or contain one of ``needles`` (secret values).

    Layers are scanned as built, so a secret added by one layer and deleted by a later one is still found.
    """
    needles = [needle for needle in needles if len(needle) >= 8]
    findings: list[Finding] = []
    with stream(["docker", "save", image], timeout=timeout) as saved, tarfile.open(fileobj=saved, mode="r|") as out:
        for member in out:
            layer = out.extractfile(member) if member.isfile() else None
            head = layer.read(512) if layer else b""
            if head[257:262] != b"ustar":  # manifests, configs: not a layer
                continue
            with tarfile.open(fileobj=_Prepend(head, layer), mode="r|") as files:
                for item in files:
                    if not item.isfile():
                        continue
                    data = files.extractfile(item).read()  # type: ignore[union-attr]
                    if _PRIVATE_KEY.match(data):
                        findings.append(Finding(image, item.name, "a private key"))
                    if _CREDENTIAL_FILES.search(item.name):
                        findings.append(Finding(image, item.name, "a credentials file"))
                    findings += [Finding(image, item.name, "contains a generated secret of this kit")
                                 for needle in needles if needle in data]
    return findings


class _Prepend(io.RawIOBase):
    """``head`` followed by the rest of ``stream``: lets tarfile read a layer whose first block was peeked."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count], self._head = self._head[:count], self._head[count:]
            return count
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
