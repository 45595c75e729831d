"""Build the kit's images (stacks/images/compose.yaml) from the configured base image."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mlflowkit.docker import Compose, check_engine, image_exists, run
from mlflowkit.errors import CommandError, KitError
from mlflowkit.settings import Settings

_EMPTY_CA = Path(os.devnull)


def compose(settings: Settings) -> Compose:
    ca = settings.effective_ca_bundle() or _EMPTY_CA
    env = {**os.environ, "BASE_IMAGE": settings.base_image, "HOST_CA_BUNDLE": str(ca)}
    return Compose(files=(settings.images_compose_file,), project="mlflowkit-images", env=env,
                   timeout=settings.build_timeout)


def names(settings: Settings) -> list[str]:
    """The image tags the stacks run (as the images compose file resolves them)."""
    out = compose(settings).call("config", "--images")
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

