# etcd-op: build, test and deploy. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

IMG ?= controller:latest
CRD := config/crd/bases/etcd.cloud.io_etcdclusters.yaml
# kubectl of the pinned Kubernetes release (built once into the cache), unless KUBECTL is set.
KUBECTL ?= $(shell hack/build.sh kubernetes)/kubectl
CARGO ?= cargo

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD from the Rust types into config/crd/bases.
	$(CARGO) run --quiet -p etcd-op -- crd > $(CRD)

.PHONY: fmt
fmt: ## Format the Rust code.
	$(CARGO) fmt --all

.PHONY: lint
lint: ## Clippy with warnings as errors, and a formatting check.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: build
build: ## Build the manager binary (release).
	$(CARGO) build --release -p etcd-op

.PHONY: run
run: install ## Run the manager against the current kubeconfig, from this machine.
	$(CARGO) run -p etcd-op -- --health-probe-bind-address=:8081 --metrics-bind-address=:8080

##@ Tests

.PHONY: test
test: test-unit test-integration test-e2e ## Every test layer: unit, integration (real etcd, real API server), end to end (local cluster).

.PHONY: test-unit
test-unit: ## Unit and property tests, CRD staleness, kustomize rendering; no cluster needed.
	KUBECTL=$(KUBECTL) $(CARGO) test --workspace --exclude etcd-op-e2e --exclude etcd-op-test-support -- --skip integration_

.PHONY: test-integration
test-integration: ## The etcd client against real etcd processes on loopback.
	ETCD_BIN=$$(hack/build.sh etcd)/etcd $(CARGO) test -p etcd-op --test etcd_integration

.PHONY: test-e2e
test-e2e: cluster-up deploy-local ## Scenarios on the local cluster with the operator deployed from config/.
	$(CARGO) test -p etcd-op-test-support -- --test-threads=1
	$(CARGO) test -p etcd-op-e2e -- --test-threads=1

.PHONY: bench
bench: cluster-up deploy-local ## Benchmarks on the local cluster; prints the figures.
	$(CARGO) test --release -p etcd-op-e2e --test bench -- --ignored --nocapture --test-threads=1

##@ Local cluster (real Kubernetes built from source, real containers)

.PHONY: cluster-up
cluster-up: ## Build what is missing and start the local single-node cluster.
	hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove everything it created.
	hack/cluster-down.sh

.PHONY: deploy-local
deploy-local: ## Build the operator image, import it and deploy config/default on the local cluster.
	hack/deploy-operator.sh

.PHONY: demo
demo: cluster-up deploy-local ## The whole story: local cluster, operator, the sample EtcdCluster Ready.
	hack/demo.sh

##@ Deployment (against the current kubeconfig)

.PHONY: install
install: ## Install the CRD.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRD (and with it every EtcdCluster).
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: ## Deploy the operator with image IMG.
	rm -rf target/deploy && mkdir -p target/deploy
	printf 'resources:\n- ../../config/default\nimages:\n- name: controller\n  newName: %s\n  newTag: %s\n' \
		"$${IMG%:*}" "$${IMG##*:}" > target/deploy/kustomization.yaml
	$(KUBECTL) apply --server-side -k target/deploy

.PHONY: undeploy
undeploy: ## Remove the operator deployed by `make deploy`.
	$(KUBECTL) delete --ignore-not-found -k config/default

.PHONY: docker-build
docker-build: ## Build the operator image with a container engine.
	docker build -t $(IMG) .
