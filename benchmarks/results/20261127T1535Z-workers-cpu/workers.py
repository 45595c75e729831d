"""CPU per component of the 8-writer tracking load on `postgres-s3`, at the workers given (`workers.py 1 2 1 2`):
MLFLOW_WORKERS in the stack's .env, `mlflowkit up`, then 8 writers (log_batch of 10) for 10 s; rows/s, p50, and the
CPU seconds of the mlflow, postgres and s3 containers (cgroup v2) and of the writers (their rusage, imports included)
over the run. Run from the repository root with the kit's venv, MLFLOWKIT_HOME and MLFLOWKIT_PROJECT_PREFIX on a
scratch home, `postgres-s3` up. (The run of results.jsonl also tried to count each worker's connections; that part
read nothing and is left out.)"""
import json, os, re, resource, subprocess, sys, time

from mlflowkit.bench.run import experiment_id, set_env
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES

stack = Stack(TOPOLOGIES["postgres-s3"])


def container(service: str) -> str:
    return subprocess.run(["docker", "ps", "-q", "-f", f"label=com.docker.compose.project={stack.project}",
                           "-f", f"label=com.docker.compose.service={service}"],
                          capture_output=True, text=True).stdout.split()[0]


def cpu_ns(cid: str) -> int:
    full = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", cid], capture_output=True, text=True).stdout.strip()
    stat = open(f"/sys/fs/cgroup/system.slice/docker-{full}.scope/cpu.stat").read()
    return int(re.search(r"usage_usec (\d+)", stat).group(1)) * 1000


conn = stack.connection()
experiment = experiment_id(conn, "probe-workers")
for workers in sys.argv[1:]:
    set_env(stack, MLFLOW_WORKERS=workers)
    subprocess.run([sys.executable, "-m", "mlflowkit", "up", "postgres-s3"], check=True, capture_output=True)
    time.sleep(3)
    services = {s: container(s) for s in ("mlflow", "postgres", "s3")}
    before = {s: cpu_ns(c) for s, c in services.items()}
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    out = subprocess.run([sys.executable, "-m", "mlflowkit.bench.load", "tracking", conn.tracking_uri, experiment,
                          "--batch", "10", "--duration", "10", "--procs", "8"], capture_output=True, text=True,
                         env={**os.environ, **conn.environ()}, timeout=300).stdout
    wall, r1 = time.time() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    after = {s: cpu_ns(c) for s, c in services.items()}
    result = json.loads(out.strip().splitlines()[-1])
    cpu = {s: round((after[s] - before[s]) / 1e9, 2) for s in services}
    cpu["clients"] = round((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), 2)
    print(json.dumps({"workers": int(workers), "rows_per_s": round(result["rows"] / result["seconds"]),
                      "p50": result["latencies"]["p50_ms"], "errors": result["errors"], "wall": round(wall, 1),
                      "cpu_s": cpu}), flush=True)
