"""Side by side in one run: the proxied topologies' artifact transfers with the MLflow server image before and after
the change (parts sent in parallel, downloads read ahead 4 MiB at a time) — 100 MiB and 1 GiB up/down through a
plain MLflow client on the host (the bench's load generator), boto3 straight to S3 from inside the server's
container in the same stack (the bench's limit), the server container's memory sampled; variants alternate."""
import json, os, subprocess, sys, threading, time
sys.path.insert(0, "/work/main")
from mlflowkit.bench.run import LOAD_SCRIPT, _mbps, _result
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import TOPOLOGIES, ArtifactMode
from tests.e2e.conftest import seed_env

MiB = 1024 * 1024
names, sizes, rounds = sys.argv[1].split(","), [int(s) for s in sys.argv[2].split(",")], int(sys.argv[3])
variants = {"before": "mlflowkit/mlflow:ab-before", "after": "mlflowkit/mlflow:3.17.2"}
out_path = sys.argv[4]
results = []

def mem_mib(container):
    """The container's anonymous memory (cgroup v1 memory.stat rss): what the server holds, without page cache;
    read from the file, not `docker stats`, whose polling would take CPU from the transfer it measures."""
    cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", container], capture_output=True, text=True,
                         timeout=30).stdout.strip()
    for line in open(f"/sys/fs/cgroup/memory/docker/{cid}/memory.stat"):
        key, value = line.split()
        if key == "rss":
            return int(value) / MiB

def load(argv, env):
    proc = subprocess.run([sys.executable, "-m", "mlflowkit.bench.load", *argv], capture_output=True, text=True,
                          timeout=1800, env={**os.environ, **env}, cwd="/tmp/ab")
    return _result(argv[0], proc.returncode, proc.stdout, proc.stderr)

for rnd in range(rounds):
    for name in names:
        topology = TOPOLOGIES[name]
        service = "artifacts" if topology.artifact_mode is ArtifactMode.ARTIFACTS_SERVER else "mlflow"
        for variant, image in variants.items():
            settings = Settings(project_prefix=f"ab{rnd}{variant[0]}", home=f"/tmp/ab/{variant}{rnd}", up_timeout=240)
            seed_env(settings, topology, MLFLOW_IMAGE=image)
            stack = Stack(topology, settings, log=lambda m: None)
            try:
                stack.up()
                conn = stack.connection()
                server = f"{stack.project}-{service}-1"
                from mlflow.tracking import MlflowClient
                env = conn.environ()
                experiment = MlflowClient(tracking_uri=conn.tracking_uri).create_experiment(f"ab-{time.time()}")
                for size in sizes:
                    base, peak, stop = mem_mib(server), [], threading.Event()
                    cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", server], capture_output=True,
                                         text=True, timeout=30).stdout.strip()
                    def sample():
                        while not stop.is_set():
                            for line in open(f"/sys/fs/cgroup/memory/docker/{cid}/memory.stat"):
                                key, value = line.split()
                                if key == "rss":
                                    peak.append(int(value) / MiB)
                            time.sleep(0.1)
                    threading.Thread(target=sample, daemon=True).start()
                    measured = load(["artifacts", experiment, "--size", str(size * MiB), "--count", "1"], env)
                    stop.set()
                    limit = _result("s3", 0, stack.compose().exec(service, ["python", "-", "s3", "env:MLFLOW_S3_ENDPOINT_URL",
                                    "--bucket", stack.env().get("S3_BUCKET", "mlflow"), "--size", str(size * MiB), "--count", "1"],
                                    timeout=1800, input=LOAD_SCRIPT.read_text()), "")
                    row = {"round": rnd, "topology": name, "variant": variant, "MiB": size,
                           "up MB/s": round(_mbps(measured, "upload")), "down MB/s": round(_mbps(measured, "download")),
                           "boto3 up MB/s": round(_mbps(limit, "upload")), "boto3 down MB/s": round(_mbps(limit, "download")),
                           "server rss growth MiB": round(max(peak or [base]) - base)}
                    row["up ratio"] = round(row["up MB/s"] / row["boto3 up MB/s"], 2)
                    row["down ratio"] = round(row["down MB/s"] / row["boto3 down MB/s"], 2)
                    results.append(row); print(json.dumps(row), flush=True)
            finally:
                stack.down(volumes=True)
json.dump(results, open(out_path, "w"), indent=1)
