"""Train an iris classifier and publish it to whatever MLflow the environment points at (plain MLflow calls)."""

from iris_model.model import publish, train

__all__ = ["publish", "train"]
