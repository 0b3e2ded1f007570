# Entry points. On a fresh machine `make demo` and `make test` install everything they need:
# the virtualenv (python3.11), and the local stack's Kafka, MinIO and KES (deploy/local/stack,
# cached outside the repo). `make check` is the fast gate without servers. CI runs .ci/run,
# which runs `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack
PYTHON ?= python3.11

.PHONY: check lint types unit test demo install stack-up stack-down

check: lint types unit

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The package, then the tests (two runs: unit and integration each have a conftest module).
types: install
	$(BIN)/mypy
	MYPYPATH=tests:examples $(BIN)/mypy tests/unit tests/doubles tests/conftest.py
	MYPYPATH=tests:tests/integration:examples $(BIN)/mypy tests/integration

# Unit tests with a coverage report; the floor guards against untested code landing in the core.
unit: install
	$(BIN)/pytest tests/unit --cov=enforcer --cov-report=term-missing:skip-covered --cov-fail-under=65

test: install stack-up
	$(BIN)/pytest

demo: install stack-up
	$(BIN)/python examples/demo.py

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down
