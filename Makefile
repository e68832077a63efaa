# Every target that needs Python dependencies sets up the virtualenv itself (make setup).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov pins its own HCL parser (bc-python-hcl2), which clashes with python-hcl2: own venv.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# Azurite, the Azure Storage server the local stack runs as an Azure Blob target: from npm, pinned,
# into a directory of its own (needs Node.js and npm; 3.35.0 is the last release that runs on Node 20).
NPM ?= npm
AZURITE_VERSION := 3.35.0
AZURITE_DIR := .azurite
AZURITE_STAMP := $(AZURITE_DIR)/.installed-$(AZURITE_VERSION)
LAMBDA_PYTHON_VERSION ?= 3.12
LAMBDA_PLATFORM ?= manylinux2014_x86_64
SHARDS ?= 1
MIGRATE_ARGS ?=
PYTEST_ARGS ?=

# AWS deployment (make deploy / migrate / destroy): terraform, docker and the aws CLI on PATH.
TF ?= terraform
TF_DIR := terraform
TF_VARS ?=
DOCKER ?= docker
# The image tag is the commit: the ECR repository is immutable and Terraform refuses "latest".
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null)

.PHONY: help setup lint format test test-unit test-integration test-faults check-infra demo bench \
        migrate migrate-local plan-shards status redrive package image-tag image push deploy destroy clean

help:
	@grep -E '^## ' Makefile | sed 's/^## //'

## setup            virtualenvs with the project, test tools, checkov and the local servers (SeaweedFS, moto, Azurite)
setup: $(STAMP) $(CHECKOV_STAMP) $(AZURITE_STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov>=3.2,<4'
	touch $(CHECKOV_STAMP)

$(AZURITE_STAMP):
	@command -v $(NPM) >/dev/null || { echo "setup: npm not found: Azurite (the local Azure Blob server) needs Node.js 20+ with npm" >&2; exit 1; }
	rm -rf $(AZURITE_DIR)
	$(NPM) install --prefix $(AZURITE_DIR) --no-save --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	touch $(AZURITE_STAMP)

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

## test-faults      the fault-injection suite; writes tests/faults/results.md
test-faults: setup
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

## check-infra      terraform validate against the pinned hashicorp/aws schema (offline), checkov, hadolint; no terraform binary or docker needed
check-infra: setup
	$(PY) -m infra_check.validate $(TF_DIR)
	$(CHECKOV_VENV)/bin/checkov -d $(TF_DIR) --compact --quiet --skip-download
	$(CHECKOV_VENV)/bin/checkov -f Dockerfile --framework dockerfile --compact --quiet --skip-download
	$(VENV)/bin/hadolint Dockerfile

## demo             the pipeline end to end on loopback, with a byte-for-byte verdict
demo: setup
	$(PY) -m local_stack.demo

## status           queue, DLQ, oldest message, worker tasks, latency (QUEUE_URL, ECS_CLUSTER, ECS_SERVICE; --json: STATUS_ARGS=--json)
status: setup
	$(PY) -m worker status $(STATUS_ARGS)

## redrive          move dead-lettered messages back to the queue (REDRIVE_ARGS=--dry-run to count only)
redrive: setup
	$(PY) -m worker redrive $(REDRIVE_ARGS)

## migrate-local    python -m migrate here, against the endpoints in the environment (MIGRATE_ARGS="--check" ...)
migrate-local: setup
	$(PY) -m migrate $(MIGRATE_ARGS)

## package          the enqueue Lambda zip (build/lambda_enqueue.zip) with Lambda-platform wheels
package: setup
	rm -rf build/lambda build/lambda_enqueue.zip
	mkdir -p build/lambda/replicator
	$(VENV)/bin/pip install --quiet --target build/lambda --platform $(LAMBDA_PLATFORM) \
		--implementation cp --python-version $(LAMBDA_PYTHON_VERSION) --only-binary=:all: 'pydantic>=2.7,<3'
	cp -r lambda_enqueue build/lambda/
	cp replicator/__init__.py replicator/messages.py build/lambda/replicator/
	find build/lambda -name __pycache__ -prune -exec rm -rf {} +
	cd build/lambda && ../../$(PY) -m zipfile -c ../lambda_enqueue.zip *
	@echo "built build/lambda_enqueue.zip for Python $(LAMBDA_PYTHON_VERSION) on $(LAMBDA_PLATFORM)"

image-tag:
	@test -n "$(IMAGE_TAG)" || { echo "IMAGE_TAG: not a git checkout; pass IMAGE_TAG=<tag>" >&2; exit 2; }

## image            docker build of the worker/migrate image
image: image-tag
	$(DOCKER) build --pull -t lyve-replicator:$(IMAGE_TAG) .

## push             push the image to the ECR repository created by terraform
push: image
	@repo=$$($(TF) -chdir=$(TF_DIR) output -raw ecr_repository_url) && \
	registry=$${repo%%/*} && \
	aws ecr get-login-password | $(DOCKER) login --username AWS --password-stdin $$registry && \
	$(DOCKER) tag lyve-replicator:$(IMAGE_TAG) $$repo:$(IMAGE_TAG) && \
	$(DOCKER) push $$repo:$(IMAGE_TAG)

## deploy           package + terraform apply (ECR first) + image + push + apply with the new image tag
deploy: package image-tag
	$(TF) -chdir=$(TF_DIR) init -input=false
	$(TF) -chdir=$(TF_DIR) apply -input=false -target=aws_ecr_repository.this -var image_tag=$(IMAGE_TAG) $(TF_VARS)
	$(MAKE) push
	$(TF) -chdir=$(TF_DIR) apply -input=false -var image_tag=$(IMAGE_TAG) $(TF_VARS)

## migrate          run the migration task on ECS (SHARDS=n tasks), wait, return its exit code
migrate: setup
	mkdir -p build
	$(TF) -chdir=$(TF_DIR) output -json > build/terraform-outputs.json
	$(PY) -m migrate.ecs --outputs build/terraform-outputs.json --shards $(SHARDS) -- $(MIGRATE_ARGS)

## plan-shards      the split points for SHARDS=n tasks (for drift_repair.splits in terraform.tfvars)
plan-shards: setup
	mkdir -p build
	$(TF) -chdir=$(TF_DIR) output -json > build/terraform-outputs.json
	$(PY) -m migrate.ecs --outputs build/terraform-outputs.json --shards $(SHARDS) --plan-only -- $(MIGRATE_ARGS)

## destroy          terraform destroy (the source bucket and the target are left alone)
destroy: image-tag
	$(TF) -chdir=$(TF_DIR) destroy -refresh=false -var image_tag=$(IMAGE_TAG) $(TF_VARS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(AZURITE_DIR) build dist .pytest_cache .mypy_cache .ruff_cache

## bench            this project vs rclone vs the old method (aws s3 cp via disk); writes bench/results.md|json
bench: setup
	$(PY) -m bench.run
