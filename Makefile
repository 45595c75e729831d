# mlflowkit — `make stack-<topology>` brings a stack up and validates it; `make test` runs the quick tier (every test
# that needs no engine, and one real stack end to end), `make test-all` every test.
# Topologies: `make list` (declared once, in mlflowkit/topology.py).
PYTHON ?= python3
VENV ?= .venv
KIT := $(VENV)/bin/mlflowkit

.PHONY: venv list build test test-all test-slow unit e2e lint lock lock-images
.DEFAULT_GOAL := help

help:
	@echo "make stack-<topology>   bring up and validate a stack (make list shows them)"
	@echo "make down-<topology>    stop it (data volumes kept)"
	@echo "make test               unit, contract and chart tests + one real stack through serving (minutes)"
	@echo "make test-all           every test: every topology, day two, faults, tutorials (needs a Docker engine)"
	@echo "make unit               the tests that need no engine"

# The exact versions of requirements.lock (hash-checked), then the kit itself, editable, without resolving again.
# pip installs only uv (its pinned, hashed lines of the lock); uv installs the lock: 12 s against pip's 102 s for
# the same 138 packages, the same `pip freeze` (measured 2026-12-08, caches warm).
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	awk '/^uv==/{p=1} p{print} p && !/\\$$/{exit}' requirements.lock > $(VENV)/uv.lock.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r $(VENV)/uv.lock.txt
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(VENV)/bin/python --require-hashes -r requirements.lock
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

list: venv
	$(KIT) list

build: venv
	$(KIT) build

stack-%: venv
	$(KIT) up $*
	$(KIT) validate $*

down-%: venv
	$(KIT) down $*

# Tiers (docs/development.md): `test` is the quick one; `test-slow` is what `test-all` adds to it (CI runs both).
# The quick tier on two pytest-xdist workers, the slow one on three: its stacks mostly wait (healthchecks,
# migrations, serving), and since the healthchecks are paced a third worker fills the cores (measured on the 2-core
# CI machine, 2026-12-08: 35.2 min on three against 39.9 on two; 102.9 test-min against 79.1, each test slower but
# more at once; 92 % of both cores busy). Tests that share a stack or the default ports are xdist groups (one worker
# runs each group), and each worker has its own Compose projects. WORKERS=0 / SLOW_WORKERS=0: one process.
WORKERS ?= 2
SLOW_WORKERS ?= 3
QUICK := not e2e or smoke

test: venv
	$(VENV)/bin/pytest -n $(WORKERS) --dist loadgroup -m "$(QUICK)" --ledger-tier=test $(PYTEST_ARGS)

test-slow: venv
	$(VENV)/bin/pytest -n $(SLOW_WORKERS) --dist loadgroup -m "not ($(QUICK))" --ledger-tier=test-slow $(PYTEST_ARGS)

test-all: test test-slow

unit: venv
	$(VENV)/bin/pytest -m "not e2e"

e2e: venv
	$(VENV)/bin/pytest -m e2e

lint: venv
	VENV=$(VENV) bash .ci/lint.sh

# Re-pin the kit's dependencies (pyproject.toml ranges -> requirements.lock, with hashes). Written to a temporary
# file first: a failed resolution leaves the old lock as it was.
lock: venv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.10 \
	  --no-header --quiet -o requirements.lock.new
	{ sed -n 1,2p requirements.lock; cat requirements.lock.new; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock && rm -f requirements.lock.new

# Re-pin every package of the mlflow image (requirements.txt -> requirements.lock beside it, with hashes), the
# same way; the image installs it with --require-hashes.
# Each lock starts from the current one (uv keeps its pins where requirements allow): adding a package moves no other.
lock-images: venv
	cp stacks/images/mlflow/requirements.lock stacks/images/mlflow/requirements.lock.new
	$(VENV)/bin/uv pip compile stacks/images/mlflow/requirements.txt --generate-hashes --universal \
	  --python-version 3.11 --no-header --quiet -o stacks/images/mlflow/requirements.lock.new
	mv stacks/images/mlflow/requirements.lock.new stacks/images/mlflow/requirements.lock
	# The older versions `mlflowkit upgrade` starts from (mlflow-<version>.txt -> .lock beside it).
	for pins in stacks/images/mlflow/mlflow-*.txt; do \
	  cp "$${pins%.txt}.lock" "$${pins%.txt}.lock.new" && \
	  $(VENV)/bin/uv pip compile "$$pins" --generate-hashes --universal --python-version 3.11 --no-header --quiet \
	    -o "$${pins%.txt}.lock.new" && mv "$${pins%.txt}.lock.new" "$${pins%.txt}.lock" || exit 1; \
	done
