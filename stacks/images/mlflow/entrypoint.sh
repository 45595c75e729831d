#!/bin/sh
# Every command of the mlflow image starts here. With `mlflowkit up --auth` (MLFLOW_AUTH_ADMIN_USERNAME set), the
# basic-auth admin also goes into a private copy of the auth ini: MLflow before 3.x's MLFLOW_AUTH_ADMIN_* variables
# (the 2.22.5 and 3.1.4 images of `mlflowkit upgrade`) reads it from there only. The copy lives in /tmp (0600, the
# container's own) and never in the image; without --auth nothing changes.
set -eu
if [ -n "${MLFLOW_AUTH_ADMIN_USERNAME:-}" ] && [ -f "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then
  config=$(mktemp /tmp/basic_auth.XXXXXX)
  # configparser reads % as interpolation: a literal one is %%.
  escape() { printf '%s' "$1" | sed 's/%/%%/g'; }
  {
    grep -v -E '^[[:space:]]*admin_(username|password)[[:space:]]*=' "$MLFLOW_AUTH_CONFIG_PATH"
    printf 'admin_username = %s\n' "$(escape "$MLFLOW_AUTH_ADMIN_USERNAME")"
    printf 'admin_password = %s\n' "$(escape "${MLFLOW_AUTH_ADMIN_PASSWORD:-}")"
  } > "$config"
  export MLFLOW_AUTH_CONFIG_PATH="$config"
fi
# `--expose-prometheus /run/mlflow-metrics` sums one file per worker process there, so it must start empty: a
# container restarted after a crash (`restart: unless-stopped`) keeps its files, and the dead processes' counts would
# be added in. (A tmpfs would be empty, but Docker remounts it root-owned 0755 on a restart, and the server, not
# root, could no longer write it: the crash test of the ha stack found that.)
if [ -d /run/mlflow-metrics ]; then
  find /run/mlflow-metrics -mindepth 1 -delete
fi
exec "$@"
