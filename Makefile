# The two front-door commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint typecheck pytest bench docs soak clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles llama.cpp on first install (minutes); pip caches the wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with every extra

demo: $(STAMP)  ## start the reference app with the full stack on the embedded defaults
	$(BIN)/python -m reference_app serve $(ARGS)

test: lint typecheck pytest  ## everything CI checks

lint: $(STAMP)
	$(BIN)/ruff check src tests reference_app benchmarks
	$(BIN)/ruff format --check src tests reference_app benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## the performance report: writes docs/benchmarks.md
	$(BIN)/python -m benchmarks $(ARGS)

soak: $(STAMP)  ## the reliability suite at full size (tens of minutes; docs/reliability.md)
	AIMW_SOAK=1 $(BIN)/python -m pytest tests/reliability -p no:cacheprovider -s $(PYTEST_ARGS)

docs: $(STAMP)  ## build the documentation site into site/
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist
