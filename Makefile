# make demo: the main job on the embedded default model.  make test: the test suite (what .ci/run calls).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench notebooks figures corpus minildm minildm3 evaluator paper-tables block-ablation venv clean

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

# both cores (pytest-xdist), a test file per worker so that a file's module fixtures are built once
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# about 55 minutes on 2 cores: attention core, cost of recording, the speed sweep (resumes where it stopped), compile
bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py --csv data/benchmarks/quality.csv
	$(BIN)/python benchmarks/kernel.py --csv data/benchmarks/kernel.csv --operations-csv data/benchmarks/operations.csv
	$(BIN)/python benchmarks/measure_sparsity.py --csv data/benchmarks/measure_sparsity.csv
	$(BIN)/python benchmarks/speed.py --out data/benchmarks
	$(BIN)/python benchmarks/compile.py --csv data/benchmarks/compile.csv

# the notebooks, executed in place with their outputs (what is committed)
notebooks: $(STAMP)
	cd notebooks && for nb in *.ipynb; do ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace $$nb || exit 1; done

# the README's figures: Figure 2a and the block-by-step heatmap on the embedded default, speed against length
figures: $(STAMP)
	$(BIN)/litefocus measure --out results/figures
	mkdir -p data/figures && cp results/figures/query_attention.png results/figures/sparsity_by_block.png data/figures/
	$(BIN)/python benchmarks/figures.py

# MiniLDM 2's corpus (about 3 h of real audio from Debian and PyPI packages, 2.3 GB downloaded, a few minutes to
# render; needs root for apt): runs/corpus. tinysoundfont without its pyaudio dependency (only its renderer is used).
corpus: $(STAMP)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fluid-soundfont-gm ffmpeg flite
	$(BIN)/python -m pip install -q -c constraints.txt music21==10.5.1
	$(BIN)/python -m pip install -q --no-deps tinysoundfont==0.3.7
	$(BIN)/python -m minildm.corpus --out runs/corpus

# MiniLDM 2 from scratch, as shipped (about 90 minutes here): the corpus, training, the evaluation the card cites.
# The result lands in runs/minildm2/model; check it, then move it to data/minildm yourself.
minildm: corpus
	$(BIN)/python -m minildm.train --corpus runs/corpus --work runs/minildm2 --out runs/minildm2/model \
		--steps 4000 --minutes 78 --batch 24 --threads 2
	$(BIN)/python -m studies.minildm.evaluation --path runs/minildm2/model --corpus runs/corpus --out runs/minildm2/model
	$(BIN)/python -m studies.minildm.diagnosis --path runs/minildm2/model --corpus runs/corpus \
		--out runs/minildm2/model/diagnosis.json

# MiniLDM 3 (about 80 minutes here on 2 cores, after make corpus): MiniLDM 2's recipe with mimetic self-attention
# initialisation in the down blocks, 3,000 steps, trained by the pattern-emergence study's run (its curve probes the
# focus every 250 steps), exported, evaluated (attention.json: the focus statistics per prompt and at both starts).
# The result lands in runs/minildm3/model; check it, then move it to data/minildm3 yourself.
minildm3: corpus
	$(BIN)/python -m studies.pattern_emergence.run mimetic_down_4 --steps 3000 --minutes 120 --threads 2
	$(BIN)/python -m studies.pattern_emergence.export mimetic_down_4 --out runs/minildm3/model
	$(BIN)/python -m studies.minildm.evaluation --path runs/minildm3/model --corpus runs/corpus --out runs/minildm3/model \
		--name "MiniLDM 3"
	$(BIN)/python -m studies.minildm.evaluation --path runs/minildm3/model --attention-only --out runs/minildm3/model \
		--name "MiniLDM 3"

# The offline quality evaluator (a small CLAP and a label classifier) on the same corpus, and its validation
# (retrieval, split-half floor, degradation curves). Lands in runs/evaluator/model; move it to data/evaluator.
evaluator: corpus
	$(BIN)/python -m studies.evaluator.training --corpus runs/corpus --out runs/evaluator/model
	$(BIN)/python -m studies.evaluator.validation --path runs/evaluator/model --corpus runs/corpus --out runs/evaluator/model

# The paper's Tables 1-3 on the embedded model (86 minutes here on 2 cores, after make corpus): the held-out
# captions and their round-tripped references, three sweeps on two processes (Tables 1 and 3 with the authors'
# concatenation; Table 2 at the lengths the paper has, with dense reused from the first; the fast solver), their
# evaluation into data/paper_tables.
# Every step resumes where it stopped.
LAUNCH := $(BIN)/accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
	--dynamo_backend no -m litefocus_cli sweep --model default --captions runs/heldout/captions.csv --threads 1
TABLES := runs/paper_tables
paper-tables: $(STAMP)
	$(BIN)/python -m studies.heldout_set --corpus runs/corpus --out runs/heldout
	$(LAUNCH) --configurations dense litefocus token_merging same_frequency_only litefocus_concat \
		--seconds 20.48 10.24 5.12 2.56 --steps 25 --out $(TABLES)/tables_1_3
	$(LAUNCH) --configurations dense litefocus --samplers dpmsolver++:10 \
		--seconds 20.48 10.24 5.12 2.56 --out $(TABLES)/fast_solver
	$(LAUNCH) --configurations dense cross_frequency_only:0.8 cross_frequency_only:0.6 cross_frequency_only:0.4 \
		cross_frequency_only:0.2 --seconds 10.24 5.12 2.56 --steps 25 --reuse $(TABLES)/tables_1_3 \
		--out $(TABLES)/table_2
	$(BIN)/litefocus evaluate-sweep $(TABLES)/tables_1_3 --reference runs/heldout/reference \
		--compare same_frequency_only:litefocus litefocus_concat:litefocus token_merging:litefocus \
		--out data/paper_tables/tables_1_3
	for s in fast_solver table_2; do $(BIN)/litefocus evaluate-sweep $(TABLES)/$$s \
		--reference runs/heldout/reference --out data/paper_tables/$$s || exit 1; done
	for s in tables_1_3 fast_solver table_2; do cp $(TABLES)/$$s/jobs.csv data/paper_tables/$${s}_jobs.csv; done

# Issue 14's block-choice study on the embedded model (about 3 hours on 2 cores, after make corpus; resumes):
# the evidence per caption (studies.block_ablation.evidence); LiteFocus and same-frequency only on single blocks, levels and
# growing sets in the evidence's order (studies.block_ablation.configurations), and LiteFocus with the cross-frequency set kept at
# its 2.56 s size (length-adaptive), 24 held-out captions at 4x and 8x, jobs shared with the tables reused; then
# the costs, the predictors, the cost model of choose_blocks(budget=...) and its check (studies.block_ablation.study).
ABLATION := runs/block_ablation
block-ablation: $(STAMP)
	$(BIN)/python -m studies.heldout_set --corpus runs/corpus --out runs/heldout
	$(BIN)/python -m studies.block_ablation.evidence --captions runs/heldout/captions.csv --first 24 \
		--seconds 10.24 20.48 --out data/block_ablation/evidence.nc
	$(LAUNCH) --first 24 --configurations dense $$($(BIN)/python -m studies.block_ablation.configurations) \
		--seconds 20.48 10.24 --steps 25 --out $(ABLATION) \
		$(if $(wildcard $(TABLES)/tables_1_3/sweep.json),--reuse $(TABLES)/tables_1_3)
	$(LAUNCH) --first 24 --configurations dense litefocus@down_blocks.1+up_blocks.2/2.56 \
		--seconds 20.48 10.24 --steps 25 --out runs/length_adaptive --reuse $(ABLATION)
	$(BIN)/litefocus evaluate-sweep $(ABLATION) --reference runs/heldout/reference --out data/block_ablation/sweep
	cp $(ABLATION)/jobs.csv data/block_ablation/sweep_jobs.csv
	$(BIN)/python -m studies.block_ablation.study --sweep $(ABLATION) runs/length_adaptive \
		--reference runs/heldout/reference --evidence data/block_ablation/evidence.nc --out data/block_ablation

clean:
	rm -rf $(VENV)
