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


def chart_topologies() -> dict[str, Topology]:
    """The topologies a cluster can run: a tracking server on PostgreSQL (the local ones need a shared host path).
    A replicated topology (its own load balancer in Compose) is left out until the chart maps it: on a cluster its
    pools are the chart's replicas/autoscaling behind a Service (docs/kubernetes.md)."""
    return {name: t for name, t in TOPOLOGIES.items() if t.has_tracking_server and t.backend is Backend.POSTGRESQL
            and getattr(t, "balancer", None) is None}


def facts() -> dict[str, Any]:
    return {
        name: {
            "scenario": t.scenario,
            "artifactMode": t.artifact_mode.value,
            "servers": list(t.servers),
            "oneShots": list(t.one_shots),
            "clientNeedsS3Credentials": t.client_needs_s3_credentials,
            "ports": {port.variable: port.container_port or port.default for port in t.ports},
        }
        for name, t in chart_topologies().items()
    }


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
