# The commands of the README's quick start: `make smoke`, `make rehearsal` and `make test`.
# All create the same virtual environment (.venv) from the pinned dependencies.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SMOKE_DIR ?= build/smoke
REHEARSAL_DIR ?= build/rehearsal
# offline: a folder holding the KorSTS, XNLI-ko and KLUE-STS files (any layout); empty = download them
DATA ?=

.PHONY: smoke rehearsal test preflight venv clean experiments

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# Runs the whole DVC pipeline offline on generated Korean data and a tiny BERT;
# ends with reports/smoke/README.md and reports/smoke/metrics.json.
smoke: venv
	$(PY) -m pipeline.smoke --dir $(SMOKE_DIR) --reports reports/smoke

# Compares the experiments of the current commit (`dvc exp run ...`) with it: reports/experiments/.
# EXPERIMENTS="name1 name2" picks some; PROJECT=build/smoke compares the smoke project's.
PROJECT ?= .
EXPERIMENTS ?=
experiments: venv
	$(PY) -m pipeline.cli experiments --project $(PROJECT) $(EXPERIMENTS)

# The card's recipe on real Korean data and the pretrained all-MiniLM-L6-v2, on a CPU;
# ends with reports/rehearsal/README.md, metrics.json and figures.
rehearsal: venv
	$(PY) -m pipeline.rehearsal --dir $(REHEARSAL_DIR) --reports reports/rehearsal $(if $(DATA),--data $(DATA))

test: venv
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# Checks the machine and every input of params.yaml before `dvc repro` (GPU, sources, hub
# revisions, disk, estimated time); one line per check, non-zero exit if any fails.
preflight: venv
	$(PY) -m pipeline.cli preflight

clean:
	rm -rf $(VENV) build
