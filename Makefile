# keymint: see README.md. `make help` lists the targets.

IMG ?= keymint:latest
LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
STATICCHECK ?= $(LOCALBIN)/staticcheck
STATICCHECK_VERSION ?= v0.8.2
CONTROLPLANE_DIR ?= $(LOCALBIN)/k8s
# envtest and the demo find kube-apiserver, etcd and kubectl here; an
# already set KUBEBUILDER_ASSETS wins.
KUBEBUILDER_ASSETS ?= $(CONTROLPLANE_DIR)
export KUBEBUILDER_ASSETS
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo $(CONTROLPLANE_DIR)/kubectl)
# `make test GOTEST_FLAGS=-race` adds the race detector (several minutes more on a cold machine).
GOTEST_FLAGS ?=

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests.
	$(CONTROLLER_GEN) rbac:roleName=keymint-manager crd paths="./..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(STATICCHECK) ## staticcheck.
	$(STATICCHECK) ./...

.PHONY: test
test: manifests generate fmt vet lint controlplane ## Run every test: unit and envtest (real kube-apiserver and etcd), then a short chaos run.
	go test $(GOTEST_FLAGS) ./... -skip '^TestShortChaos$$' -coverprofile cover.out
	go test $(GOTEST_FLAGS) ./hack/chaos -run '^TestShortChaos$$' -count=1

CHAOS_FLAGS ?=
.PHONY: chaos
chaos: controlplane ## The full chaos run (see README, "Failure and chaos"): SIGKILLs, two managers, API server outages of 30, 90 and 120 s.
	go run ./hack/chaos $(CHAOS_FLAGS)

BENCH_FLAGS ?=
.PHONY: bench
bench: manifests controlplane build ## Measure keymint against the API server's floor (see README, Performance).
	go run ./hack/bench $(BENCH_FLAGS)

.PHONY: demo
demo: manifests controlplane build ## Run the operator on a local control plane and show it working.
	go build -o bin/demo ./hack/demo
	bin/demo

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary.
	go build -o bin/manager .

.PHONY: plugin
plugin: fmt vet ## Build the kubectl plugin into bin/kubectl-apikey.
	go build -o bin/kubectl-apikey ./cmd/kubectl-apikey

PLUGIN_DIR ?= $(HOME)/.local/bin
.PHONY: install-plugin
install-plugin: plugin ## Install kubectl-apikey on PATH (PLUGIN_DIR, default ~/.local/bin), so `kubectl apikey` works.
	install -d $(PLUGIN_DIR)
	install -m 0755 bin/kubectl-apikey $(PLUGIN_DIR)/kubectl-apikey
	@echo "installed $(PLUGIN_DIR)/kubectl-apikey; make sure $(PLUGIN_DIR) is on PATH"

.PHONY: run
run: manifests generate fmt vet ## Run the manager against the current kubeconfig.
	go run . --slot-namespace=$${SLOT_NAMESPACE:-keymint-system}

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRD, the access roles and the admission policies into the current cluster.
	$(KUBECTL) apply --server-side -k config/crd
	$(KUBECTL) apply --server-side -k config/access
	$(KUBECTL) apply --server-side -k config/admission

.PHONY: uninstall
uninstall: manifests ## Remove the CRD (and with it every APIKey), the roles and the policies.
	$(KUBECTL) delete --ignore-not-found -k config/admission
	$(KUBECTL) delete --ignore-not-found -k config/access
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator with config/default (set IMG).
	cd config/manager && $(KUBECTL) kustomize . >/dev/null
	$(KUBECTL) apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove what deploy created.
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ Tools

.PHONY: controlplane
controlplane: ## Build kube-apiserver, etcd and kubectl from Go modules into bin/k8s (cached).
	@if [ "$(KUBEBUILDER_ASSETS)" = "$(CONTROLPLANE_DIR)" ]; then hack/controlplane.sh "$(CONTROLPLANE_DIR)"; fi

.PHONY: controller-gen
$(STATICCHECK):
	GOBIN=$(LOCALBIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
