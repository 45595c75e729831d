"""Server-side plugins of mlflowkit (installed in the kit's MLflow image)."""
