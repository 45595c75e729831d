"""The bench's cold build section (issue 15): each image rebuilt without the cache, one at a time, timed."""

from __future__ import annotations

from mlflowkit import images
from mlflowkit.bench import run
from mlflowkit.settings import Settings


def test_cold_build_rebuilds_each_image_alone_without_the_cache_and_times_each_and_all(monkeypatch, tmp_path):
    built: list[tuple[list[str], bool]] = []
    monkeypatch.setattr(images, "services", lambda settings: ["mlflow", "postgres"])
    monkeypatch.setattr(images, "names", lambda settings, service: [f"kit/{service}:1"])
    monkeypatch.setattr(images, "build",
                        lambda settings, log, services, no_cache=False: built.append((services, no_cache)))
    clock = iter([0.0, 30.0, 100.0, 112.5])
    monkeypatch.setattr(run.time, "monotonic", lambda: next(clock))
    bench = run.Bench(["file"], run.choose_sizes(quick=True, cold_build=True), Settings(home=str(tmp_path)), print,
                      scratch=tmp_path)
    bench.cold_builds()
    assert built == [(["mlflow"], True), (["postgres"], True)]
    assert [(f.case, f.value, f.unit) for f in bench.figures] == [
        ("kit/mlflow:1 cold build", 30.0, "s"), ("kit/postgres:1 cold build", 12.5, "s"),
        ("every image, cold build", 42.5, "s")]


def test_the_cold_build_is_asked_for_never_a_default():
    assert not run.choose_sizes(quick=False).cold_build and not run.choose_sizes(quick=True).cold_build
    assert run.choose_sizes(quick=True, cold_build=True).cold_build


def test_the_boot_phase_of_a_server_that_prepares_its_stores_is_its_last_line_about_them(capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stacks" / "images" / "mlflow" / "plugin"))
    from mlflowkit_server import prepare

    prepare.say("bucket mlflow created")
    prepare.say("an empty database: MLflow's tables created at revision abc")
    first, last = capsys.readouterr().out.splitlines()
    logs = (f"2026-11-27T05:08:13.423076302Z {first}\n"
            "2026-11-27T05:08:15.224532910Z 2026/11/27 05:08:15 INFO mlflow.store.db.utils: Creating tables...\n"
            f"2026-11-27T05:08:16.503557832Z {last}\n"
            "2026-11-27T05:08:18.253295071Z INFO:     Started server process [32]\n")
    assert run.prepared_at(logs).isoformat() == "2026-11-27T05:08:16.503557+00:00"
    assert run.prepared_at("2026-11-27T05:08:18.253295071Z INFO:     Started server process [32]\n") is None
