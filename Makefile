# Ballast: the two commands are `make serve` (next issue) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint typecheck unit bench bench-smoke clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,models]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -q

# The test command: lint, type check, the whole test suite, and the benchmark in smoke mode.
test: lint typecheck unit bench-smoke

# In-process overhead of the runtime against session.run (see benchmarks/README.md).
bench: install
	$(BIN)/python -m benchmarks.runtime_overhead

bench-smoke: install
	$(BIN)/python -m benchmarks.runtime_overhead --smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
