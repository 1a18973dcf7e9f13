# knative-playbook: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV ?= uv
PYTEST_ARGS ?=
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
KIND_CLUSTER ?= knative-playbook

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: sync
sync: ## Install every workspace package and the dev tools into .venv (uv, one lock file)
	$(UV) sync --all-packages --all-groups --frozen

.PHONY: servers
servers: ## Build the real test servers and k8s tools (MinIO, FerretDB, helm, kubeconform, argo, promtool) into the cache
	scripts/install-test-servers

.PHONY: dev
dev: sync ## Run the platform as local processes: MongoDB, MinIO, devplane and every function (Ctrl-C stops)
	$(UV) run --frozen devplane dev $(ARGS)

.PHONY: up
up: ## Run the platform in docker compose (builds images)
	$(COMPOSE) up --build -d
	@echo "platform starting: devplane on http://localhost:8100, functions on 8101-8110"

.PHONY: down
down: ## Stop the compose platform and remove its containers
	$(COMPOSE) down

.PHONY: lint
lint: sync ## ruff (lint + format check) and mypy
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	MYPYPATH=$$(ls -d services/*/src | paste -sd:) $(UV) run --frozen mypy

.PHONY: lint-k8s
lint-k8s: ## Helm lint, render every values variant, validate all objects offline (kubeconform), argo lint
	scripts/lint-k8s

.PHONY: test
test: sync lint lint-k8s ## Everything CI runs: lint, manifests, and all tests against real MinIO and MongoDB-protocol servers
	scripts/run-tests $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: sync ## Only the unit tests (no servers)
	$(UV) run --frozen pytest -m unit -q $(PYTEST_ARGS)

.PHONY: test-fanout-full
test-fanout-full: sync ## The fan-out end to end at 10,000 items (several minutes on FerretDB)
	FANOUT_ITEMS=10000 $(UV) run --frozen pytest tests/fanout -q $(PYTEST_ARGS)

.PHONY: soak
soak: sync ## Long reliability run: graceful stops as well as kills, 10-minute mixed-traffic soak with the RSS bound
	RELIABILITY_LONG=1 SOAK_SECONDS=600 $(UV) run --frozen pytest tests/reliability -q -s $(PYTEST_ARGS)

.PHONY: bench
bench: sync ## Benchmarks against named baselines; writes bench/results/*.md
	$(UV) run --frozen python -m bench

.PHONY: images
images: ## Build every function image and print its size
	scripts/build-images

.PHONY: kind-up
kind-up: ## Create a kind cluster with Knative Serving, Eventing and Argo Workflows, then deploy
	scripts/kind-up $(KIND_CLUSTER)

.PHONY: deploy
deploy: ## Build images, load them into kind and helm install the chart
	scripts/kind-deploy $(KIND_CLUSTER)

.PHONY: kind-e2e
kind-e2e: ## Smoke-test every pattern on the kind cluster through a port-forward
	scripts/kind-e2e $(KIND_CLUSTER)
