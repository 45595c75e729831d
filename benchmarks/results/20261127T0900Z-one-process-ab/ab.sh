#!/bin/bash
# A/B of boot and idle memory: before (21d73b6: compose files and prepare.py) and after (HEAD), alternating.
export BASE_IMAGE=mlflowkit/base:bookworm MLFLOWKIT_HOME=/tmp/probe/home MLFLOWKIT_PROJECT_PREFIX=mlflowkit-probe
for round in 1 2 3; do
  for side in before after; do
    if [ $side = before ]; then pp=/tmp/probe/before; else pp=/work/main; fi
    docker tag mlflowkit/mlflow:ab-$side mlflowkit/mlflow:3.17.2
    echo "== $side round $round"
    (cd $pp && PYTHONPATH=$pp /work/main/.venv/bin/python /tmp/probe/boot2.py ${TOPOS:-server-file,postgres-s3,proxied,artifacts-only} 1 2>/dev/null)
  done
done
docker tag mlflowkit/mlflow:ab-after mlflowkit/mlflow:3.17.2
