# nriguard. Everything runs as root on Debian 12; `make deps` installs what is missing.
GO ?= go
export CGO_ENABLED = 0

.PHONY: all build install deps helm manifests generate check-generated lint vet unit unit-nonroot fuzz vmtest e2e k8s-prebuild test bench demo demo-run clean

# Tools the build installs itself, cached with a version stamp (scripts/deps.sh,
# test/e2e/setup.sh); CACHE=DIR puts them elsewhere (an empty DIR: a cold run).
CACHE ?= /var/cache/nriguard-e2e
export CACHE
TOOLS := $(CACHE)/bin

all: build

build:
	$(GO) build -o bin/nriguard ./cmd/nriguard

install: build
	@install/install.sh

deps:
	@scripts/deps.sh

# helm, built from its Go module and cached with a version stamp (scripts/build-helm.sh).
helm:
	@scripts/build-helm.sh

# install/kubernetes/daemonset.yaml: the Helm chart (install/helm/nriguard) rendered with its defaults.
manifests:
	@scripts/manifests.sh

# Rebuild the BPF objects and their Go bindings (needs clang; the results are committed).
generate: deps
	$(GO) generate ./bpf/...

# CI: the committed objects must be what the C sources compile to.
check-generated: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf/: generated files are stale: run 'make generate' and commit"; exit 1; }

# No build outputs committed; gofmt, go vet and staticcheck clean; the
# manifest in install/kubernetes/ is what the chart renders.
lint: deps vet
	@scripts/check-tree.sh
	@scripts/manifests.sh --check
	$(TOOLS)/staticcheck ./...

vet:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# Unit tests, kernel tests (real programs, cgroups, sockets) and the fuzz seeds.
unit:
	$(GO) test -count=1 -p 1 ./...   # one package at a time: they share the kernel (program lists, cgroups, pins)

# The tests as an unprivileged user: those that need root skip, saying why.
unit-nonroot:
	@scripts/unit-nonroot.sh

fuzz:
	$(GO) test ./policy -run '^$$' -fuzz FuzzParseEgress -fuzztime $${FUZZTIME:-60s}
	$(GO) test ./policy -run '^$$' -fuzz FuzzParseExec -fuzztime $${FUZZTIME:-60s}
	$(GO) test ./dnsanswer -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-60s}

# The kernel suite (bpf/) under qemu in Debian's 5.10, 6.1 and 6.12 kernels, with BPF LSM (which
# this kernel refuses) and without (docs/kernels.md).
vmtest: deps
	@scripts/vmtest.sh

# A private containerd 2.x + NRI + runc + crictl with real containers (test/e2e/).
e2e: deps
	@test/e2e/run.sh all

# The Kubernetes build for the e2e (1,754 CPU-s with cold caches) and helm's
# (240) run in the background beside the tests before them; make lint and
# the e2e's setup wait for them.
k8s-prebuild:
	@scripts/build-helm.sh --background
	@test/e2e/build-k8s.sh --background

# (fuzzing by count, not by time: go1.26's fuzzer can fail a target with
# "context deadline exceeded" as a -fuzztime duration ends, golang/go#75804;
# it did here once, in a cold run; 300,000 inputs take 5-10 s a target)
test: deps k8s-prebuild check-generated vet unit unit-nonroot vmtest lint e2e
	$(MAKE) fuzz FUZZTIME=300000x

bench: deps
	$(GO) run ./test/bench

# nriguard guarding a real containerd: a labelled pod, allowed/denied traffic, a denied exec, teardown.
# Provisions only what it runs (test/e2e/setup.sh demo): runc, containerd, crictl, nriguard, images.
demo:
	@scripts/deps.sh demo
	@test/e2e/demo.sh

# The standalone mode: nriguard run on one command.
demo-run: deps build
	@scripts/demo-run.sh

clean:
	rm -rf bin
