"""Side by side in one run: the proxied stack's artifact transfers with the image before (temporary files) and after
(streaming) — 100 MiB and 1 GiB up/down through a plain MLflow client, the server container's memory sampled."""
import json, os, subprocess, sys, tempfile, threading, time
sys.path.insert(0, "/work/main")
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES
from tests.e2e.conftest import seed_env

MiB = 1024 * 1024
name = sys.argv[1]
sizes = [int(s) for s in sys.argv[2].split(",")]
variants = {"before": "mlflowkit/mlflow:dev-before", "after": "mlflowkit/mlflow:dev-nd"}
topology = TOPOLOGIES[name]
results = []

def mem_mib(container):
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container],
                         capture_output=True, text=True, timeout=30).stdout.split("/")[0].strip()
    value, unit = float(out[:-3]), out[-3:]
    return value * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]

for rnd in range(2):
    for variant, image in variants.items():
        settings = Settings(project_prefix=f"leadab{rnd}{variant[0]}", home=f"/tmp/lead-ab/{variant}{rnd}", up_timeout=240)
        extra = {} if any(p.variable == "PROMETHEUS_PORT" for p in topology.ports) else {"PROMETHEUS_PORT": "39093"}
        seed_env(settings, topology, MLFLOW_IMAGE=image, **extra)
        stack = Stack(topology, settings, log=lambda m: None)
        try:
            stack.up()
            server = f"{stack.project}-{'artifacts' if name == 'artifacts-only' else 'mlflow'}-1"
            env = {**os.environ, "MLFLOW_TRACKING_URI": stack.connection().tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
            for size in sizes:
                code = f"""
import mlflow, os, time, tempfile, json
c = mlflow.MlflowClient()
run = c.create_run(c.create_experiment("ab-{size}-{time.time()}")).info.run_id
d = tempfile.mkdtemp(dir="/tmp/lead-ab"); p = os.path.join(d, "blob.bin")
with open(p, "wb") as f:
    for _ in range({size}): f.write(os.urandom(1024 * 1024))
t = time.perf_counter(); c.log_artifact(run, p, "x"); up = time.perf_counter() - t
os.remove(p)
t = time.perf_counter(); c.download_artifacts(run, "x/blob.bin", d); down = time.perf_counter() - t
os.remove(p)
print(json.dumps({{"up": up, "down": down}}))
"""
                base = mem_mib(server)
                peak = [base]
                stop = threading.Event()
                def sample():
                    while not stop.is_set():
                        try: peak.append(mem_mib(server))
                        except Exception: pass
                threading.Thread(target=sample, daemon=True).start()
                out = subprocess.run(["/work/main/.venv/bin/python", "-W", "ignore", "-c", code], env=env,
                                     capture_output=True, text=True, timeout=1200)
                stop.set()
                if out.returncode:
                    print(out.stderr[-1500:]); raise SystemExit(1)
                t = json.loads(out.stdout.strip().splitlines()[-1])
                row = {"round": rnd, "variant": variant, "MiB": size, "up MB/s": round(size * MiB / 1e6 / t["up"]),
                       "down MB/s": round(size * MiB / 1e6 / t["down"]), "server mem growth MiB": round(max(peak) - base)}
                results.append(row); print(json.dumps(row), flush=True)
        finally:
            stack.down(volumes=True)
json.dump(results, open(f"/tmp/lead-ab/{name}.json", "w"), indent=1)
