# Set-up is two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: on a CPU machine an unpinned torch pulls several GB of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
MODEL ?= smollm2-135m
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

# The playground's browser tests drive Debian's chromium: Playwright's own download cannot work
# on machines without internet. apt needs root (CI runs as root); elsewhere sudo is used.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser ray-venv run test test-slow test-all lint docs docs-build format lock clean

$(BIN)/.installed: pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

install: $(BIN)/.installed

browser: $(CHROMIUM) ## Debian's chromium, for the browser tests

$(CHROMIUM):
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium

# Ray Serve in a venv of its own (its protobuf and grpcio clash with the project's lock),
# seeing the project's venv and this checkout (scripts/ray_venv.sh). The slow tests use it.
RAY_VENV ?= .peers/ray

ray-venv: install ## Ray Serve's venv for deploy/ray_serve.py (serve run deploy.ray_serve:app)
	./scripts/ray_venv.sh $(RAY_VENV)

run: install ## serve $(MODEL) on $(HOST):$(PORT)
	$(BIN)/python -m service --model $(MODEL) --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs-build: install ## the docs site, strictly: a broken link or anchor fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs: install ## serve the docs site on $(HOST):8001
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a $(HOST):8001

# The fast tests on every core (pytest-xdist): 4:05 against 6:31 in one process on the 2-core machine.
PYTEST_WORKERS ?= auto

test: lint docs-build browser ## lint, the docs build, then every test but the slow ones (a few minutes)
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS)

test-slow: install ## only the slow tests: schemathesis, the soak, LangChain, Ray Serve
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: lint docs-build browser ## every test, slow ones included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: ## re-pin requirements*.lock from pyproject.toml's ranges
	TORCH_SPEC="$(TORCH_SPEC)" ./scripts/lock.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
