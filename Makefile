# The README's two commands: `make demo` and `make test`. Both create the
# virtualenv from the project's own files first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
export NO_MKDOCS_2_WARNING := 1

.PHONY: install demo test lint docs bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,viz,docs]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python examples/date_normalization.py --out out/date_normalization

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/mkdocs build --strict --quiet --site-dir site
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

docs: install
	$(BIN)/mkdocs build --strict --site-dir site

bench: install
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) site out .pytest_cache .hypothesis *.egg-info
