# lightning-compress: `make run` and `make test` are all a newcomer needs (both install into .venv if needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch for dev/CI; the package itself accepts any torch>=2.1,<3.
TORCH_PIN ?= torch==2.13.0

.PHONY: help install run test test-full lint sweep clean clean-logs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev,cluster]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev tools

run: $(STAMP)  ## the showcase: Network Slimming on the embedded digits data, before/after table
	$(PY) train.py +method=slimming

test: $(STAMP)  ## the CI test suite (everything not marked slow)
	$(PY) -m pytest -m "not slow" -q

test-full: $(STAMP)  ## every test, slow ones included
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff
	$(PY) -m ruff check .

# The sweep's own folder, fixed before it starts (the report reads exactly this one, never "the newest folder").
SWEEP_DIR ?= $(SWEEP_DEFAULT)
SWEEP_DEFAULT := logs/train/slimming/multiruns/sweep-$(shell date +%Y-%m-%d_%H-%M-%S)

sweep: $(STAMP)  ## the slimming trade-off sweep on digits, then its report (runs that did not finish are listed)
	$(PY) train.py -m +method=slimming method.callback.pruning_ratio=0.3,0.5,0.7 hydra.sweep.dir=$(SWEEP_DIR); \
	status=$$?; $(PY) -m lightning_compress.report $(SWEEP_DIR); exit $$status

clean-logs:  ## remove run outputs
	rm -rf logs outputs multirun

clean: clean-logs  ## remove run outputs, caches and the venv
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .hypothesis
