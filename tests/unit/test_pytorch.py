"""PyTorch models through the client library (optional extra `mlflowkit[torch]`; skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest

from mlflowkit.client import Client, Connection

torch = pytest.importorskip("torch")


def test_a_pytorch_model_logs_registers_and_loads_by_alias(tmp_path):
    import mlflow.pytorch

    client = Client(Connection(f"sqlite:///{tmp_path}/mlruns.db", artifact_location=f"file://{tmp_path}/art"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)).eval()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with client.run("torch") as run:
        info = run.log_model(mlflow.pytorch, model, "model", input_example=x[:2])
    version = client.register(info.model_uri, "torch-regressor")
    client.set_alias("torch-regressor", "champion", version)

    loaded = client.load(client.model_uri("torch-regressor", alias="champion"))
    expected = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(loaded.predict(x)), expected, rtol=1e-5)
