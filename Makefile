# Set-up and the everyday commands. Each target installs what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test docs lint format dist

demo: $(VENV)/.installed
	$(VENV)/bin/spacefold demo --out demo-out

test: $(VENV)/.installed
	$(PY) -m pytest -q

# the documentation site, into site/ (mkdocs.yml: strict, every warning fails the build)
docs: $(VENV)/.installed
	$(PY) -m mkdocs build --strict --site-dir site

# ruff (configured in pyproject.toml): lint checks the tree and its format, format fixes both
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# the sdist and the wheel in dist/, checked, and the wheel installed alone and run
dist: $(VENV)/.installed
	PY=$(PY) .ci/release-check

$(VENV)/.installed: pyproject.toml constraints-ci.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-ci.txt -e ".[dev]"
	$(PY) -m pip install -q --no-deps "torchattacks>=3.4"   # the attacks alone: spacefold needs none of its requirements
	touch $@
