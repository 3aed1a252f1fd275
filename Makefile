# One entry point for newcomers and CI. `make run` and `make test` set the environment up on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test test-fast lint format bench clean

setup: $(STAMP)

# torch is pinned and installed before the project so pip takes the CPU wheel instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: setup
	$(VENV)/bin/mmrec run --config $(CONFIG)

test: setup
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

lint: setup
	$(VENV)/bin/ruff check mmrec_ray jobs tests bench
	$(VENV)/bin/ruff format --check mmrec_ray jobs tests bench

format: setup
	$(VENV)/bin/ruff format mmrec_ray jobs tests bench
	$(VENV)/bin/ruff check --fix mmrec_ray jobs tests bench

bench: setup
	$(PY) -m bench.run_cpu

clean:
	rm -rf runs/ .pytest_cache
