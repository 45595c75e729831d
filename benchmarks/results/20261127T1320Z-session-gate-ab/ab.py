"""A/B of the session gate: `python ab.py ROUNDS SECONDS TOPOLOGY WRITERS` (ha: 1 tracking + 1 artifacts replica),
the image before (mlflowkit/mlflow:before, 32ed4e9) and after, alternating; the bench's tracking load (log_batch of 10)."""
import json, os, subprocess, sys, time
from mlflowkit import topology, envfile
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.client import Client
from mlflowkit import faults

stack = Stack(topology.get(sys.argv[3]), Settings(), log=lambda m: print(m, flush=True))
results = []
try:
    for rnd in range(int(sys.argv[1])):
        for label, image in (("before", "mlflowkit/mlflow:before"), ("after", "mlflowkit/mlflow:3.17.2")):
            envfile.ensure(stack.env_file, stack.topology, "127.0.0.1")
            for k, v in (({"MLFLOW_REPLICAS": "1", "ARTIFACTS_REPLICAS": "1"} if sys.argv[3] == "ha" else {}) | {"MLFLOW_IMAGE": image}).items():
                envfile.set_value(stack.env_file, k, v)
            stack.up(free_ports=True)
            faults.wait_pool(stack, 300) if sys.argv[3] == "ha" else None
            conn = stack.connection()
            exp = Client(conn).experiment(f"ab-{label}-{rnd}")
            argv = [sys.executable, "-m", "mlflowkit.bench.load", "tracking", conn.tracking_uri, exp,
                    "--procs", sys.argv[4], "--batch", "10", "--duration", sys.argv[2]]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=400, env={**os.environ, **conn.environ()})
            r = json.loads(out.stdout.strip().splitlines()[-1])
            row = {"round": rnd, "image": label, "rows/s": round(r["rows"] / r["seconds"], 1), "rows": r["rows"],
                   "errors": r.get("errors"), "seconds": r["seconds"]}
            print(json.dumps(row), flush=True); results.append(row)
finally:
    print(json.dumps(results, indent=1))
