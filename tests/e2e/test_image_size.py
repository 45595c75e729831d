"""The kit's images as built, read back from the engine (issue 15): the PostgreSQL image stays lean, and the MLflow
image's Python turns Nagle off on the connections its servers accept.

The figure is the engine's own (``docker image inspect`` .Size, bytes, the base's layers included; `docker images`
shows it in MB of 10^6). 651 MB before issue 15; 258 MB after (docs/performance.md, "Image sizes").
"""

from __future__ import annotations

import pytest

from mlflowkit import images
from mlflowkit.docker import run
from mlflowkit.settings import Settings

pytestmark = pytest.mark.e2e

POSTGRES_MAX_BYTES = 350_000_000  # the goal of issue 15


def image_size(image: str) -> int:
    return int(run(["docker", "image", "inspect", "--format", "{{.Size}}", image], timeout=30).stdout.strip())


def test_the_postgresql_image_is_at_most_350_mb(e2e_settings: Settings):
    [image] = images.names(e2e_settings, "postgres")
    size = image_size(image)
    assert size <= POSTGRES_MAX_BYTES, (
        f"{image} is {size / 1e6:.0f} MB, over the {POSTGRES_MAX_BYTES / 1e6:.0f} MB goal: see what grew with "
        f"`docker history {image}` and stacks/images/postgres/Dockerfile's lean step")


def test_the_prometheus_image_is_at_most_350_mb(e2e_settings: Settings):
    [image] = images.names(e2e_settings, "prometheus")
    size = image_size(image)
    assert size <= 350_000_000, (f"{image} is {size / 1e6:.0f} MB: see `docker history {image}` and "
                                 "stacks/images/prometheus/Dockerfile's lean step")


def test_the_mlflow_images_python_loads_the_nagle_fix(e2e_settings: Settings):
    """Without it, `--workers 2` adds ~40 ms to every kept-alive request (tests/unit/test_nodelay.py shows why;
    the bench's server-settings section measures it)."""
    [image] = images.names(e2e_settings, "mlflow")
    probe = "import asyncio.base_events as b; print(b._set_nodelay.__module__)"
    loaded = run(["docker", "run", "--rm", "--entrypoint", "python", image, "-c", probe], timeout=60).stdout.strip()
    assert loaded == "mlflowkit_server.nodelay"
