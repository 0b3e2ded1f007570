# Developer entry points. `make check` is the fast gate (no servers); `make test` is the whole
# suite, which needs the local stack (`make stack-up`). CI runs .ci/run.
VENV ?= .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack

.PHONY: check lint types unit test stack-up stack-down

check: lint types unit

lint:
	$(BIN)/ruff check .

types:
	$(BIN)/mypy

unit:
	$(BIN)/pytest tests/unit -m "not integration"

test:
	$(BIN)/pytest

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down
