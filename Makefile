# pvnfs: a CSI driver giving every ReadWriteMany volume its own NFS server.
# `make help` lists the targets.

SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/pvnfs/pvnfs/pkg/version.Version=$(VERSION)
BIN := bin
TOOLS := test/tools/install.sh
# Where install.sh keeps the tools it builds (outside the repository, reused by
# every clone on this machine).
export PVNFS_TOOLS_DIR ?= $(HOME)/.cache/pvnfs/tools
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(PVNFS_TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
# The whole suite must stay within CI's 90 minutes on 2 cores.
TEST_TIMEOUT ?= 60m

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# Flags for the demo program, e.g. DEMO_ARGS="--replicas=9" or "--keep-running=false".
DEMO_ARGS ?=

.PHONY: demo
demo: ## Run the demo (root): a local control plane, the driver and WordPress on 3 simulated nodes sharing one RWX volume; Ctrl-C or `make demo-down` removes everything.
	bash $(TOOLS) apt kube kwok provisioner
	$(GO) build -o $(BIN)/pvnfs-demo ./test/demo/cmd/pvnfs-demo
	$(BIN)/pvnfs-demo $(DEMO_ARGS)

.PHONY: demo-down
demo-down: ## Stop a demo running in another shell, or clean up after one that was killed (processes, mounts, etcd data, demo-state/).
	$(GO) build -o $(BIN)/pvnfs-demo ./test/demo/cmd/pvnfs-demo
	$(BIN)/pvnfs-demo --down

.PHONY: build
build: ## Build pvnfs-csi and pvnfs-server into bin/.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

.PHONY: tools
tools: ## Install what the tests need: Debian packages, the Kubernetes control plane, kwok, csi-provisioner, csi-snapshotter with the snapshot-controller and CRDs, helm.
	bash $(TOOLS) all

.PHONY: test
test: tools verify ## Run every check CI runs: gofmt, vet, staticcheck, then unit, fuzz seeds, control plane, csi-sanity, mounts, NFS-Ganesha, the VM lab's real-kernel NFS, demo end to end.
	PVNFS_REQUIRE_ALL=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	@# pvnfs-csi's NFS stand-in flag exists only in test builds (tag pvnfs_standin).
	$(GO) test -count=1 -tags pvnfs_standin ./cmd/pvnfs-csi/

# A -test.run pattern for the VM lab's guest tests, e.g. VMLAB_RUN=TestNodeOutage.
VMLAB_RUN ?=

.PHONY: vmlab
vmlab: ## Run only the VM lab (root): the server and node tests on a real kernel under qemu (docs/vmlab.md); VMLAB_RUN=<pattern> runs some.
	bash $(TOOLS) vmlab
	PVNFS_REQUIRE_ALL=1 PVNFS_VMLAB_RUN='$(VMLAB_RUN)' $(GO) test -count=1 -timeout 40m -v -run TestKernelNFS ./test/vmlab/

.PHONY: test-unit
test-unit: ## Run only the tests that need no root, mounts or control plane (they skip).
	$(GO) test -count=1 -short ./...

.PHONY: verify
verify: $(STATICCHECK) ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@# The VM lab's guest tests build only with the vmlab tag: check them too.
	$(GO) vet -tags vmlab ./test/vmlab/...
	$(STATICCHECK) -tags vmlab ./test/vmlab/...
	@# So does pvnfs-csi's test build with the NFS stand-in (test/simnode builds it).
	$(GO) vet -tags pvnfs_standin ./cmd/pvnfs-csi/
	$(STATICCHECK) -tags pvnfs_standin ./cmd/pvnfs-csi/
	@# No test code in the binaries that ship (test/binaries checks the built files).
	@bad=$$($(GO) list -deps ./cmd/... | grep -E '^github.com/pvnfs/pvnfs/(test/|.*test$$)' || true); \
	  if [ -n "$$bad" ]; then echo "production binaries depend on test packages:"; echo "$$bad"; exit 1; fi

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: bench
bench: ## Measure provisioning, deletion, mount fan-out and footprint against the local control plane (root, ~10 min) and rewrite docs/benchmarks.md.
	bash $(TOOLS) apt kube kwok provisioner
	$(GO) run ./test/bench -out docs/benchmarks.md

.PHONY: bench-micro
bench-micro: ## Go benchmarks of single paths: CreateVolume on the control plane, NodePublish fan-out, PVC to Bound through the chart's sidecars, snapshot to ready and restore to Bound, NFS-Ganesha start and restart.
	bash $(TOOLS) all
	PVNFS_REQUIRE_ALL=1 $(GO) test -run '^$$' -bench ControlPlaneCreateVolume -benchtime 1x ./pkg/controller/
	PVNFS_REQUIRE_ALL=1 $(GO) test -run '^$$' -bench Fanout ./test/simnode/...
	PVNFS_REQUIRE_ALL=1 $(GO) test -run '^$$' -bench PVCToBound ./test/deploy/
	PVNFS_REQUIRE_ALL=1 $(GO) test -run '^$$' -bench ControlPlaneSnapshotRestore -benchtime 1x ./test/snapshots/
	PVNFS_REQUIRE_ALL=1 $(GO) test -run '^$$' -bench GaneshaStartToReady -benchtime 10x ./pkg/nfsserver/ganesha/
	PVNFS_REQUIRE_ALL=1 $(GO) test -run '^$$' -bench GaneshaRestartToWritable -benchtime 2x ./pkg/nfsserver/ganesha/

.PHONY: fuzz
fuzz: ## Fuzz the parsers of untrusted input for 30 s each.
	$(GO) test -run '^$$' -fuzz FuzzIDFromName -fuzztime 30s ./pkg/volume
	$(GO) test -run '^$$' -fuzz FuzzParseID -fuzztime 30s ./pkg/volume
	$(GO) test -run '^$$' -fuzz FuzzParseContext -fuzztime 30s ./pkg/volume
	$(GO) test -run '^$$' -fuzz FuzzSnapshotKeyFromName -fuzztime 30s ./pkg/volume
	$(GO) test -run '^$$' -fuzz FuzzParseSnapshotID -fuzztime 30s ./pkg/volume
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./pkg/parameters
	$(GO) test -run '^$$' -fuzz FuzzParametersToServer -fuzztime 30s ./pkg/serverconfig
	$(GO) test -run '^$$' -fuzz FuzzArgs -fuzztime 30s ./pkg/serverconfig

.PHONY: manifests
manifests: ## Regenerate deploy/kubernetes from the Helm chart (a test fails when they drift).
	bash deploy/generate.sh

.PHONY: chart-lint
chart-lint: ## helm lint --strict the chart in deploy/charts/pvnfs.
	bash $(TOOLS) helm
	. test/tools/versions.sh && "$$PVNFS_TOOLS_DIR/helm-$$HELM_VERSION/helm" lint --strict deploy/charts/pvnfs

IMAGE_REPO ?= pvnfs
.PHONY: images
images: ## Build the pvnfs-csi and pvnfs-server images (needs a container engine).
	docker build --target pvnfs-csi --build-arg VERSION=$(VERSION) -t $(IMAGE_REPO)/pvnfs-csi:$(VERSION) .
	docker build --target pvnfs-server --build-arg VERSION=$(VERSION) -t $(IMAGE_REPO)/pvnfs-server:$(VERSION) .

.PHONY: e2e-kind
e2e-kind: ## Run the real-cluster suite on a kind cluster (needs docker, kind, kubectl, helm and the kernel's NFS modules; test/e2e/README.md).
	$(GO) test -tags e2e -count=1 -v -timeout 60m ./test/e2e/...

.PHONY: clean
clean: ## Remove build output.
	rm -rf $(BIN)
