# Two commands on a fresh machine: `make bench` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml; pip takes the local CPU wheel.
	$(PY) -m pip install --quiet -e '.[dev]'
	# spikingjelly, snntorch, neurobench: dev-only comparison/interop targets; --no-deps keeps the pinned
	# torch (neurobench declares torchaudio, which would replace it; its metrics need only snntorch and tqdm).
	$(PY) -m pip install --quiet --no-deps spikingjelly loguru snntorch neurobench==2.3.0
	touch $(STAMP)

# Two workers: the suite is mostly single-threaded torch and subprocess CLI runs, so it uses both cores.
test: $(STAMP)
	$(PY) -m pytest -q -n 2

bench: $(STAMP)
	$(VENV)/bin/tawq bench --preset default

lint: $(STAMP)
	$(VENV)/bin/ruff check tawq_core plugins backends benchmarks tests

clean:
	rm -rf $(VENV) build *.egg-info
