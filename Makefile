# Two commands on a fresh machine with Python 3.11: `make run`, then `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint unit integration clean-state install system-deps chaos

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

## Start embedded broker, PostgreSQL, Redis, a worker and demo traffic; Ctrl-C stops all.
run: $(STAMP)
	$(BIN)/pulse dev

## Lint, type-check and run the whole test suite (unit + integration on embedded services).
test: $(STAMP) lint system-deps
	$(BIN)/pytest -q

## Debian packages the deploy tests need (promtool, amtool, prometheus, docker-compose to
## validate docker-compose.yml without an engine); installed only if missing.
system-deps:
	@command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null && \
		command -v docker-compose >/dev/null || \
		($(SUDO) apt-get update -qq && \
		 $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager \
		 docker-compose)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

clean-state:
	rm -rf .pulse

## Benchmarks of issue 6 against the Kafka clients, Faust and Quix (never part of `make test`);
## writes benchmarks/RESULTS.md. Smoke run: make bench BENCH_ARGS=--quick
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

## Fault injection: kill -9, rebalance, PostgreSQL/Redis/Alertmanager/broker outages, duplicates
## (docs/reliability.md). `make test` runs only the fast scenarios of tests/chaos.
chaos: $(STAMP) system-deps
	$(BIN)/pytest -q tests/chaos
