# api-access-injector. `make help` lists the targets.

# Images built by docker-build: the webhook (target injector) and the sidecar (target proxy).
IMG ?= api-access-injector/api-access-injector:dev
PROXY_IMG ?= api-access-injector/api-proxy:dev
# CONTAINER_TOOL builds the images (docker or podman).
CONTAINER_TOOL ?= docker
# VERSION is stamped into the binaries and recorded in every injected pod's status annotation.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# HELM_VERSION is the Helm CLI that `make helm` installs into bin/ (charts stay installable by Helm 3).
HELM_VERSION ?= v4.3.1
# PROMTOOL_VERSION is the Prometheus module whose promtool `make promtool` installs into bin/, to
# check the chart's alert rules (prometheus/prometheus tags v3.X.Y as module version v0.3XX.Y).
PROMTOOL_VERSION ?= v0.316.0
# GOLANGCI_LINT_VERSION is the golangci-lint that `make lint` installs into bin/ (.golangci.yml is
# in its configuration format, version 2).
GOLANGCI_LINT_VERSION ?= v2.15.0
# ENVTEST_K8S_VERSION is the Kubernetes version of the API server the tests run against (and of
# the node of make e2e): by default the release that matches k8s.io/api in go.mod, so go.mod is
# the one place it is written (hack/kube-version.sh; test/framework/testenv derives it the same way).
ENVTEST_K8S_VERSION ?= $(shell hack/kube-version.sh)
# Evaluated once, and seen by the scripts and Go tools that make runs.
ENVTEST_K8S_VERSION := $(ENVTEST_K8S_VERSION)
export ENVTEST_K8S_VERSION
# FUZZTIME, when set (e.g. 5m), overrides the budget of every fuzz target.
FUZZTIME ?=
# E2E_NODE_DIR holds the state of the one-node cluster of `make e2e` (certificates and images
# are kept between runs).
E2E_NODE_DIR ?= /tmp/api-access-injector-e2e
export E2E_NODE_DIR

LDFLAGS := -s -w -X github.com/api-access-injector/api-access-injector/internal/version.Version=$(VERSION)
LOCALBIN ?= $(CURDIR)/bin
HELM ?= $(LOCALBIN)/helm
PROMTOOL ?= $(LOCALBIN)/promtool
# Named with its version, so that changing GOLANGCI_LINT_VERSION installs that one.
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# Where the envtest binaries are; provisioned by `make envtest`, outside the clone.
ENVTEST_ASSETS = $(shell ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/setup-envtest.sh)

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: verify
verify: ## Fail if code is not gofmt-clean or go.mod/go.sum are not tidy.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed on: $$out"; exit 1; fi
	go mod tidy -diff

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml), the real-cluster suites behind their build tags included.
	$(GOLANGCI_LINT) run ./...

.PHONY: test
test: verify vet lint envtest helm promtool clients ## Run every test: unit, envtest end-to-end, chart, and each fuzz target briefly.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" HELM="$(HELM)" PROMTOOL="$(PROMTOOL)" go test -race -count=1 ./...
	$(MAKE) --no-print-directory fuzz

# Each fuzz target runs a fixed number of executions (about ten seconds on 2 cores), not a
# duration: with Go 1.26 a duration can end in a spurious "context deadline exceeded" when
# time runs out (https://go.dev/issue/75804), while a count has no deadline to race.
.PHONY: fuzz
fuzz: ## Fuzz each target briefly (a fixed count of executions; FUZZTIME=5m to go longer).
	go test ./injector -run '^$$' -fuzz '^FuzzParseOptions$$' -fuzztime $(or $(FUZZTIME),30000x)
	go test ./injector -run '^$$' -fuzz '^FuzzResourceOverrides$$' -fuzztime $(or $(FUZZTIME),3000x)
	go test ./webhook -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(or $(FUZZTIME),5000x)
	go test ./injector/patch -run '^$$' -fuzz '^FuzzDiff$$' -fuzztime $(or $(FUZZTIME),300000x)
	go test ./internal/manifest -run '^$$' -fuzz '^FuzzInject$$' -fuzztime $(or $(FUZZTIME),3000x)
	go test ./internal/manifest -run '^$$' -fuzz '^FuzzLayouts$$' -fuzztime $(or $(FUZZTIME),200x)
	go test ./proxy -run '^$$' -fuzz '^FuzzFilterCheck$$' -fuzztime $(or $(FUZZTIME),30000x)
	go test ./proxy -run '^$$' -fuzz '^FuzzParseAuthority$$' -fuzztime $(or $(FUZZTIME),20000x)
	go test ./proxy -run '^$$' -fuzz '^FuzzRequestInfo$$' -fuzztime $(or $(FUZZTIME),30000x)
	go test ./proxy -run '^$$' -fuzz '^FuzzTupleKey$$' -fuzztime $(or $(FUZZTIME),30000x)
	go test ./internal/accessrecord -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(or $(FUZZTIME),20000x)
	go test ./internal/rbac -run '^$$' -fuzz '^FuzzSuggest$$' -fuzztime $(or $(FUZZTIME),20000x)

.PHONY: bench
bench: ## Run the Go benchmarks with allocation counts (injector, patch path, admission handler against the null webhook, proxy handler).
	go test -run '^$$' -bench . -benchmem ./injector ./injector/patch ./webhook ./proxy

# LOAD_FLAGS are extra flags of hack/webhookload, e.g. -baseline=OTHER-BINARY -rounds=5 -duration=20s.
LOAD_FLAGS ?=

.PHONY: load
load: build ## Load the webhook with AdmissionReviews over TLS against the null webhook, same run; reports the ratios of the goals.
	go run ./hack/webhookload $(LOAD_FLAGS)

.PHONY: proxymem
proxymem: envtest ## Measure api-proxy's peak memory under bursts of large writes (BASELINE=<commit> measures that build too).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/proxymem $(if $(BASELINE),-baseline-ref $(BASELINE))

.PHONY: demo
demo: build envtest ## Run the whole path locally, no cluster: API server, webhook, an injected pod, its sidecar, an app.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/demo --bin-dir $(LOCALBIN)

##@ Real cluster (root; changes host networking, mounts and cgroups: CI and throwaway machines only)

.PHONY: e2e
e2e: e2e-vet e2e-provision e2e-images helm clients ## The chart on a real one-node cluster (built here, torn down after), real images and pods.
	HELM="$(HELM)" hack/e2e/run.sh

.PHONY: e2e-soak
e2e-soak: e2e-provision e2e-images helm ## 12 minutes of API calls through the proxy while the kubelet refreshes a 600 s token (not in CI).
	HELM="$(HELM)" E2E_GO_TEST_TAGS=realcluster,soak E2E_GO_TEST_RUN='^TestSoak$$' hack/e2e/run.sh

.PHONY: e2e-vet
e2e-vet: ## go vet the suites behind build tags (realcluster, soak), which go vet ./... does not see.
	go vet -tags realcluster,soak ./test/realcluster/...

.PHONY: e2e-provision
e2e-provision: envtest ## Debian packages (containerd, runc, CNI plugins, nftables...) and kubelet, controller-manager, scheduler, kube-proxy, cached outside the clone.
	@ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/e2e/provision.sh >/dev/null

.PHONY: e2e-images
e2e-images: build envtest ## The images of make e2e, without Docker: webhook, sidecar, test app, kubectl, pause.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(LOCALBIN)/e2e-app ./test/realcluster/app
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(LOCALBIN)/pause ./hack/e2e/pause
	go run ./hack/imgbuild -bin-dir $(LOCALBIN) -kubectl "$(ENVTEST_ASSETS)/kubectl" -out $(E2E_NODE_DIR)/images

.PHONY: e2e-up
e2e-up: e2e-provision e2e-images clients ## Bring the one-node cluster up and leave it running (development); prints its kubeconfig.
	hack/e2e/up.sh

.PHONY: e2e-test
e2e-test: helm ## Run the test/realcluster suite against the cluster of make e2e-up (E2E_GO_TEST_RUN=pattern).
	KUBECONFIG=$(E2E_NODE_DIR)/pki/admin.kubeconfig HELM="$(HELM)" go test -tags realcluster -count=1 -v -timeout 30m $(if $(E2E_GO_TEST_RUN),-run '$(E2E_GO_TEST_RUN)') ./test/realcluster/

.PHONY: e2e-down
e2e-down: ## Tear the cluster of make e2e-up down and restore the host.
	hack/e2e/down.sh

##@ Build

.PHONY: build
build: ## Build the api-access-injector, api-proxy and kubectl-apiaccess binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/api-access-injector ./cmd/api-access-injector
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/api-proxy ./cmd/api-proxy
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/kubectl-apiaccess ./cmd/kubectl-apiaccess

# DEV_CERT_DIR holds the development serving certificate that `make run` serves (see dev-cert).
DEV_CERT_DIR ?= $(LOCALBIN)/dev-certs

.PHONY: run
run: build dev-cert ## Run the webhook against the cluster of KUBECONFIG, serving a development certificate.
	$(LOCALBIN)/api-access-injector webhook --config config/injector/config.yaml --log-console --cert-dir $(DEV_CERT_DIR)

.PHONY: dev-cert
dev-cert: ## Make a development CA and a serving certificate for localhost in DEV_CERT_DIR (kept while valid).
	go run ./hack/devcert --dir $(DEV_CERT_DIR)

.PHONY: docker-build
docker-build: ## Build the webhook image (IMG) and the sidecar image (PROXY_IMG).
	$(CONTAINER_TOOL) build --target injector --build-arg VERSION=$(VERSION) -t $(IMG) .
	$(CONTAINER_TOOL) build --target proxy --build-arg VERSION=$(VERSION) -t $(PROXY_IMG) .

.PHONY: docker-push
docker-push: ## Push both images.
	$(CONTAINER_TOOL) push $(IMG)
	$(CONTAINER_TOOL) push $(PROXY_IMG)

##@ Deployment

.PHONY: deploy
deploy: ## Apply config/default with kubectl (bring your own serving certificate; see config/default/deployment.yaml).
	kubectl apply -k config/default

.PHONY: undeploy
undeploy: ## Delete what deploy applied.
	kubectl delete --ignore-not-found -k config/default

##@ Dependencies

.PHONY: helm
helm: $(HELM) ## Install the Helm CLI (HELM_VERSION) into bin/, built once per machine from the Go module proxy.
$(HELM):
	hack/install-tool.sh $(HELM) helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Install golangci-lint (GOLANGCI_LINT_VERSION) into bin/, built once per machine from the Go module proxy.
$(GOLANGCI_LINT):
	hack/install-tool.sh $(GOLANGCI_LINT) github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: promtool
promtool: $(PROMTOOL) ## Install promtool (PROMTOOL_VERSION) into bin/, built once per machine from the Go module proxy, to check the chart's alerts.
$(PROMTOOL):
	hack/install-tool.sh $(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

# The real in-cluster clients that the transparent-mode test runs (test/framework/materialize):
# Debian's python3-kubernetes, and curl for the docs' recipe. Installed with apt-get, as root
# or through sudo.
.PHONY: clients
clients: ## Install Debian's python3-kubernetes and curl, run by the transparent-mode test as real in-cluster clients.
	@/usr/bin/python3 -c 'import kubernetes' 2>/dev/null && command -v curl >/dev/null || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq python3-kubernetes curl; }

.PHONY: envtest
envtest: ## Provision kube-apiserver, etcd and kubectl for ENVTEST_K8S_VERSION, cached outside the clone.
	@ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/setup-envtest.sh >/dev/null
