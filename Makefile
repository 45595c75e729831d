# mlflowkit — `make stack-<topology>` brings a stack up and validates it; `make test` runs every test.
# Topologies: `make list` (declared once, in mlflowkit/topology.py).
PYTHON ?= python3
VENV ?= .venv
KIT := $(VENV)/bin/mlflowkit

.PHONY: venv list build test unit e2e lint constraints
.DEFAULT_GOAL := help

help:
	@echo "make stack-<topology>   bring up and validate a stack (make list shows them)"
	@echo "make down-<topology>    stop it (data volumes kept)"
	@echo "make test               every test, end-to-end stacks included (needs a Docker engine)"
	@echo "make unit               the tests that need no engine"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
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

test: venv
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest -m "not e2e"

e2e: venv
	$(VENV)/bin/pytest -m e2e

lint: venv
	VENV=$(VENV) bash .ci/lint.sh

# Re-pin every package of the mlflow image from a fresh build of its requirements.
constraints: venv
	: > stacks/images/mlflow/constraints.txt
	$(KIT) build
	{ echo "# Every package the mlflow image installs, pinned (pip freeze of a built image; \`make constraints\` regenerates)."; \
	  docker run --rm mlflowkit/mlflow:3.17.2 pip freeze; } > stacks/images/mlflow/constraints.txt.new
	mv stacks/images/mlflow/constraints.txt.new stacks/images/mlflow/constraints.txt
