"""Boot probe: up --wait from fresh volumes, with each service's start, first healthy, exit."""
import json, sys, time
from datetime import datetime, timezone
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES
from mlflowkit.bench.run import _seed_env, _docker_time
from mlflowkit.docker import run
import os
os.environ.setdefault("MLFLOWKIT_PROJECT_PREFIX", "mlflowkit-probe")
names = sys.argv[1].split(",")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
settings = Settings()
for name in names:
    topo = TOPOLOGIES[name]
    stack = Stack(topo, settings, log=lambda m: None)
    _seed_env(stack)
    for r in range(rounds):
        if stack.states() or stack.volumes():
            stack.down(volumes=True)
        began = datetime.now(timezone.utc); t = time.monotonic()
        stack.up()
        total = time.monotonic() - t
        ids = run(["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={stack.project}"], timeout=30).stdout.split()
        rows = []
        for info in json.loads(run(["docker", "inspect", *ids], timeout=30).stdout):
            svc = info["Config"]["Labels"]["com.docker.compose.service"]; st = info["State"]
            start = (_docker_time(st["StartedAt"]) - began).total_seconds()
            healthy = None
            if "Health" in st:
                ok = [_docker_time(e["End"]) for e in st["Health"]["Log"] if e["ExitCode"] == 0]
                healthy = (min(ok) - began).total_seconds() if ok else None
            fin = _docker_time(st.get("FinishedAt", "")) if st["Status"] == "exited" else None
            rows.append((start, svc, healthy, (fin - began).total_seconds() if fin else None))
        time.sleep(3)
        mem = run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *ids], timeout=60).stdout
        mem = {line.split()[0].split("-")[-2]: line.split()[1] for line in mem.splitlines() if line.strip()}
        print(f"{name} round {r}: total {total:.2f}s  memory {mem}")
        for start, svc, healthy, fin in sorted(rows):
            print(f"   {svc:15} start {start:5.2f}  healthy {healthy if healthy is None else round(healthy,2)}  exit {fin if fin is None else round(fin,2)}")
    stack.down(volumes=True)
    if stack.env_file.exists(): pass
