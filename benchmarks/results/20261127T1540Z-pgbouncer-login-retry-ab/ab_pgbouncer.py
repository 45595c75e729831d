"""A/B of PgBouncer's server_login_retry on a running `ha` stack: one round per image tag given (PGBOUNCER_IMAGE =
mlflowkit/pgbouncer:<tag>, or VARIABLE=image; then `mlflowkit up ha`), a 4-writer tracking load (log_batch of 10),
and a fault:

    kill  SECONDS_AFTER tag...   `docker kill` of the Patroni leader; the replica's promotion; load kept SECONDS_AFTER
    pause SECONDS tag...         `docker pause` of the leader for SECONDS (under Patroni's ttl: no failover)

Per round: promotion (kill), seconds from the fault to the end of the first acknowledged call begun after it, failed
calls. RETRY=1 keeps MLflow's client retries (a plain client); else none (each failure counted). AFTER: seconds the
load goes on after the pause (12). Run from the repository root with the kit's venv, MLFLOWKIT_HOME and
MLFLOWKIT_PROJECT_PREFIX on a scratch home, `ha` up."""
import json, os, subprocess, sys, tempfile, time
from pathlib import Path

from mlflowkit import faults
from mlflowkit.bench.replicated import NO_RETRY, failed_after, resumed_after
from mlflowkit.bench.run import experiment_id, set_env
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES

stack = Stack(TOPOLOGIES["ha"])
mode, seconds, tags = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
results = []
for number, tag in enumerate(tags):
    # A tag, or VARIABLE=image for another image of the stack (20261127T1620Z-db-wait-ab: MLFLOW_IMAGE=…).
    variable, image = tag.split("=", 1) if "=" in tag else ("PGBOUNCER_IMAGE", f"mlflowkit/pgbouncer:{tag}")
    set_env(stack, **{"PGBOUNCER_IMAGE": None, variable: image})
    subprocess.run([sys.executable, "-m", "mlflowkit", "up", "ha"], check=True, capture_output=True, timeout=600)
    conn = stack.connection()
    experiment = experiment_id(conn, "ab-pgbouncer")
    roles = faults.wait_roles(stack, faults.healthy_pair, 180)
    old = faults.leader(roles)
    other = next(node for node in roles if node != old)
    victim = faults.container(stack, old)
    scratch = Path(tempfile.mkdtemp())
    ready, stop = scratch / "ready", scratch / "stop"
    env = {**os.environ, **conn.environ(), **({} if os.environ.get("RETRY") else NO_RETRY)}
    load = subprocess.Popen([sys.executable, "-m", "mlflowkit.bench.load", "tracking", conn.tracking_uri, experiment,
                             "--batch", "10", "--duration", "150", "--procs", "4", "--timeline", "1",
                             "--ready-file", str(ready), "--stop-file", str(stop)],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=scratch)
    deadline = time.monotonic() + 120
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    row = {"round": number, "pgbouncer": tag, "fault": mode}
    if mode == "kill":
        faults.kill(victim)
        fault, started = time.time(), time.monotonic()
        faults.wait_roles(stack, lambda r: r.get(other) == "leader", 120)
        row["promoted"] = round(time.monotonic() - started, 2)
        time.sleep(seconds)
    else:
        subprocess.run(["docker", "pause", victim], check=True, timeout=60)
        fault = time.time()
        time.sleep(seconds)
        subprocess.run(["docker", "unpause", victim], check=True, timeout=60)
        row["paused"] = seconds
        time.sleep(float(os.environ.get("AFTER", "12")))
    stop.touch()
    out, _ = load.communicate(timeout=180)
    if mode == "kill":
        faults.start(victim)
    timeline = json.loads(out.strip().splitlines()[-1])["timeline"]
    resumed = resumed_after(timeline, fault)
    row.update(resumed=resumed and round(resumed, 2), failed=failed_after(timeline, fault), calls=len(timeline))
    results.append(row)
    print(json.dumps(row), flush=True)
    faults.wait_roles(stack, faults.healthy_pair, 180)
print(json.dumps(results, indent=1))
