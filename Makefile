# The loyalty platform. Two commands on a fresh machine (python3 and make):
#   make run    set everything up, start the whole suite on embedded PostgreSQL + NATS
#   make test   set everything up, run the tests
#   make reliability   fault scenarios against the suite (RELIABILITY_ARGS="--quick", ...)
#   make browser  Debian's Chromium for the console's browser tests (tests/console), if missing
# Everything is installed into .tools/ (uv) and .venv/ (the locked environment).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
# Byte-code compiled once at install: processes start without compiling their imports (the
# statistical libraries of insights take seconds to compile otherwise).
export UV_COMPILE_BYTECODE := 1
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(BIN):$(PATH)

PROTO_SOURCES := $(shell find protos/loyalty -name '*.proto' 2>/dev/null)
PROTO_STAMP := libs/contracts/src/loyalty/.generated

.PHONY: setup protos run test test-fast lint bench bench-deployed reliability demo infra access-docs clean distclean \
	deploy-check images contracts browser console-vendor

setup: $(BIN)/.synced $(PROTO_STAMP)

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(BIN)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

$(PROTO_STAMP): $(BIN)/.synced $(PROTO_SOURCES) libs/contracts/generate.py
	$(BIN)/python libs/contracts/generate.py
	@touch $@

protos: $(BIN)/.synced
	$(BIN)/python libs/contracts/generate.py
	@touch $(PROTO_STAMP)

run: setup
	$(BIN)/loyalty-dev run

infra: setup
	$(BIN)/loyalty-dev infra

demo: setup
	$(BIN)/loyalty-dev demo

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	cd protos && ../$(BIN)/buf lint && ../$(BIN)/buf build -o /dev/null && ./breaking.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/kit/src libs/devstack/src libs/check/src libs/admin/src services/*/src tests bench

# deploy/: every kustomize overlay rendered and validated strictly (needs kubectl).
deploy-check: setup
	deploy/check.sh

# Every service's image, with podman from a base image made here by debootstrap (deploy/README.md).
images: setup
	deploy/images/build.sh $(IMAGES)

# The contracts for other teams: the loyalty-contracts wheel and the TypeScript package, into
# dist/contracts/ (needs node and npm).
contracts: setup
	UV=$(UV) clients/build.sh

# The console's browser tests drive the system's Chromium (Playwright never downloads one here).
# Chromium, and a small CJK font so the zh-CN pages' screenshots show their text.
browser:
	command -v chromium && fc-list :lang=zh | grep -q . || \
		(apt-get update && apt-get install -y chromium fonts-wqy-microhei)

# The console's vendored htmx and Apache ECharts, refreshed from npm (needs node and npm).
console-vendor:
	services/gateway/console-vendor.sh

access-docs: setup
	$(BIN)/python -m loyalty_devstack.access_docs

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

# The suite as deployed (bench/README.md, "As deployed"): wrk from Debian's packages, if missing.
bench-deployed: setup
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m bench --deployed $(BENCH_ARGS)

reliability: setup
	$(BIN)/loyalty-dev reliability $(RELIABILITY_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache
	find libs/contracts/src/loyalty -mindepth 1 ! -name __init__.py ! -name py.typed -delete 2>/dev/null || true

distclean: clean
	rm -rf .venv .tools .loyalty protos/third_party
