"""The `metrics` step's reading of Prometheus' answers (shapes as Prometheus 2.42's HTTP API gives them)."""

from __future__ import annotations

from types import SimpleNamespace

from mlflowkit import validate
from mlflowkit.topology import TOPOLOGIES


def targets(*health: str) -> dict:
    return {"status": "success", "data": {"activeTargets": [
        {"scrapeUrl": f"http://server{i}:5000/metrics", "health": h, "lastError": "" if h == "up" else "EOF"}
        for i, h in enumerate(health)], "droppedTargets": []}}


def test_every_target_must_be_up_and_there_must_be_one():
    assert validate.target_problems(targets("up", "up")) == []
    assert validate.target_problems(targets("up", "down")) == ["http://server1:5000/metrics is down: EOF"]
    assert validate.target_problems(targets("unknown")) == ["http://server0:5000/metrics is unknown: EOF"]
    assert validate.target_problems(targets()) == ["Prometheus has no active scrape target"]


def test_the_counter_is_the_instant_querys_value_and_zero_before_any_sample():
    answer = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {},
                                                                                "value": [1795709420.6, "3"]}]}}
    assert validate.query_value(answer) == 3.0
    assert validate.query_value({"status": "success", "data": {"resultType": "vector", "result": []}}) == 0.0


def test_the_metrics_step_comes_with_the_profile_only():
    stack = SimpleNamespace(topology=TOPOLOGIES["proxied"], auth_enabled=False)
    without = [name for name, _ in validate.steps_for(stack, ui=False, metrics=False)]  # type: ignore[arg-type]
    with_profile = [name for name, _ in validate.steps_for(stack, ui=True, metrics=True)]  # type: ignore[arg-type]
    assert "metrics" not in without and with_profile == [*without, "metrics", "ui"]


def test_a_server_prometheus_does_not_scrape_is_named():
    answer = targets("up")
    answer["data"]["activeTargets"][0]["labels"] = {"instance": "mlflow:5000"}
    assert validate.target_problems(answer, ("mlflow:5000",)) == []
    assert validate.target_problems(answer, ("artifacts:5052", "mlflow:5000")) == ["artifacts:5052 is not scraped"]


def test_a_replicated_topology_counts_one_target_per_replica():
    assert validate.target_problems(targets("up", "up", "up", "up"), replicas=4) == []
    assert validate.target_problems(targets("up", "up", "up"), replicas=4) == [
        "Prometheus scrapes 3 server(s), the stack runs 4 replicas"]


def test_the_targets_are_the_topologys_servers_at_their_ports():
    assert TOPOLOGIES["proxied"].metrics_targets({}) == ("mlflow:5000",)
    # the artifacts server listens on ARTIFACTS_PORT inside too: a moved port is followed
    assert TOPOLOGIES["artifacts-only"].metrics_targets({"ARTIFACTS_PORT": "6123"}) == ("artifacts:6123", "mlflow:5000")
    assert TOPOLOGIES["artifacts-only"].metrics_targets({}) == ("artifacts:5052", "mlflow:5000")


def test_metrics_come_with_every_topology_that_runs_an_mlflow_server():
    for t in TOPOLOGIES.values():
        if t.has_metrics:
            assert t.has_tracking_server and t.port("PROMETHEUS_PORT").default == t.port("MLFLOW_PORT").default + 9
    assert not TOPOLOGIES["file"].has_metrics and not TOPOLOGIES["sqlite"].has_metrics


def test_compose_gets_the_targets_from_the_env_and_the_profile_only_when_asked(tmp_path):
    """What Stack.compose hands Compose (no engine): METRICS_TARGETS follows a moved ARTIFACTS_PORT; a .env written
    before PROMETHEUS_PORT existed gets its declared default; the metrics profile only with with_metrics."""
    from mlflowkit.settings import Settings
    from mlflowkit.stack import Stack

    stack = Stack(TOPOLOGIES["artifacts-only"], Settings(home=str(tmp_path)))
    stack.env_file.parent.mkdir(parents=True)
    stack.env_file.write_text("ARTIFACTS_PORT=6123\nMLFLOW_PORT=6120\n")
    plain, metrics = stack.compose(), stack.compose(with_metrics=True)
    assert plain.env["METRICS_TARGETS"] == "artifacts:6123,mlflow:5000,s3:9327"
    assert plain.env["PROMETHEUS_PORT"] == "5059" and plain.env["MLFLOW_PORT"] == "6120"
    assert "metrics" not in plain.profiles and "metrics" in metrics.profiles
    local = Stack(TOPOLOGIES["file"], Settings(home=str(tmp_path)))
    assert local.compose(with_metrics=True).profiles == ()  # file and sqlite have no metrics profile


def test_seaweedfs_is_a_target_of_every_s3_stack_with_metrics_and_counts_as_no_replica():
    scraping = [t for t in TOPOLOGIES.values() if t.scraped]  # declared per topology (the one-node SeaweedFS)
    assert scraping and all(t.has_metrics and t.store_metrics_targets == ("s3:9327",) for t in scraping)
    assert all(t.uses_s3 for t in scraping)  # a local store publishes no metrics
    answer = targets("up", "up")
    for target, instance in zip(answer["data"]["activeTargets"], ("mlflow:5000", "s3:9327"), strict=True):
        target["labels"] = {"instance": instance}
    assert validate.target_problems(answer, ("mlflow:5000",), stores=("s3:9327",)) == []
    assert validate.target_problems(answer, ("mlflow:5000",), replicas=1, stores=("s3:9327",)) == []
    answer["data"]["activeTargets"].pop()
    assert validate.target_problems(answer, ("mlflow:5000",), stores=("s3:9327",)) == ["s3:9327 is not scraped"]


def test_the_s3_command_and_the_seaweedfs_job_carry_the_declared_target():
    """The fact is written three times (the topology's declaration, the s3 service's command, the scrape jobs'
    split of METRICS_TARGETS): held equal here. The MLflow job leaves SeaweedFS to its own job (no credentials)."""
    import yaml

    from tests.unit.test_topology import effective

    for t in TOPOLOGIES.values():
        for scrape in t.scraped:
            stack = effective(t.name, metrics=True)
            assert f"-metricsPort={scrape.port}" in stack["services"][scrape.service]["command"], t.name
            jobs = {job["job_name"]: job for job in yaml.safe_load(
                stack["configs"]["prometheus-config"]["content"])["scrape_configs"]}
            relabel = {name: [(r["regex"], r["action"]) for r in job.get("relabel_configs", [])]
                       for name, job in jobs.items()}
            target = f"{scrape.service}:{scrape.port}"
            assert relabel[scrape.job] == [(target, "keep")] and (target, "drop") in relabel["mlflow"], t.name
            assert "basic_auth" not in jobs[scrape.job] and "basic_auth" in jobs["mlflow"]


def test_compose_gets_the_stores_in_the_targets_and_none_where_nothing_is_scraped(tmp_path):
    from mlflowkit.settings import Settings
    from mlflowkit.stack import Stack

    for name, expected in (("proxied", "mlflow:5000,s3:9327"), ("server-file", "mlflow:5000")):
        stack = Stack(TOPOLOGIES[name], Settings(home=str(tmp_path)))
        stack.env_file.parent.mkdir(parents=True, exist_ok=True)
        stack.env_file.write_text("MLFLOW_PORT=6120\n")
        assert stack.compose(with_metrics=True).env["METRICS_TARGETS"] == expected, name
