# make demo: the main job on the embedded default model.  make test: the test suite (what .ci/run calls).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench notebooks figures venv clean

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

# about 55 minutes on 2 cores: attention core, cost of recording, the speed sweep (resumes where it stopped), compile
bench: $(STAMP)
	$(BIN)/python benchmarks/kernel.py
	$(BIN)/python benchmarks/measure_sparsity.py
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/compile.py

# the notebooks, executed in place with their outputs (what is committed)
notebooks: $(STAMP)
	cd notebooks && for nb in *.ipynb; do ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace $$nb || exit 1; done

# the README's figures: Figure 2a and the block-by-step heatmap on the embedded default, speed against length
figures: $(STAMP)
	$(BIN)/litefocus measure --out results/figures
	mkdir -p data/figures && cp results/figures/query_attention.png results/figures/sparsity_by_block.png data/figures/
	$(BIN)/python benchmarks/figures.py

clean:
	rm -rf $(VENV)
