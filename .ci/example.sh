#!/usr/bin/env bash
# CI: the kit as a user gets it. Build the wheel, install it into a fresh virtualenv in a temporary directory (no
# checkout on sys.path), run examples/user-project's tests there (the pytest plugin against proxied and
# postgres-s3), then bring up, validate and take down a stack with the installed CLI.
# Needs a Docker engine with Compose v2 and the kit's images or a base to build them from (BASE_IMAGE).
# Everything it starts — stacks of its own project prefix, the temporary directory — is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
tmp=$(mktemp -d /tmp/mlflowkit-example.XXXXXX)
prefix="mlflowkit-example-$$"   # Compose projects of this run: <prefix>-<topology>, <prefix>-pytest-<topology>
export BASE_IMAGE=${BASE_IMAGE:-mlflowkit/base:bookworm}
unset PYTHONPATH MLFLOWKIT_HOME MLFLOWKIT_PROJECT_PREFIX

say() { echo "example: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

cleanup() {
  status=$?
  set +e
  # Projects are found by their label, containers and volumes alike (a stopped stack's volumes outlive it).
  for project in $( { docker ps --all --format '{{.Label "com.docker.compose.project"}}'
                      docker volume ls --format '{{.Label "com.docker.compose.project"}}'; } 2>/dev/null \
                    | grep -E "^${prefix}-" | sort -u); do
    say "removing leftover project $project"
    docker compose --project-name "$project" down --volumes --remove-orphans >/dev/null 2>&1
  done
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT

start=$(date +%s)
step=$start
say "building the wheel"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$tmp/dist" "$repo"
wheel=$(ls "$tmp"/dist/mlflowkit-*.whl)
say "built $(basename "$wheel") in $(elapsed "$step")"

step=$(date +%s)
"$python" -m venv "$tmp/venv"
venv="$tmp/venv"
# The kit's lock as constraints: the versions CI tests, without the hashes (a hashed constraint would put pip in
# --require-hashes mode for the example project's own requirements too).
grep -v -E '^[[:space:]]*--hash=' "$repo/requirements.lock" | sed 's/ \\$//' >"$tmp/constraints.txt"
constraints=(--constraint "$tmp/constraints.txt")
cp -r "$repo/examples/user-project" "$tmp/user-project"
rm -rf "$tmp/user-project/build" "$tmp/user-project"/src/*.egg-info
say "installing the wheel and the example project into a fresh virtualenv ${constraints[*]:+(${constraints[*]})}"
# uv, from the checkout's lock, where `make venv` put it: the same resolution as pip from the same metadata, in
# ~10 s instead of pip's 84 (measured 2026-12-08); pip where there is none.
if [ -x "$repo/.venv/bin/uv" ]; then
  "$repo/.venv/bin/uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" "${constraints[@]}" "$wheel" \
    "$tmp/user-project[test]"
else
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${constraints[@]}" "$wheel" "$tmp/user-project[test]"
fi
say "installed in $(elapsed "$step")"

# From here on nothing may come from the checkout: run in the copy, check where the kit is imported from.
cd "$tmp/user-project"
where=$("$venv/bin/python" -c 'import mlflowkit; print(mlflowkit.__file__)')
case "$where" in
  "$venv"/*) say "mlflowkit imported from $where" ;;
  *) say "mlflowkit imported from $where, not from the virtualenv $venv"; exit 1 ;;
esac
version=$("$venv/bin/mlflowkit" --version)
echo "$version"
case "$version" in
  *"$venv"*) ;;
  *) say "mlflowkit --version does not show stacks inside the virtualenv: $version"; exit 1 ;;
esac
"$venv/bin/python" -m mlflowkit list

step=$(date +%s)
say "the example project's tests (the plugin, found through its entry point)"
"$venv/bin/python" -m pytest -p no:cacheprovider --mlflow-project-prefix "$prefix-pytest"
say "example tests done in $(elapsed "$step")"

step=$(date +%s)
say "the installed CLI: up, validate, down proxied"
home="$tmp/home"
export MLFLOWKIT_HOME="$home" MLFLOWKIT_PROJECT_PREFIX="$prefix"
"$venv/bin/mlflowkit" up proxied --free-ports   # other stacks may hold the default ports
"$venv/bin/mlflowkit" validate proxied
"$venv/bin/mlflowkit" down proxied --volumes
say "CLI up/validate/down in $(elapsed "$step")"

say "done in $(elapsed "$start")"
