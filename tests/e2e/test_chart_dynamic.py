"""The chart run: its rendering of `proxied` (two tracking replicas sharing one users database, auth on, the
serving Deployment) started as containers on a Docker network the way a cluster would start them
(tests/chart/dynamic.py), then the kit's own validation against it — log, register, alias, load, serve, predict,
artifacts in S3 through the proxy, the run in PostgreSQL — from a clean process that holds no S3 keys.

What a cluster adds that this does not prove: scheduling, admission, the kubelet's probe timing, Service load
balancing (DNS round-robin over the replicas here), NetworkPolicy enforcement, Helm's own hook execution."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from mlflowkit import docker
from mlflowkit.errors import KitError
from mlflowkit.settings import Settings
from mlflowkit.validate import clean_environment
from tests.chart.dynamic import Cluster, plan, state_of
from tests.chart.render import documents
from tests.e2e.conftest import PREFIX

pytestmark = pytest.mark.e2e
VALUES = {"topology": "proxied", "tracking": {"replicas": 2}, "auth": {"enabled": True}, "serve": {"enabled": True}}


def test_rendered_proxied_release_passes_the_kits_validation(e2e_settings: Settings, tmp_path: Path):
    docs = documents(VALUES)
    prefix = f"{PREFIX}-chart"
    files = tmp_path / "secrets"
    cluster = Cluster(plan(docs, prefix, files), prefix, timeout=300)
    assert len([c for group in cluster.plan.servers for c in group if c.aliases]) == 2, "two tracking replicas"
    started = time.monotonic()
    try:
        try:
            cluster.start()
        except KitError as exc:
            pytest.fail(f"{exc}\n{exc.details or ''}")
        print(f"chart release up in {time.monotonic() - started:.0f} s", file=sys.stderr)
        state = state_of(cluster, "proxied", docs)
        (tmp_path / "state.json").write_text(json.dumps(asdict(state)))
        env = clean_environment(e2e_settings)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        proc = subprocess.run([sys.executable, "-m", "tests.chart.dynamic", str(tmp_path / "state.json"),
                               str(tmp_path / "report.json")], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=900, check=False)
        assert (tmp_path / "report.json").exists(), proc.stderr[-4000:]
        report = json.loads((tmp_path / "report.json").read_text())
        rows = [f"{s['name']}: {'PASS' if s['ok'] else 'FAIL'} {s['detail']}" for s in report["steps"]]
        print("\n".join(rows), file=sys.stderr)
        names = [s["name"] for s in report["steps"]]
        assert all(s["ok"] for s in report["steps"]), "\n".join(rows) + "\n" + cluster.logs(tail=30)
        for step in ("no S3 credentials", "serve+predict", "anonymous refused", "artifacts in S3",
                     "run in PostgreSQL"):
            assert step in names
        # One users database for every replica: a user made through the first is known to the second.
        first, second = (c.name for group in cluster.plan.servers for c in group if c.aliases)
        secret = {"ADMIN": f"{state.values['MLFLOW_AUTH_ADMIN_USERNAME']}:{state.values['MLFLOW_AUTH_ADMIN_PASSWORD']}",
                  "BODY": json.dumps({"username": "chart-user", "password": secrets.token_urlsafe(18)})}
        api = "http://127.0.0.1:5000/api/2.0/mlflow/users"
        docker.run(["docker", "exec", "-e", "ADMIN", "-e", "BODY", first, "sh", "-c",
                    f'curl -fsS -o /dev/null -u "$ADMIN" -H "Content-Type: application/json" -d "$BODY" {api}/create'],
                   timeout=60, env=docker.engine_environ(secret))
        found = docker.run(["docker", "exec", "-e", "ADMIN", second, "sh", "-c",
                            f'curl -fsS -u "$ADMIN" "{api}/get?username=chart-user"'],
                           timeout=60, env=docker.engine_environ(secret)).stdout
        assert json.loads(found)["user"]["username"] == "chart-user"
    finally:
        if os.environ.get("MLFLOWKIT_KEEP_CHART") != "1":
            cluster.remove()
