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

.PHONY: help setup tools lint typecheck unit integration conformance test run kafka-up kafka-down kafka-status jars bench chaos build \
	bench-setup prometheus soak clean

help:
	@echo "make run    set up, start the local Kafka broker, run the worker on a demo stream, print a summary"
	@echo "make test   set up, lint, type-check, unit + property + integration tests (real broker), conformance"
	@echo "make kafka-up | kafka-down | kafka-status   the local single-node KRaft broker"
	@echo "make prometheus  a local Prometheus scraping a worker on :9108 with the alert rules"
	@echo "make bench  throughput and latency figures, as ratios against baselines run in the same process"
	@echo "make chaos  the long stress suite (~20 min): 100 SIGKILLs, rebalances, zombies, broker restarts, network faults; 0 lost, 0 duplicated"
	@echo "make soak   one worker under load for SOAK_SECONDS (3600): RSS, threads, fds, lag, commit latency must not grow"

$(STAMP): pyproject.toml constraints.txt setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	# The editable install itself is pure Python; `make build` compiles the hot modules in place.
	EXPERIMENT_WORKER_COMPILE=0 $(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt \
	  -e '.[dev]' 'setuptools>=77' wheel
	@touch $(STAMP)

# mypyc compiles the modules setup.py lists, beside their sources (*.so, ignored by git), when a C
# compiler is there (COMPILE=auto); COMPILE=0 leaves the checkout pure Python, COMPILE=1 insists.
COMPILE ?= auto
COMPILED_SOURCES := $(shell sed -n 's/^    "\(worker\/.*\.py\)",$$/\1/p' setup.py)
BUILD_STAMP := .build/compiled-stamp
$(BUILD_STAMP): $(STAMP) setup.py $(COMPILED_SOURCES)
	@mkdir -p .build
	@if [ "$(COMPILE)" = 0 ]; then find worker -name '*.so' -delete; echo "build: pure Python (COMPILE=0)"; \
	else EXPERIMENT_WORKER_COMPILE=$(COMPILE) $(BIN)/python setup.py -q build_ext --inplace > .build/mypyc.log 2>&1 \
	  || { tail -30 .build/mypyc.log; exit 1; }; \
	  find worker -name '*.so' -exec touch {} +; \
	  $(BIN)/python -c 'import worker.build as b; print("build:", b.describe())'; fi
	@touch $(BUILD_STAMP)

# The same sources without the compiled modules, for conformance against the pure-Python build.
PURE := .build/pure
$(PURE)/.stamp: $(shell git ls-files worker 2>/dev/null)
	@rm -rf $(PURE) && mkdir -p $(PURE)
	@git ls-files worker | grep -v '^worker/schemas$$' | xargs cp --parents -t $(PURE)
	@cp -rL worker/schemas $(PURE)/worker/
	@touch $@

setup: $(STAMP)

build: $(BUILD_STAMP)

# prometheus + promtool (Debian's package) for the alert-rule and scrape tests.
tools:
	@bash deploy/prometheus/install-tools.sh

lint: setup
	$(BIN)/ruff check worker dev tests benchmarks examples

typecheck: setup
	$(BIN)/mypy

unit: build tools
	$(BIN)/pytest -q tests/unit tests/property

jars: setup
	$(BIN)/python -m dev.kafka fetch

integration: build jars tools
	$(BIN)/pytest -q tests/integration

# Against both builds: the installed command (compiled by `make build` where it can be), and the
# same sources as pure Python (python -P: the checkout's compiled modules are not on the path).
conformance: build $(PURE)/.stamp
	@if [ -f $(CHECK) ]; then \
	  echo "conformance, $$($(BIN)/python -c 'import worker.build as b; print(b.describe())'):"; \
	  $(BIN)/python $(CHECK) --cmd $(BIN)/experiment-worker $(foreach d,$(DISPUTES),--dispute $(d)) && \
	  echo "conformance, pure Python:" && \
	  PYTHONPATH=$(abspath $(PURE)) $(BIN)/python $(CHECK) --cmd "$(BIN)/python -P -m worker.cli" \
	    $(foreach d,$(DISPUTES),--dispute $(d)); \
	elif [ -n "$$CI" ]; then echo "conformance: $(CHECK) not found (CI needs ../shared beside the clone)"; exit 1; \
	else echo "conformance: $(CHECK) not found: the shared cases did NOT run"; fi

test: lint typecheck build jars tools
	$(BIN)/pytest -q tests
	$(MAKE) --no-print-directory conformance

kafka-up: jars
	$(BIN)/python -m dev.kafka up

kafka-down: setup
	$(BIN)/python -m dev.kafka down

kafka-status: setup
	$(BIN)/python -m dev.kafka status

run: build kafka-up
	$(BIN)/python -m dev.demo

prometheus: setup tools
	$(BIN)/python -m dev.prometheus --target 127.0.0.1:9108 --rules deploy/prometheus/alerts.yml

# The long form of tests/integration/test_chaos.py, on a broker of its own (it restarts it).
CHAOS_FLAGS ?= --seed 2026 --events 300000 --users 5000 --duration-s 900 --instances 3 --kills 80 --restore-kills 8 --wipes 4 --leaves 6 \
	--zombies 4 --broker-sigterms 3 --broker-sigkills 3 --net-cuts-short 3 --net-cuts-long 2 --net-blackholes 2 \
	--net-latency 3 --finish-timeout-s 600
chaos: build jars
	$(BIN)/python -m dev.chaos $(CHAOS_FLAGS)

# A worker under a steady load for an hour (SOAK_SECONDS, SOAK_RATE messages/s, SOAK_INTERVAL_S,
# SOAK_WARMUP_S, SOAK_DIR, SOAK_BOOTSTRAP): soak.csv and soak.svg, and a check that nothing grows.
soak: build jars
	$(BIN)/python -m dev.soak

bench: build kafka-up
	-$(MAKE) --no-print-directory bench-setup  # without it the table has no Quix row, and says why
	$(BIN)/python -m benchmarks.run

# Quix Streams (benchmarks/quix.py) in its own venv: it needs an older confluent-kafka and pydantic than
# constraints.txt pins, so it never enters .venv (nor `make test`); constraints-bench.txt pins that venv.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp
$(BENCH_STAMP): pyproject.toml constraints-bench.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	# Pure Python there (COMPILE=0): mypyc would type-check in pip's isolated build env, without the stubs.
	EXPERIMENT_WORKER_COMPILE=0 $(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	  -c constraints-bench.txt -e '.[bench]'
	@touch $(BENCH_STAMP)

bench-setup: $(BENCH_STAMP)

clean:
	-$(BIN)/python -m dev.kafka down
	rm -rf .run .build build .mypy_cache .ruff_cache .pytest_cache
	find worker -name '*.so' -delete
