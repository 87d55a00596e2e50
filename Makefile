# Quickstart targets. Each creates (or reuses) the project's own virtual environment in .venv,
# reinstalling only when pyproject.toml changes.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench docs clean-venv

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is required"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gmmjax demo

# The test modules run in parallel, one worker per core up to four (pytest-xdist); each module
# stays on one worker so its shared fits are computed once. `pytest` alone runs them serially.
PYTEST := $(VENV)/bin/python -m pytest -q --numprocesses=auto --maxprocesses=4 --dist=loadfile

test: $(STAMP)
	$(PYTEST)

# Everything, the tests marked `slow` included.
test-all: $(STAMP)
	$(PYTEST) -m "slow or not slow"

# The documentation site (mkdocs-material + mkdocstrings): the tutorials are executed first,
# then the site is built into site/ with every warning an error.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[test,docs]'
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	MPLBACKEND=Agg $(VENV)/bin/python docs/build_tutorials.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_em.py

clean-venv:
	rm -rf $(VENV)
