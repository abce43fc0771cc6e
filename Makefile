# experiment-worker: every command sets up what it needs (venv, Kafka jars) from the project's own files.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SHARED ?= ../shared
CHECK := $(SHARED)/conformance/check.py
# Cases believed to contradict SPEC.md (see the comment above each; none so far).
DISPUTES :=

.PHONY: help setup tools lint typecheck unit integration conformance test run kafka-up kafka-down kafka-status jars bench chaos \
	bench-setup prometheus clean

help:
	@echo "make run    set up, start the local Kafka broker, run the worker on a demo stream, print a summary"
	@echo "make test   set up, lint, type-check, unit + property + integration tests (real broker), conformance"
	@echo "make kafka-up | kafka-down | kafka-status   the local single-node KRaft broker"
	@echo "make prometheus  a local Prometheus scraping a worker on :9108 with the alert rules"
	@echo "make bench  throughput and latency figures, as ratios against baselines run in the same process"
	@echo "make chaos  the long stress suite (~12 min): kills, rebalances, zombies, broker restarts; 0 lost, 0 duplicated"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

# prometheus + promtool (Debian's package) for the alert-rule and scrape tests.
tools:
	@bash deploy/prometheus/install-tools.sh

lint: setup
	$(BIN)/ruff check worker dev tests benchmarks examples

typecheck: setup
	$(BIN)/mypy

unit: setup tools
	$(BIN)/pytest -q tests/unit tests/property

jars: setup
	$(BIN)/python -m dev.kafka fetch

integration: jars tools
	$(BIN)/pytest -q tests/integration

conformance: setup
	@if [ -f $(CHECK) ]; then \
	  $(BIN)/python $(CHECK) --cmd $(BIN)/experiment-worker $(foreach d,$(DISPUTES),--dispute $(d)); \
	elif [ -n "$$CI" ]; then echo "conformance: $(CHECK) not found (CI needs ../shared beside the clone)"; exit 1; \
	else echo "conformance: $(CHECK) not found: the shared cases did NOT run"; fi

test: lint typecheck jars tools
	$(BIN)/pytest -q tests
	$(MAKE) --no-print-directory conformance

kafka-up: jars
	$(BIN)/python -m dev.kafka up

kafka-down: setup
	$(BIN)/python -m dev.kafka down

kafka-status: setup
	$(BIN)/python -m dev.kafka status

run: kafka-up
	$(BIN)/python -m dev.demo

prometheus: setup tools
	$(BIN)/python -m dev.prometheus --target 127.0.0.1:9108 --rules deploy/prometheus/alerts.yml

# The long form of tests/integration/test_chaos.py, on a broker of its own (it restarts it).
CHAOS_FLAGS ?= --seed 2026 --events 200000 --users 5000 --duration-s 540 --instances 3 --kills 30 --leaves 6 \
	--zombies 4 --broker-sigterms 3 --broker-sigkills 3 --finish-timeout-s 600
chaos: jars
	$(BIN)/python -m dev.chaos $(CHAOS_FLAGS)

bench: kafka-up
	-$(MAKE) --no-print-directory bench-setup  # without it the table has no Quix row, and says why
	$(BIN)/python -m benchmarks.run

# Quix Streams (benchmarks/quix.py) in its own venv: it needs an older confluent-kafka and pydantic than
# constraints.txt pins, so it never enters .venv (nor `make test`); constraints-bench.txt pins that venv.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp
$(BENCH_STAMP): pyproject.toml constraints-bench.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check -c constraints-bench.txt -e '.[bench]'
	@touch $(BENCH_STAMP)

bench-setup: $(BENCH_STAMP)

clean:
	-$(BIN)/python -m dev.kafka down
	rm -rf .run .mypy_cache .ruff_cache .pytest_cache
