#!/bin/bash
# The A/B of table.md: boot and idle memory, "before" (a git worktree of 21d73b6 at $BEFORE, the image tagged
# mlflowkit/mlflow:ab-before) and "after" (this checkout, mlflowkit/mlflow:ab-after), alternating, 3 rounds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
after=$(cd "$here/../../.." && pwd)
before=${BEFORE:?set BEFORE to a worktree of the before commit}
export MLFLOWKIT_HOME=${MLFLOWKIT_HOME:-/tmp/ab-home} MLFLOWKIT_PROJECT_PREFIX=mlflowkit-probe
for round in 1 2 3; do
  for side in before after; do
    if [ "$side" = before ]; then tree=$before; else tree=$after; fi
    docker tag "mlflowkit/mlflow:ab-$side" mlflowkit/mlflow:3.17.2
    echo "== $side round $round"
    (cd "$tree" && PYTHONPATH=$tree "$after/.venv/bin/python" "$here/boot.py" \
       "${TOPOS:-server-file,postgres-s3,proxied,artifacts-only}" 1 2>/dev/null)
  done
done
docker tag mlflowkit/mlflow:ab-after mlflowkit/mlflow:3.17.2
