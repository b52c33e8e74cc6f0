# make demo: the main job on the embedded default model.  make test: the test suite (what .ci/run calls).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

# torch first, from the local CPU wheel: a plain 'torch' requirement would pull several GB of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,notebooks]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/litefocus measure --out results/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# about 45 minutes on 2 cores: attention core, cost of recording, and the speed sweep (resumes where it stopped)
bench: $(STAMP)
	$(BIN)/python benchmarks/kernel.py
	$(BIN)/python benchmarks/measure_sparsity.py
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV)
