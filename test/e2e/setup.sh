#!/bin/bash
# Provision what the e2e needs on a fresh Debian 12 (root), cached:
# apt packages, containerd + ctr + shim and crictl built with go install,
# nriguard, and the images. A warm run does nothing but check.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t0=$(now)
mkdir -p "$CACHE/bin" "$E2E/bin"
need=()
for p in runc busybox-static jq iproute2 bpftool podman conmon etcd-server openssl curl; do
  dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "install ok installed" || need+=($p)
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
stamp=$CACHE/bin/.containerd-$CONTAINERD_VERSION
if [ ! -e "$stamp" ]; then
  echo "setup: building containerd $CONTAINERD_VERSION (about 80 s with cold caches)"
  (cd /tmp && GOBIN=$CACHE/bin GOFLAGS=-buildvcs=false go install \
    github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION \
    github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION)
  touch "$stamp"
fi
stamp=$CACHE/bin/.crictl-$CRICTL_VERSION
if [ ! -e "$stamp" ]; then
  echo "setup: building crictl $CRICTL_VERSION"
  (cd /tmp && GOBIN=$CACHE/bin GOFLAGS=-buildvcs=false go install sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION)
  touch "$stamp"
fi
stamp=$CACHE/bin/.nerdctl-$NERDCTL_VERSION
if [ ! -e "$stamp" ]; then
  # "go install nerdctl@v" fails (a replace in its go.mod points at a directory
  # the module zip lacks): build a copy of the module without that test helper
  echo "setup: building nerdctl $NERDCTL_VERSION (about 50 s with cold caches)"
  (cd /tmp && go mod download github.com/containerd/nerdctl/v2@$NERDCTL_VERSION)
  src=$(mktemp -d)
  cp -r "$(go env GOMODCACHE)/github.com/containerd/nerdctl/v2@$NERDCTL_VERSION/." "$src"
  chmod -R u+w "$src"
  rm -f "$src/cmd/nerdctl/helpers/testing_linux.go"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -o "$CACHE/bin/nerdctl" ./cmd/nerdctl)
  rm -rf "$src"
  touch "$stamp"
fi
# CRI-O and containerd 1.7, for the runtimes on the hook path (cached)
"$REPO/test/e2e/build-crio.sh"
"$REPO/test/e2e/build-containerd17.sh"
# Kubernetes (kubelet, API server, scheduler, controller-manager, kubectl), cached
"$REPO/test/e2e/build-k8s.sh"
# helm, which installs nriguard's chart on that node, cached
"$REPO/scripts/build-helm.sh"
(cd "$REPO" && CGO_ENABLED=0 go build -o "$NG" ./cmd/nriguard && CGO_ENABLED=0 go build -o "$E2E/bin/ngprobe" ./test/ngprobe && go build -o "$E2E/bin/promscrape" ./test/promscrape)
# the images (a tenth of a second): made again every time, with this ngprobe
NGPROBE=$E2E/bin/ngprobe "$REPO/test/e2e/mkimage.sh" "$E2E/images.tar" "$E2E/busybox.tar"
printf 'setup: ready in %.1fs\n' "$(echo "$(now) - $t0" | bc)"
