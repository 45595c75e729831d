"""Render and lint charts/mlflowkit with Helm's own library (helm-python-sdk: Helm v4, no binary), and the
chart's topology facts generated from mlflowkit/topology.py.

``python -m tests.chart.render --write`` rewrites charts/mlflowkit/topologies.yaml from the declarations; a unit
test fails when the committed file differs.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mlflowkit.topology import TOPOLOGIES, Backend, Topology

CHART = Path(__file__).resolve().parents[2] / "charts" / "mlflowkit"
FACTS = CHART / "topologies.yaml"
HEADER = ("# The server topologies the chart runs, generated from mlflowkit/topology.py (one source of truth):\n"
          "#   .venv/bin/python -m tests.chart.render --write\n"
          "# tests/unit/test_chart.py fails when this file and the declarations differ. Templates read it with\n"
          "# .Files.Get; values.yaml names one of these topologies.\n")
RELEASE = "ml"
NAMESPACE = "mlops"


# The port every replica of a replicated topology listens on behind its load balancer (MLflow's default; the
# Compose stack's replicas, which tests/unit/test_chart.py compares). Not declared in mlflowkit/topology.py: the
# declaration names only what a host publishes (the balancer's TLS port).
REPLICA_PORT = 5000
# The ports the chart's Services use (a stack's other published ports, e.g. its metrics, are not the chart's).
CHART_PORTS = ("MLFLOW_PORT", "SERVE_PORT", "ARTIFACTS_PORT", "S3_PORT")


def chart_topologies() -> dict[str, Topology]:
    """The topologies a cluster can run: a tracking server on PostgreSQL (the local ones need a shared host path)."""
    return {name: t for name, t in TOPOLOGIES.items() if t.has_tracking_server and t.backend is Backend.POSTGRESQL}


def _ports(t: Topology) -> dict[str, int]:
    """Container ports by .env variable. A replicated topology's load balancer is the cluster's Services and
    Ingress (TLS at the Ingress): MLFLOW_PORT is then the tracking pool's port, ARTIFACTS_PORT the artifacts pool's."""
    ports = {port.variable: port.container_port or port.default for port in t.ports if port.variable in CHART_PORTS}
    if t.balancer is not None:
        ports.update({port.variable: REPLICA_PORT for port in t.ports if port.service == t.balancer})
        ports["ARTIFACTS_PORT"] = REPLICA_PORT
    return ports


def _pooling(t: Topology) -> dict[str, Any]:
    """What the chart's connection budget adds up (Topology.budget); the limits themselves are values."""
    p = t.pooling
    assert p is not None
    return {"engines": {r.service: r.engines for r in t.replicas}, "databases": p.databases,
            "reserved": p.reserved, "direct": p.direct}


def facts() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, t in chart_topologies().items():
        out[name] = {
            "scenario": t.scenario,
            "artifactMode": t.artifact_mode.value,
            # The MLflow servers (a replicated topology's pools; its other services are stores and balancer).
            "servers": list(t.servers),
            "oneShots": list(t.one_shots),
            # The servers prepare their stores as they start (the init containers and Jobs still run first).
            "serversPrepareStores": t.one_shots_profile is not None,
            "clientNeedsS3Credentials": t.client_needs_s3_credentials,
            "ports": _ports(t),
            # Replicated: pools behind Services (an Ingress routes artifact calls to the artifacts pool), HA
            # stores required, one users database beside MLflow's, job execution off.
            "replicated": bool(t.replicas),
            # MLflow's workspaces can run (values `workspaces.enabled`; `mlflowkit up --workspaces`).
            "workspaces": t.supports_workspaces,
        }
        if t.pooling is not None:
            out[name]["pooling"] = _pooling(t)
    return out


def facts_text() -> str:
    return HEADER + yaml.safe_dump(facts(), sort_keys=False)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(values: dict[str, Any] | None = None, *, upgrade: bool = False) -> dict[str, str]:
    """``{template path: YAML}`` as ``helm install`` (or ``upgrade``) would render it, offline."""
    from helm_python.chart import Chart

    chart = Chart.load(CHART)
    return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=not upgrade,
                        is_upgrade=upgrade)


def documents(values: dict[str, Any] | None = None, *, upgrade: bool = False) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt and empty documents left out)."""
    docs = []
    for path, text in sorted(render(values, upgrade=upgrade).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (doc for doc in docs if doc["kind"] == kind)


def workload(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The Deployment, StatefulSet, Job or CronJob of ``component`` (label app.kubernetes.io/component)."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob") and \
                doc["metadata"]["labels"].get("app.kubernetes.io/component") == component:
            return doc
    raise KeyError(f"no workload of component {component}")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]



# --- the values table of docs/kubernetes.md, generated from values.schema.json and values.yaml ----------------

TABLE_START = ("<!-- values table: generated from charts/mlflowkit/values.schema.json "
               "(python -m tests.chart.render --table) -->")
TABLE_END = "<!-- end of values table -->"


def values_table() -> str:
    """One row per value: its path, type, default (values.yaml) and description (the schema)."""
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = ["| value | type | default | description |", "|---|---|---|---|"]

    def walk(node: dict[str, Any], default: Any, path: str) -> None:
        if "properties" in node and not path.endswith("resources"):
            for key, child in node["properties"].items():
                walk(child, (default or {}).get(key), f"{path}.{key}" if path else key)
            return
        kind = node.get("type") or "quantity"
        if "enum" in node:
            kind = " \\| ".join(f"`{value}`" for value in node["enum"])
        shown = json.dumps(default, separators=(", ", ": ")) if isinstance(default, (dict, list)) else \
            json.dumps(default)
        description = node.get("description", "").replace("|", "\\|")
        rows.append(f"| `{path}` | {kind} | `{shown}` | {description} |")

    walk(schema, defaults, "")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        print(values_table(), end="")
    elif sys.argv[1:] == ["--write"]:
        FACTS.write_text(facts_text())
        print(f"wrote {FACTS}")
    else:
        print(facts_text(), end="")
