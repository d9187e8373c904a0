# AnimateLCM, runnable. Two commands do all the set-up on a fresh clone:
#   make lab    create .venv (first use), install everything, open the course in JupyterLab
#   make test   the same set-up, then the unit tests and nbval over every notebook (toy world, test mode)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888
# JupyterLab refuses to run as root (containers, Colab-like VMs) unless told it may.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)
TEST_ENV := ANIMATELCM_WORLD=toy ANIMATELCM_TEST_MODE=1 HF_HUB_OFFLINE=1 ANIMATELCM_CACHE=$(CURDIR)/.cache/animatelcm_helpers MPLBACKEND=Agg

.PHONY: setup lab test test-browser test-min-deps unit notebooks benchmark-notebooks execute-notebooks tables constraints clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) $(LAB_ARGS)

# Two at a time (pytest-xdist, 2 workers: a CI machine's 2 cores), each worker and each notebook kernel on one
# thread so the two never fight over the cores (the toy models are too small to gain from a second thread).
# --dist loadfile: a test file, or a notebook's cells, run in one worker in order.
PARALLEL := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -q
UNIT := $(TEST_ENV) $(PARALLEL) tests
NBVAL := $(TEST_ENV) $(PARALLEL) --nbval-lax notebooks

test: $(STAMP)
	$(UNIT)
	$(NBVAL)

# The learner's path in a real browser: JupyterLab + Playwright + Debian's Chromium (installed with
# apt-get when missing; no browser download). Runs the quickstart and the demo, clicks Generate; the
# screenshot of the demo goes to artifacts/demo_after_generate.png. CI runs it after `make test`.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
test-browser: $(STAMP)
	test -x $(CHROMIUM) || ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium)
	$(TEST_ENV) CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests_browser -q -s

unit: $(STAMP)
	$(UNIT)

# The lower bounds in pyproject.toml, installed and tested: a second venv, .venv-min, with exactly
# requirements/min.txt (every dependency at its `>=` bound, tests/test_min_deps.py keeps the two files in step;
# the dev tools at their current versions), then the unit tests there, with a cache of their own so nothing built
# by the newer versions in .venv is reused, less the test files that no library version changes (tests/conftest.py,
# MIN_DEPS_SKIP: deselected when ANIMATELCM_MIN_DEPS=1). First use downloads torch 2.6.0's CUDA build (about 3 GB) from PyPI.
# CI runs it last, after `make test` and `make test-browser`.
MIN_VENV ?= .venv-min
MIN_STAMP := $(MIN_VENV)/.installed
$(MIN_STAMP): pyproject.toml requirements/min.txt
	test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements/min.txt -e '.[dev]'
	$(MIN_VENV)/bin/python -m pip check
	touch $(MIN_STAMP)

test-min-deps: $(MIN_STAMP)
	$(TEST_ENV) ANIMATELCM_CACHE=$(CURDIR)/.cache/animatelcm_helpers_min ANIMATELCM_MIN_DEPS=1 OMP_NUM_THREADS=1 \
		$(MIN_VENV)/bin/python -m pytest -n 2 --dist loadfile -q tests

notebooks: $(STAMP)
	$(NBVAL)

# Time and peak kernel memory of every notebook in test mode (the figures in README).
benchmark-notebooks: $(STAMP)
	$(TEST_ENV) $(BIN)/python scripts/benchmark_notebooks.py notebooks/*.ipynb

# The notebooks are jupytext pairs: edit notebooks/NN_name.py, run this, commit both files. It syncs each pair
# (jupytext --sync: the more recently modified file's cells), then re-executes the notebooks in place in the toy
# world (normal mode), as they are committed.
execute-notebooks: $(STAMP)
	ANIMATELCM_WORLD=toy HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(BIN)/python scripts/execute_notebooks.py notebooks/*.ipynb

# Only sync the pairs (outputs stay in the .ipynb; nothing runs). tests/test_notebook_pairs.py checks they agree.
sync-notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.ipynb

# Re-measure the result tables that ship in animatelcm_helpers/results (about an hour and a half on 2 cores).
tables: $(STAMP)
	ANIMATELCM_WORLD=toy HF_HUB_OFFLINE=1 $(BIN)/python scripts/tables.py all
	ANIMATELCM_WORLD=toy HF_HUB_OFFLINE=1 $(BIN)/python scripts/ablation_stage2.py

constraints: $(STAMP)
	$(BIN)/python scripts/write_constraints.py

clean:
	rm -rf $(VENV) $(MIN_VENV) .cache
