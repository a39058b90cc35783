# lightning-compress: `make run` and `make test` are all a newcomer needs (both install into .venv if needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch for dev/CI; the package itself accepts any torch>=2.1,<3.
TORCH_PIN ?= torch==2.13.0

.PHONY: help install run test test-full test-zoo test-gpu lint sweep clean clean-logs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev,export,cluster]"   # export: onnx tests; cluster: submitit tests
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev tools

run: $(STAMP)  ## the showcase: Network Slimming on the embedded digits data, before/after table
	$(PY) train.py +method=slimming

test: $(STAMP)  ## the CI test suite (everything not marked slow)
	$(PY) -m pytest -m "not slow" -q

test-full: $(STAMP)  ## every test, slow ones included
	$(PY) -m pytest -q

# --- optional zoo coverage (timm + real torchvision) in a second venv: torchvision does not import beside
# TORCH_PIN, so this venv pins the pair that does; the main venv and `make test` are untouched by it.
ZOO_VENV := .venv-zoo
ZOO_PY := $(ZOO_VENV)/bin/python
ZOO_STAMP := $(ZOO_VENV)/.installed
ZOO_PINS ?= torch==2.14.1 torchvision==0.29.1

$(ZOO_STAMP): pyproject.toml
	test -x $(ZOO_PY) || $(PYTHON) -m venv $(ZOO_VENV)
	$(ZOO_PY) -m pip install --quiet $(ZOO_PINS)
	$(ZOO_PY) -m pip install --quiet -e ".[dev,timm]"
	touch $(ZOO_STAMP)

test-zoo: $(ZOO_STAMP)  ## optional: the engine on 27 timm families and 13 torchvision models (own venv)
	$(ZOO_PY) -m pytest tests/pruning/test_zoo.py -q -p no:cacheprovider

test-gpu: $(STAMP)  ## the tests marked gpu (CUDA, bf16-mixed) and, with 2 GPUs, DDP over NCCL
	PY=$(PY) scripts/gpu_check.sh

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
	rm -rf $(VENV) $(ZOO_VENV) .cache .pytest_cache .ruff_cache .hypothesis
