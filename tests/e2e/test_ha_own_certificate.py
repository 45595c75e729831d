"""The ha stack with the user's own certificate (issue 14: "a certificate the user provides"): server.pem and its
CA's ca.pem put in TLS_DIR before `up` — no key of a kit CA beside them — are served by the load balancer as they
are, never replaced, and clients verify the stack with that CA. Its own module, so the stack of test_ha.py is down
before this one starts."""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl

import pytest
import requests

from mlflowkit import tls
from mlflowkit.topology import HA

pytestmark = pytest.mark.e2e


def test_the_load_balancer_serves_the_users_own_certificate(make_stack, e2e_settings, tmp_path):
    # Its own home: the run's shared one holds the kit CA an earlier ha test made, which `up` would rightly keep.
    settings = dataclasses.replace(e2e_settings, project_prefix=f"{e2e_settings.project_prefix}-owncert",
                                   home=str(tmp_path / "home"))
    stack = make_stack(HA, settings)
    # The user's CA and server certificate, made elsewhere (here by the kit's code in a scratch directory; what
    # makes them the user's is that TLS_DIR holds no CA key of the kit's).
    own = tls.ensure(tmp_path / "users-ca", ["localhost", "127.0.0.1", "lb"])
    tls_dir = settings.state_dir(HA.name) / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    for name in ("server.pem", "ca.pem"):
        shutil.copy(own.directory / name, tls_dir / name)
    os.chmod(tls_dir / "server.pem", 0o600)

    stack.up()

    assert not (tls_dir / "ca.key").exists(), "the kit made a CA of its own beside the user's certificate"
    assert (tls_dir / "server.pem").read_bytes() == (own.directory / "server.pem").read_bytes()
    conn = stack.connection()
    assert conn.server_cert_path == str(tls_dir / "ca.pem")
    port = int(stack.env()["MLFLOW_PORT"])
    served = tmp_path / "served.pem"
    served.write_text(ssl.get_server_certificate(("127.0.0.1", port), timeout=30))
    assert tls.spki_fingerprint(served) == tls.spki_fingerprint(own.directory / "server.pem")
    # A client that trusts the user's CA reads and writes through it; one that trusts nothing extra is refused.
    base = conn.tracking_uri
    made = requests.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": "own-certificate"},
                         verify=conn.server_cert_path, timeout=30)
    assert made.status_code == 200, made.text
    found = requests.get(f"{base}/api/2.0/mlflow/experiments/get-by-name",
                         params={"experiment_name": "own-certificate"}, verify=conn.server_cert_path, timeout=30)
    assert found.json()["experiment"]["experiment_id"] == made.json()["experiment_id"]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{base}/health", timeout=30)
