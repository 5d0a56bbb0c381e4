# keymint: see README.md. `make help` lists the targets.

# The release: the image `make deploy` and `make build-installer` use.
VERSION ?= 0.1.0
IMG ?= ghcr.io/keymint/keymint:v$(VERSION)
LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
OPENAPI_GEN ?= $(LOCALBIN)/openapi-gen
# openapi-gen at the kube-openapi go.mod resolves (the one k8s.io/apiserver uses).
KUBE_OPENAPI_VERSION ?= $(shell go list -m -f '{{.Version}}' k8s.io/kube-openapi)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
GOLANGCI_LINT_VERSION ?= v2.15.0
KUSTOMIZE ?= $(LOCALBIN)/kustomize
KUSTOMIZE_VERSION ?= v5.8.1
HELM ?= $(LOCALBIN)/helm
HELM_VERSION ?= v3.22.0
CONTROLPLANE_DIR ?= $(LOCALBIN)/k8s
# envtest and the demo find kube-apiserver, etcd and kubectl here; an
# already set KUBEBUILDER_ASSETS wins.
KUBEBUILDER_ASSETS ?= $(CONTROLPLANE_DIR)
export KUBEBUILDER_ASSETS
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo $(CONTROLPLANE_DIR)/kubectl)
# How the manager is built, here and in the Dockerfile (a test checks both).
GO_BUILD_FLAGS ?= -trimpath -ldflags="-s -w"
# Test packages run one at a time (-p 1): each starts its own kube-apiserver,
# and two of them at once on 2 cores starve each other's timing.
# `make test GOTEST_FLAGS=-race` adds the race detector (several minutes more on a cold machine).
GOTEST_FLAGS ?=

.PHONY: all
all: build

##@ General

# print-VAR prints a variable, for the tests that check files against it.
print-%:
	@echo '$($*)'

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests, and the chart's copies of them.
	$(CONTROLLER_GEN) rbac:roleName=keymint-manager crd paths="./api/...;./controllers/...;./internal/auditserver/...;./internal/auditstore/...;./internal/apicerts" output:crd:artifacts:config=config/crd/bases
	hack/chart-sync.sh

.PHONY: generate
generate: controller-gen openapi-gen ## Generate DeepCopy methods, and the aggregated API's OpenAPI schemas and model names.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
	$(OPENAPI_GEN) --output-dir internal/auditapi/openapi --output-pkg github.com/keymint/keymint/internal/auditapi/openapi \
		--output-file zz_generated.openapi.go --output-model-name-file zz_generated.model_name.go \
		--readonly-pkg k8s.io/apimachinery/pkg/apis/meta/v1 --readonly-pkg k8s.io/apimachinery/pkg/runtime --readonly-pkg k8s.io/apimachinery/pkg/version \
		--go-header-file hack/boilerplate.go.txt --report-filename /dev/null \
		k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime k8s.io/apimachinery/pkg/version github.com/keymint/keymint/api/audit/v1alpha1

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## golangci-lint with .golangci.yml (goimports, gocyclo, dupl, errcheck, revive, staticcheck, ...).
	$(GOLANGCI_LINT) run ./...

.PHONY: lint-fix
lint-fix: golangci-lint ## golangci-lint, fixing what it can (imports, modernize).
	$(GOLANGCI_LINT) run --fix ./...

.PHONY: test-unit
test-unit: ## The tests that need no control plane and no tool in bin/ (-short), in well under a minute.
	go test -short $(GOTEST_FLAGS) ./...

# What make test builds or installs before its tests. They build side by
# side (make -j): on a fresh machine they are most of the first run, and
# their module downloads overlap with the other builds. golangci-lint, helm
# and kustomize are built by hack/test.sh beside the tests, on the CPU they
# leave idle.
TEST_TOOLS = controller-gen openapi-gen controlplane nginx

.PHONY: test-tools
test-tools: ## Build (side by side) or install what make test needs before its tests: the control plane, controller-gen, nginx.
	$(MAKE) --no-print-directory -j4 $(TEST_TOOLS)

# lint runs go vet among its linters (.golangci.yml), so test does not run
# it again: on a fresh machine that is a compile of every package saved.
# hack/test.sh runs the lint beside the tests, at the lowest CPU priority.
.PHONY: test
test: test-tools ## Run every test: unit and envtest (real kube-apiserver and etcd), then a short chaos run, and the lint.
	$(MAKE) --no-print-directory manifests generate fmt
	GOTEST_FLAGS='$(GOTEST_FLAGS)' hack/test.sh

CHAOS_FLAGS ?=
.PHONY: chaos
chaos: controlplane ## The full chaos run (see docs/operations.md, "Failure and chaos"): SIGKILLs, two managers, API server outages of 30, 90 and 120 s.
	go run ./hack/chaos $(CHAOS_FLAGS)

.PHONY: e2e
e2e: manifests ## keymint installed with its Helm chart on a one-node cluster (kubelet, containerd) in a network namespace, and test/e2e against it. As root; see docs/e2e.md.
	hack/e2e/run.sh

BENCH_FLAGS ?=
.PHONY: bench
bench: manifests controlplane build ## Measure keymint against the API server's floor (see docs/performance.md).
	go run ./hack/bench $(BENCH_FLAGS)

.PHONY: demo
demo: manifests controlplane build plugin ## Run the operator on a local control plane and show it working (the plugin in bin/).
	go build -o bin/demo ./hack/demo
	bin/demo

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary.
	go build $(GO_BUILD_FLAGS) -o bin/manager .

.PHONY: plugin
plugin: fmt vet ## Build the kubectl plugin into bin/kubectl-apikey.
	go build -o bin/kubectl-apikey ./cmd/kubectl-apikey

PLUGIN_DIR ?= $(HOME)/.local/bin
.PHONY: install-plugin
install-plugin: plugin ## Install kubectl-apikey on PATH (PLUGIN_DIR, default ~/.local/bin), so `kubectl apikey` works.
	install -d $(PLUGIN_DIR)
	install -m 0755 bin/kubectl-apikey $(PLUGIN_DIR)/kubectl-apikey
	install -m 0755 cmd/kubectl-apikey/kubectl_complete-apikey $(PLUGIN_DIR)/kubectl_complete-apikey
	@echo "installed $(PLUGIN_DIR)/kubectl-apikey and its completion (kubectl apikey <TAB>); make sure $(PLUGIN_DIR) is on PATH"

.PHONY: run
run: build ## Run the manager against the current kubeconfig (after make install); Ctrl-C stops it.
	bin/manager --slot-namespace=$${SLOT_NAMESPACE:-keymint-system} --health-probe-bind-address=127.0.0.1:8081

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install keymint-system, the CRD, the access roles and the admission policies into the current cluster.
	$(KUBECTL) apply --server-side -k config/namespace
	$(KUBECTL) apply --server-side -k config/crd
	$(KUBECTL) apply --server-side -k config/access
	$(KUBECTL) apply --server-side -k config/admission

.PHONY: uninstall
uninstall: manifests ## Remove the CRD (and with it every APIKey), the roles and the policies.
	$(KUBECTL) delete --ignore-not-found -k config/admission
	$(KUBECTL) delete --ignore-not-found -k config/access
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator with config/default and image IMG.
	hack/kustomize-image.sh $(KUSTOMIZE) $(IMG) default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove what deploy created.
	hack/kustomize-image.sh $(KUSTOMIZE) $(IMG) default | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: build-installer
build-installer: manifests kustomize ## Write dist/install.yaml: the whole operator in one manifest, with image IMG.
	mkdir -p dist
	hack/kustomize-image.sh $(KUSTOMIZE) $(IMG) default > dist/install.yaml

##@ Tools

.PHONY: controlplane
controlplane: ## Build kube-apiserver, etcd and kubectl from Go modules into bin/k8s (cached).
	@if [ "$(KUBEBUILDER_ASSETS)" = "$(CONTROLPLANE_DIR)" ]; then hack/controlplane.sh "$(CONTROLPLANE_DIR)"; fi

.PHONY: nginx
nginx: ## Install Debian's nginx (the gateway test's) when missing, as root; otherwise say in one line what to install.
	@hack/need-packages.sh "the gateway test (make test)" nginx=nginx

.PHONY: kustomize helm
kustomize: $(KUSTOMIZE) ## Build kustomize from the Go module proxy into bin/.
$(KUSTOMIZE):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
helm: $(HELM) ## Build helm from the Go module proxy into bin/.
$(HELM):
	GOBIN=$(LOCALBIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Build golangci-lint from the Go module proxy into bin/.
$(GOLANGCI_LINT):
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: openapi-gen
openapi-gen: $(OPENAPI_GEN) ## Build openapi-gen from the Go module proxy into bin/.
$(OPENAPI_GEN):
	GOBIN=$(LOCALBIN) go install k8s.io/kube-openapi/cmd/openapi-gen@$(KUBE_OPENAPI_VERSION)

.PHONY: controller-gen

controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
