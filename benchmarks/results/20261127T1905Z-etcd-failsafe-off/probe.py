"""Probe: the all-etcd stall test against a stack whose Patroni runs with failsafe_mode off (it must fail).

From the checkout's root, with the engine up and the images built:
    MLFLOWKIT_HOME=/tmp/probe/home MLFLOWKIT_PROJECT_PREFIX=mlflowkit-probe \
        .venv/bin/python benchmarks/results/20261127T1905Z-etcd-failsafe-off/probe.py
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from mlflowkit.settings import Settings  # noqa: E402
from mlflowkit.stack import Stack  # noqa: E402
from mlflowkit.topology import HA  # noqa: E402
from tests.e2e import test_ha  # noqa: E402


def main():
    settings = Settings()
    stack = Stack(HA, settings, log=print)
    stack.up(auth=True)
    try:
        env = stack.env()
        patch = json.dumps({"failsafe_mode": False})
        out = stack.compose().exec("postgres-1", ["curl", "-fsS", "-u", f"patroni:{env['PATRONI_API_PASSWORD']}",
                                                  "-X", "PATCH", "-d", patch, "http://127.0.0.1:8008/config"])
        print("config now:", out)
        time.sleep(5)
        try:
            test_ha.test_with_every_etcd_member_stalled_the_database_leader_stays_and_writes_go_on(stack)
            print("PROBE: the test PASSED with failsafe off")
        except AssertionError as exc:
            print("PROBE: the test FAILED with failsafe off:", str(exc)[:500])
    finally:
        stack.down(volumes=True)


if __name__ == "__main__":
    main()
