# Entry points. On a fresh machine `make demo` and `make test` install everything they need:
# the virtualenv (python3.11), the local stack's Kafka, MinIO and KES (deploy/local/stack,
# cached outside the repo), and the Go-built test tools (deploy/tools/, same cache). `make check`
# is the fast gate without servers. CI runs .ci/run, which runs `make test`; its image test
# builds the container image (deploy/image/build: podman, cached).
VENV ?= .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack
PYTHON ?= python3.11

.PHONY: check lint types unit test demo install stack-up stack-down lock browser tools image bench dist

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
	$(BIN)/lint-imports

# The package, then the tests (two runs: unit and integration each have a conftest module).
types: install
	$(BIN)/mypy
	MYPYPATH=tests $(BIN)/mypy tests/unit tests/doubles tests/conftest.py tests/waiting.py tests/test_waiting.py
	MYPYPATH=tests:tests/integration $(BIN)/mypy tests/integration
	MYPYPATH=tests/deploy:tests $(BIN)/mypy tests/deploy

# Unit tests with a coverage report; the floor guards against untested code landing in the core.
unit: install
	$(BIN)/pytest tests/unit tests/test_waiting.py --cov=enforcer --cov-report=term-missing:skip-covered --cov-fail-under=65

# The whole suite in two phases. First every test that leaves the stack's servers running, unit
# and deployment tests included, spread over TEST_WORKERS pytest-xdist workers (each binds its
# buckets to a notification lane of its own: at most LOCAL_NOTIFY_LANES = 4 workers). Then the
# tests marked stops_stack (they stop or restart a server), one after another. Both phases always
# run; either failing, or collecting no test (exit 5), fails the target. PYTEST_ARGS reach both
# phases (e.g. PYTEST_ARGS=--durations=0).
TEST_WORKERS ?= 4
PYTEST_ARGS ?= --durations=25
test: install stack-up browser tools
	@rc=0; \
	$(BIN)/pytest -n $(TEST_WORKERS) -m 'not stops_stack' $(PYTEST_ARGS) || rc=$$?; \
	$(BIN)/pytest tests/integration -m stops_stack $(PYTEST_ARGS) || rc=$$?; \
	exit $$rc

# Chromium from the distribution's packages, for the report's browser test (tests/integration/
# browser.py). Installed once with apt-get (as root, or through sudo). Where that is impossible
# the test is skipped on a developer machine; under CI (CI=true) a missing browser fails.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  sudo=$$( [ "$$(id -u)" = 0 ] || command -v sudo ); \
	  { $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium; } \
	  || { echo "make browser: could not install chromium" >&2; [ "$$CI" != true ]; }; }

# Go-built tools the tests run, cached in ~/.cache/sse-enforcer/bin (minutes the first time):
# Helm (chart tests) and promtool (alert rule tests).
tools:
	deploy/tools/helm --path >/dev/null
	deploy/tools/promtool --path >/dev/null

# Everything a release needs, into dist/: wheel and sdist, the image as an OCI archive with OCI
# labels, its SBOM (CycloneDX, from requirements.lock), the packaged Helm chart and SHA256SUMS
# (deploy/release/README.md). Needs no stack; builds its tools into ~/.cache/sse-enforcer.
dist:
	PYTHON=$(PYTHON) deploy/release/dist

# The container image localhost/sse-enforcer:<version>, then its smoke test on the local stack.
image: stack-up
	deploy/image/build
	deploy/image/smoke

demo: install stack-up
	$(BIN)/python examples/demo.py

# The enforcer against a native minio-go client on the same local stack (benchmarks/README.md):
# one and two workers, and the enforcer of BENCH_BEFORE (the commit before issue 19's work)
# beside today's for the before/after table.
BENCH_BEFORE ?= 96c32df
bench: install stack-up
	$(BIN)/python benchmarks/vs_native.py --before $(BENCH_BEFORE) $(BENCH_ARGS)
# The pinned, hashed dependency set the container image installs (pip install --require-hashes
# -r requirements.lock, then the project with --no-deps). The ranges in pyproject.toml stay open
# for library users; tests/unit/test_packaging.py fails when the lock no longer satisfies them.
lock: install
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --extra msk --generate-hashes --universal \
	  --python-version 3.11 --quiet -o requirements.lock

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down
