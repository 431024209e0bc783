# The two front-door commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint typecheck pytest browser bench docs soak clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles llama.cpp on first install (minutes); pip caches the wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with every extra

demo: $(STAMP)  ## start the reference app with the full stack; the playground at http://127.0.0.1:8000/
	$(BIN)/python -m reference_app serve --demo $(ARGS)

test: lint typecheck pytest  ## everything CI checks

lint: $(STAMP)
	$(BIN)/ruff check src tests reference_app benchmarks testkit
	$(BIN)/ruff format --check src tests reference_app benchmarks testkit

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The playground test drives Debian's chromium through Playwright; no browser is ever downloaded.
browser:  ## install Debian's chromium when it is missing (as root), else say how
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the playground's browser test"; \
	    apt-get update -q && apt-get install -y -q --no-install-recommends chromium; \
	  else \
	    echo "The playground test needs Chromium. Install Debian's package as root:" >&2; \
	    echo "  apt-get install chromium   (or run make test as root)" >&2; \
	    exit 1; \
	  fi; \
	}

bench: $(STAMP)  ## the performance report and the hot-path budgets, every part in one run (about 20 min): docs/benchmarks.md and the README figures (ARGS=--quick for a short run)
	$(BIN)/python -m benchmarks.suite $(ARGS)

soak: $(STAMP)  ## the reliability suite at full size (tens of minutes; docs/reliability.md)
	AIMW_SOAK=1 $(BIN)/python -m pytest tests/reliability -p no:cacheprovider -s $(PYTEST_ARGS)

docs: $(STAMP)  ## build the documentation site into site/
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist
