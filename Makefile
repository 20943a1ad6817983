# Interchange: `make demo` runs the exchange on the example records; `make test` runs the test suite.
# Both create .venv, install the project and make sure RabbitMQ is reachable first.
# `make bench` measures the exchange against the transport-only ceiling and a FastStream peer
# (BENCH_ARGS=--quick: about two minutes; BENCH_ARGS=--long adds the 100,000 backlog and the 1,000,000 memory run).
# `make bench-ingest` measures bulk ingest of a large street CSV (BENCH_INGEST_ARGS="--mb 200"; default 1 GB).
# `make bench-enquiry` measures cross-force enquiry step one (docs/ENQUIRY.md, docs/PERFORMANCE.md).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-cluster bench bench-ingest bench-enquiry lint rabbitmq promtool chromium node clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

rabbitmq:
	@bash scripts/ensure-rabbitmq.sh

# promtool (Debian's prometheus package) checks the metrics exposition and the alert rules in the tests.
promtool:
	@bash scripts/ensure-promtool.sh

# Debian's chromium and chromium-driver: the enquiry page's browser test drives a real headless Chromium.
chromium:
	@bash scripts/ensure-chromium.sh

# Node.js 20 and npm: the example partner client (examples/node-partner) and the official AsyncAPI parser run in
# the tests (docs/PARTNERS.md); `npm ci` installs their locked packages where missing.
node:
	@bash scripts/ensure-node.sh

demo: $(STAMP) rabbitmq
	$(PY) -m broker demo

test: $(STAMP) rabbitmq promtool chromium node
	$(VENV)/bin/ruff check broker adapters tests bench
	$(VENV)/bin/ruff format --check broker adapters tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy broker adapters
	$(PY) -m pytest -q

# The fault battery (docs/RELIABILITY.md): starts its own 3-node RabbitMQ cluster (scripts/cluster.sh, ports
# 5701-5703) and kills workers, nodes and consumers; serialised, prints its counts; about 10 minutes.
test-cluster: $(STAMP) rabbitmq
	$(PY) -m pytest -q -s -m cluster tests/cluster

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) rabbitmq
	$(PY) -m bench $(BENCH_ARGS)

bench-ingest: $(STAMP) rabbitmq
	$(PY) -m bench.ingest $(BENCH_INGEST_ARGS)

# Cross-force enquiry: 50 concurrent officers against 3 responders (PostgreSQL on 127.0.0.1:5432), step one
# against the transport's own request/reply ceiling; BENCH_ENQUIRY_ARGS="--seconds 30".
bench-enquiry: $(STAMP) rabbitmq
	$(PY) -m bench.enquiry $(BENCH_ENQUIRY_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check broker adapters tests bench
	$(VENV)/bin/ruff format --check broker adapters tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy broker adapters

clean:
	rm -rf $(VENV) var .pytest_cache
