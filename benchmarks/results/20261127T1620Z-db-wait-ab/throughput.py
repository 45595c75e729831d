"""Tracking throughput of `ha` with MLFLOW_IMAGE = mlflowkit/mlflow:<tag>, one round per tag given: `mlflowkit up ha`,
8 writers (log_batch of 10) for 10 s through the load balancer; rows/s, p50, errors, PgBouncer's client logins and
the CPU seconds of each busy container (cgroup v2) and of the writers. Run from the repository root with the kit's
venv, MLFLOWKIT_HOME and MLFLOWKIT_PROJECT_PREFIX on a scratch home, `ha` up."""
import json, os, re, resource, subprocess, sys, time

from mlflowkit.bench.run import experiment_id, set_env
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES

stack = Stack(TOPOLOGIES["ha"])


def cpu_ns(container: str) -> int:
    full = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", container], capture_output=True, text=True).stdout
    stat = open(f"/sys/fs/cgroup/system.slice/docker-{full.strip()}.scope/cpu.stat").read()
    return int(re.search(r"usage_usec (\d+)", stat).group(1)) * 1000


def containers() -> dict[str, str]:
    ids = subprocess.run(["docker", "ps", "-q", "-f", f"label=com.docker.compose.project={stack.project}"],
                         capture_output=True, text=True).stdout.split()
    names = (subprocess.run(["docker", "inspect", "-f", "{{.Name}}", c], capture_output=True, text=True).stdout
             for c in ids)
    return {name.strip().lstrip("/").replace(stack.project + "-", ""): c for name, c in zip(names, ids)}


results = []
for tag in sys.argv[1:]:
    set_env(stack, MLFLOW_IMAGE=f"mlflowkit/mlflow:{tag}")
    subprocess.run([sys.executable, "-m", "mlflowkit", "up", "ha"], check=True, capture_output=True, timeout=600)
    time.sleep(5)
    conn = stack.connection()
    experiment = experiment_id(conn, "ab-throughput")
    running = containers()
    before = {name: cpu_ns(c) for name, c in running.items()}
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-m", "mlflowkit.bench.load", "tracking", conn.tracking_uri, experiment,
                          "--batch", "10", "--duration", "10", "--procs", "8"], capture_output=True, text=True,
                         env={**os.environ, **conn.environ()}, timeout=300).stdout
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = {name: cpu_ns(c) for name, c in running.items()}
    result = json.loads(out.strip().splitlines()[-1])
    logs = subprocess.run(["docker", "logs", "--since", since, running["pgbouncer-1"]], capture_output=True, text=True)
    cpu = {name: round((after[name] - before[name]) / 1e9, 2) for name in running if after[name] - before[name] > 2e8}
    cpu["clients"] = round((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), 2)
    row = {"image": tag, "rows_per_s": round(result["rows"] / result["seconds"]),
           "p50_ms": result["latencies"]["p50_ms"], "errors": result["errors"],
           "pgbouncer_logins": sum("login attempt: db=mlflow" in line
                                   for line in (logs.stdout + logs.stderr).splitlines()), "cpu_s": cpu}
    results.append(row)
    print(json.dumps(row), flush=True)
print(json.dumps(results, indent=1))
