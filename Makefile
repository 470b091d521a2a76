# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kdbench-installed
# Pins torch to the CPU build for every install (nnunetv2 -> timm -> torchvision would
# otherwise pull a multi-GB CUDA build).
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-slow test-cluster bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" "setuptools>=69" wheel
	$(PY) -m pip install --quiet -e ".[test,cluster]"
	@touch $(STAMP)

# The whole pipeline on the synthetic default, ending with its report (the path of its
# index.html is the last line printed).
demo: install
	$(VENV)/bin/kdbench protocol validate protocols/demo.yaml
	$(VENV)/bin/kdbench data prepare --protocol protocols/demo.yaml
	$(VENV)/bin/kdbench plan protocols/demo.yaml
	$(VENV)/bin/kdbench run protocols/demo.yaml --executor local --jobs 2
	$(VENV)/bin/kdbench report protocols/demo.yaml

test: install
	$(PY) -m pytest -m "not slow and not cluster"

test-slow: install
	$(PY) -m pytest -m slow

# Real PostgreSQL, single-node SLURM and an MLflow server on 127.0.0.1, started and stopped by
# scripts/cluster/*.sh (which install Debian's packages when missing: needs root).
test-cluster: install
	$(PY) -m pytest -m cluster

# The benchmark suite (docs/performance.md): every ratio of P1-P5 in one table, small size on
# a CPU; on a GPU: $(PY) benchmarks/run_all.py --size brats --json bench_gpu.json
bench: install
	$(PY) benchmarks/run_all.py --size small --json runs/bench/bench_small.json

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
