"""mlflowkit: self-hosted MLflow in every storage topology, each proven by serving a model through it."""

from mlflowkit.client import Client, Connection, model_uri
from mlflowkit.serving import ServedModel, serve_local
from mlflowkit.topology import TOPOLOGIES, Topology

__all__ = ["TOPOLOGIES", "Client", "Connection", "ServedModel", "Topology", "model_uri", "serve_local"]
__version__ = "0.1.0"
