# Two entry points for a fresh machine: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CORES  ?= $(shell nproc)
CONFIG ?= config/config.yaml
# Rules start `python -m sidrec...` and `snakemake`: both must be the venv's.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test lint clean report serve

setup: $(STAMP)

# torch goes first and pinned: 2.13.0 resolves to a CPU build here, while leaving it to
# the resolver pulls a CUDA build and several GB of CUDA libraries.
$(STAMP): requirements/base.txt requirements/embedded.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements/base.txt
	$(PY) -m pip install -q --no-deps -r requirements/embedded.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# A rerun after a killed or failed run needs no other command: a lock left by a killed
# snakemake is lifted (only when no snakemake runs here), jobs it left half-done rerun,
# and a failed job's log is printed to the terminal, not only named.
SNAKEMAKE_ARGS = --cores $(CORES) --configfile $(CONFIG) --rerun-incomplete --show-failed-logs

run: setup
	$(PY) workflow/unlock_stale.py $(SNAKEMAKE_ARGS)
	snakemake $(SNAKEMAKE_ARGS)

test: setup
	$(PY) -m pytest -q

# One self-contained HTML file of the figures, tables, provenance and significance that
# `make run` built (it builds whatever is missing first).
report: setup
	$(PY) workflow/unlock_stale.py $(SNAKEMAKE_ARGS)
	snakemake $(SNAKEMAKE_ARGS)
	snakemake --cores $(CORES) --configfile $(CONFIG) --report results/report.html

# After `make run`: the recommend API and its page at http://127.0.0.1:8000/ (Ctrl-C
# stops it). MODEL= (empty) serves the LM chosen on valid NDCG@10; MODEL=sft or rl;
# SERVE_ARGS for more (--device cuda, --host 0.0.0.0, --max-batch 1, ...).
RESULTS ?= results/ml-100k
MODEL   ?=
PORT    ?= 8000
serve: setup
	$(PY) -m sidrec.serve --results $(RESULTS) $(if $(MODEL),--model $(MODEL)) --port $(PORT) $(SERVE_ARGS)

lint: setup
	snakemake --lint

clean:
	rm -rf results .snakemake
