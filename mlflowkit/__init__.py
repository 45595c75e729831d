"""mlflowkit: self-hosted MLflow in every storage topology, each proven by serving a model through it."""

from __future__ import annotations

from typing import Any

from mlflowkit.client import Client, Connection, model_uri
from mlflowkit.serving import ServedModel, serve_local
from mlflowkit.topology import TOPOLOGIES, Topology

__all__ = ["TOPOLOGIES", "Client", "Connection", "ServedModel", "Topology", "model_uri", "serve_local",
           "stack_connection"]
__version__ = "0.1.0"


def stack_connection(topology: str, settings: Any = None, *, user: str | None = None,
                     admin: bool = False, workspace: str | None = None) -> Connection:
    """The connection to a stack of this kit on this host, from its .env and ports (``mlflowkit env`` prints the
    same); on a stack with --auth, ``user``'s own (`mlflowkit users add`) or, with ``admin``, the admin's; with
    ``workspace``, in that workspace (`up --workspaces`). Here, not
    in the client library: that library never depends on the orchestration."""
    from mlflowkit import topology as topologies
    from mlflowkit.stack import Stack

    return Stack(topologies.get(topology), settings).client_connection(user, admin, workspace)
