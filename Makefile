# etcd-op: build, test and deploy. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

IMG ?= controller:latest
# Recipes that need kubectl ask hack/kubectl.sh for one: $$KUBECTL if set, else the cached build, else a
# kubectl with kustomize v5 on PATH, else kubectl alone built from the pinned module.
FIND_KUBECTL = kubectl=$$(hack/kubectl.sh)
CARGO ?= cargo

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: deps
deps: ## Install what building and the local cluster need (Debian packages; checks Go and Rust).
	hack/deps.sh all

.PHONY: deps-build
deps-build: ## Install what building the operator needs (protoc and the well-known .proto files, a C toolchain).
	hack/deps.sh build

.PHONY: manifests
manifests: deps-build ## Generate the CRDs from the Rust types into config/crd/bases.
	$(CARGO) run --quiet -p etcd-op -- crd --dir config/crd/bases

.PHONY: chart
chart: ## Generate the Helm chart in dist/chart from config/ (what kustomize renders, and the CRDs).
	$(FIND_KUBECTL); KUBECTL=$$kubectl $(CARGO) run --quiet -p etcd-op-chart

.PHONY: fmt
fmt: ## Format the Rust code.
	$(CARGO) fmt --all

.PHONY: lint
lint: deps-build ## Clippy with warnings as errors, and a formatting check.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p etcd-op --features failpoints -- -D warnings

.PHONY: build
build: deps-build ## Build the manager binary (release).
	$(CARGO) build --release -p etcd-op

PLUGIN_DIR ?= $(HOME)/.local/bin

.PHONY: plugin
plugin: deps-build ## Build the kubectl plugin and install it as kubectl-etcd in PLUGIN_DIR (default ~/.local/bin).
	$(CARGO) build --release -p kubectl-etcd
	install -D -m 0755 target/release/kubectl-etcd $(PLUGIN_DIR)/kubectl-etcd

.PHONY: run
run: install ## Run the manager against the current kubeconfig, from this machine.
	$(CARGO) run -p etcd-op -- --health-probe-bind-address=:8081 --metrics-bind-address=:8443

##@ Tests

.PHONY: test
test: test-unit test-integration test-e2e ## Every test layer: unit, integration (real etcd, real API server), end to end (local cluster).

.PHONY: test-unit
test-unit: deps-build ## Unit and property tests, CRD staleness (plain `cargo test`), kustomize rendering and the chart's staleness.
	$(CARGO) test
	$(FIND_KUBECTL); KUBECTL=$$kubectl $(CARGO) test -p etcd-op --test manifests -- --ignored; \
	  KUBECTL=$$kubectl $(CARGO) test -p etcd-op-chart --test chart -- --ignored

.PHONY: test-integration
test-integration: deps ## The etcd client against real etcd processes, backups against s3proxy and a volume store, on loopback; the alerts with promtool.
	etcd_bin=$$(hack/build.sh etcd); s3proxy_jar=$$(hack/build.sh s3proxy); \
	  ETCD_BIN=$$etcd_bin/etcd S3PROXY_JAR=$$s3proxy_jar $(CARGO) test -p etcd-op --test etcd_integration -- --ignored
	PROMTOOL=$$(hack/build.sh promtool)/promtool $(CARGO) test -p etcd-op --test monitoring -- --ignored

.PHONY: test-e2e
# The scenarios run a test build of the operator: the same code, with crash points a scenario can set.
test-e2e: export OPERATOR_FEATURES = failpoints
test-e2e: deps cluster-up deploy-local ## Scenarios on the local cluster with the operator deployed from config/.
	$(CARGO) test -p etcd-op-test-support -- --test-threads=1
	CARGO=$(CARGO) test/e2e/run.sh

.PHONY: test-e2e-multinode
test-e2e-multinode: export OPERATOR_FEATURES = failpoints
test-e2e-multinode: deps ## Scenarios on several nodes (node loss, zone loss, drains): grows the local cluster to 4 nodes.
	hack/cluster-up.sh --nodes 4
	hack/deploy-operator.sh
	$(CARGO) test -p etcd-op-e2e --test multinode -- --test-threads=1

.PHONY: bench
bench: deps cluster-up deploy-local ## Benchmarks on the local cluster; prints the figures (the node-loss one on 3 nodes).
	$(CARGO) test --release -p etcd-op-e2e --test bench -- --ignored --nocapture --test-threads=1 --skip bench_node_lost
	hack/cluster-up.sh --nodes 3
	$(CARGO) test --release -p etcd-op-e2e --test bench -- --ignored --nocapture bench_node_lost
	hack/cluster-memory.sh

##@ Local cluster (real Kubernetes built from source, real containers)

# Nodes of the local cluster: 1 is the host's own; more join in network namespaces of their own, in zones.
NODES ?= 1

.PHONY: cluster-up
cluster-up: deps ## Build what is missing and start the local cluster (NODES=1 by default; more join a running one).
	hack/cluster-up.sh --nodes $(NODES)

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove everything it created.
	hack/cluster-down.sh

.PHONY: deploy-local
deploy-local: ## Build the operator image, import it and deploy config/default on the local cluster.
	hack/deploy-operator.sh

.PHONY: demo
demo: deps cluster-up deploy-local ## The whole story: local cluster, operator, the sample EtcdCluster Ready.
	hack/demo.sh

##@ Deployment (against the current kubeconfig)

.PHONY: install
install: ## Install the CRD.
	$(FIND_KUBECTL); "$$kubectl" apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRD (and with it every EtcdCluster).
	$(FIND_KUBECTL); "$$kubectl" delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: ## Deploy the operator with image IMG.
	rm -rf target/deploy && mkdir -p target/deploy
	printf 'resources:\n- ../../config/default\nimages:\n- name: controller\n  newName: %s\n  newTag: %s\n' \
		"$${IMG%:*}" "$${IMG##*:}" > target/deploy/kustomization.yaml
	$(FIND_KUBECTL); "$$kubectl" apply --server-side -k target/deploy

.PHONY: undeploy
undeploy: ## Remove the operator deployed by `make deploy`.
	$(FIND_KUBECTL); "$$kubectl" delete --ignore-not-found -k config/default

.PHONY: docker-build
docker-build: ## Build the operator image with a container engine.
	docker build -t $(IMG) .
