"""The project's own code: nothing here knows about mlflowkit; it uses MLflow as configured by the environment."""

from __future__ import annotations

import mlflow
import pandas as pd
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split


def train(seed: int = 0) -> tuple[LogisticRegression, pd.DataFrame, pd.Series]:
    """A fitted classifier and the held-out features and labels."""
    data = load_iris(as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.3, random_state=seed)
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    return model, x_test, y_test


def publish(model: LogisticRegression, x_test: pd.DataFrame, y_test: pd.Series, name: str,
            alias: str = "champion") -> str:
    """Log the model with its accuracy in a new run, register it as ``name`` and point ``alias`` at that version;
    the ``models:/name@alias`` URI."""
    mlflow.set_experiment("iris")
    with mlflow.start_run():
        mlflow.log_params({"max_iter": model.max_iter})
        mlflow.log_metric("accuracy", float(model.score(x_test, y_test)))
        info = mlflow.sklearn.log_model(model, name="model", input_example=x_test.head(3), registered_model_name=name,
                                        pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
    mlflow.MlflowClient().set_registered_model_alias(name, alias, info.registered_model_version)
    return f"models:/{name}@{alias}"
