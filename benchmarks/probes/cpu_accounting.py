"""Probe: where a command's CPU goes on this machine: its own process tree, each container (summed by Compose
service), and the rest (the engine, container runtime and kernel: creating and removing containers and networks,
and every healthcheck's exec). Needs root and cgroup v1's cpuacct (Debian's engine 20.10 on this VM).

    sudo .venv/bin/python benchmarks/probes/cpu_accounting.py OUT.json -- make test-slow

The command runs in a cpuacct cgroup of its own (its children too); containers are read from the engine's cgroups
every second (one that lives less than a second is missed: the one-shots are undercounted), named from the
engine's own files (no docker call, which would cost what it measures).

Seen on the 2-core CI machine (2026-12-07), `make test-slow` on two workers (86 tests, 50.5 min, the MLflow 2.22.5
and 3.1.4 images built in it): 5,469 CPU-seconds busy. The test processes (clients, Chromium, the docker and compose
CLIs) 1,311 s (24 %); the MLflow servers' containers 1,161 s (21 %), serving 280, artifacts servers 262, PostgreSQL
199, SeaweedFS 105; the engine, runtime and kernel the rest, ~1,520 s (28 %). An idle postgres-s3 stack: the MLflow
server 39 ms of CPU per second, PostgreSQL 33, SeaweedFS 21 (their healthchecks every 1-2 s); an idle ha stack
keeps 35 % of the two cores busy, most of it the engine running ~9 healthchecks a second.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CPUACCT = "/sys/fs/cgroup/cpuacct"


def read(path: str) -> str:
    return Path(path).read_text()


def host_busy() -> int:
    """Jiffies (1/100 s) the host was busy since boot: /proc/stat's cpu line less idle and iowait."""
    values = [int(v) for v in read("/proc/stat").splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4]


def main(out: str, command: list[str]) -> int:
    root = subprocess.run(["docker", "info", "--format", "{{.DockerRootDir}}"], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    mine = f"{CPUACCT}/cpu-accounting-{os.getpid()}"
    os.makedirs(mine, exist_ok=True)
    names: dict[str, str] = {}
    usage: dict[str, int] = {}

    def sample() -> None:
        for path in glob.glob(f"{CPUACCT}/docker/*/cpuacct.usage"):
            container = path.split("/")[-2]
            try:
                usage[container] = int(read(path))
            except OSError:
                continue  # removed meanwhile: its last sample stands
            if container not in names:
                try:
                    config = json.loads(read(f"{root}/containers/{container}/config.v2.json"))
                    names[container] = config["Config"]["Labels"].get("com.docker.compose.service") or config["Name"]
                except (OSError, KeyError, ValueError):
                    names[container] = container[:12]

    sample()
    before = dict(usage)  # containers already running count from now
    busy, began = host_busy(), time.monotonic()
    proc = subprocess.Popen(command, preexec_fn=lambda: Path(f"{mine}/tasks").write_text(str(os.getpid())))
    while proc.poll() is None:
        sample()
        time.sleep(1)
    sample()
    per_service: dict[str, float] = {}
    for container, value in usage.items():
        name = names[container]
        per_service[name] = per_service.get(name, 0) + (value - before.get(container, 0)) / 1e9
    result = {"seconds": round(time.monotonic() - began, 1), "exit": proc.returncode,
              "host_busy_cpu_s": (host_busy() - busy) / 100,
              "command_tree_cpu_s": int(read(f"{mine}/cpuacct.usage")) / 1e9,
              "containers_cpu_s": sum(per_service.values()),
              "per_service_cpu_s": dict(sorted(per_service.items(), key=lambda item: -item[1]))}
    result["engine_runtime_kernel_cpu_s"] = (result["host_busy_cpu_s"] - result["command_tree_cpu_s"]
                                             - result["containers_cpu_s"])
    os.rmdir(mine)  # empty now: its processes have ended
    Path(out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_service_cpu_s"}, indent=1))
    return proc.returncode


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: cpu_accounting.py OUT.json -- COMMAND...")
    sys.exit(main(sys.argv[1], sys.argv[3:]))
