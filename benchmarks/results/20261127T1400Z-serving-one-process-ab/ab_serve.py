"""A/B of the serving service in one process: postgres-s3, MLFLOW_IMAGE = the serving image before / after;
per start: seconds from `compose up -d serve` to the first 200 of /ping, the container's memory, its processes."""
import json, subprocess, sys, time, urllib.request
from mlflowkit import topology, envfile
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.docker import run

name = sys.argv[2] if len(sys.argv) > 2 else "postgres-s3"
stack = Stack(topology.get(name), Settings(), log=lambda m: print(m, flush=True))
results = []
try:
    for rnd in range(int(sys.argv[1])):
        for label, image in (("before", "mlflowkit/mlflow-serving:before"), ("after", "mlflowkit/mlflow-serving:3.17.2")):
            envfile.ensure(stack.env_file, stack.topology, "127.0.0.1")
            envfile.set_value(stack.env_file, "MLFLOW_IMAGE", image)
            stack.up(free_ports=True)
            if rnd == 0 and label == "before":
                subprocess.run([sys.executable, "-m", "mlflowkit", "validate", name], check=True, timeout=600)
            port = int(stack.env()[stack.topology.port("SERVE_PORT").variable])
            compose = stack.compose(with_serve=True)
            stack.stop_serving()
            t0 = time.monotonic()
            compose.call("up", "-d", "--no-deps", "--force-recreate", stack.topology.serve_service)
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() - t0 < 120
                time.sleep(0.05)
            ready = time.monotonic() - t0
            time.sleep(3)
            cid = run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={stack.project}",
                       "--filter", f"label=com.docker.compose.service={stack.topology.serve_service}"], timeout=30).stdout.split()[0]
            mem = run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", cid], timeout=60).stdout.split("/")[0].strip()
            procs = len(run(["docker", "top", cid], timeout=30).stdout.strip().splitlines()) - 1
            row = {"round": rnd, "image": label, "ping_s": round(ready, 2), "memory": mem, "processes": procs}
            print(json.dumps(row), flush=True); results.append(row)
            stack.stop_serving()
finally:
    print(json.dumps(results, indent=1))
