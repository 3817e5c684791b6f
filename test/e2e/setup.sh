#!/bin/bash
# Provision on a fresh Debian 12 (root) what the demo or the e2e needs, the
# built tools cached in $CACHE behind version stamps: a warm run only checks.
# Usage: setup.sh [demo|all]
#   demo  Debian's runc; containerd, ctr and its shim, and crictl built from
#         their Go modules; nriguard; the images
#   all   (the e2e, make test) that, and podman, etcd, nerdctl, CRI-O,
#         containerd 1.7, Kubernetes, the e2e's probe and scraper
# One line per step, saying what it waits for. A build's output (and Go's
# "go: downloading" lines) goes to a log, shown only when the build fails;
# a failed step ends the run with one line naming it. SETUP_PREFIX: what
# the progress lines start with ("setup: ").
set -euo pipefail
. "$(dirname "$0")/lib.sh"
WHAT=${1:-all}
case $WHAT in demo|all) ;; *) echo "usage: setup.sh [demo|all]" >&2; exit 2 ;; esac
t0=$(now)
P=${SETUP_PREFIX-setup: }
mkdir -p "$CACHE/bin" "$CACHE/logs" "$E2E/bin"
command -v go >/dev/null || { echo "setup: failed: Go is not installed (https://go.dev/doc/install)"; exit 1; }

secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }   # since $1
# step NAME TEXT HINT COMMAND...: "TEXT (HINT)... done (N s)", COMMAND's
# output in $CACHE/logs/NAME.log; when it fails, that log's last lines
# (without Go's download lines), one line naming the step, and the run ends.
step() {
  local log=$CACHE/logs/$1.log text=$2 hint=$3 t; t=$(now); shift 3
  printf '%s%s%s... ' "$P" "$text" "${hint:+ ($hint)}"
  if "$@" > "$log" 2>&1; then
    echo "done ($(secs "$t") s)"
    return
  fi
  echo "failed after $(secs "$t") s; the end of its output:"
  grep -v '^go: downloading' "$log" | tail -20 | sed 's/^/  | /'
  echo "setup: failed: $text (its whole output: $log)"
  exit 1
}
CACHED=()   # what was already there, said on one line
# stamped NAME: is NAME (a tool at a version) built? If so, say it is cached.
stamped() { [ -e "$CACHE/bin/.$1" ] && CACHED+=("${1/-/ }"); }

# apt_install PACKAGES...: install those of Debian's packages that are missing
apt_install() {
  local need=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  step apt "installing ${need[*]} from Debian" "apt-get" \
    sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"' sh "${need[@]}"
}

# go_install MODULE/CMD... @VERSION: build into $CACHE/bin, from a neutral
# directory (not this module)
go_install() {
  local v=$1; shift
  local pkgs=() p
  for p in "$@"; do pkgs+=("$p@$v"); done
  (cd /tmp && GOBIN=$CACHE/bin GOFLAGS=-buildvcs=false go install "${pkgs[@]}")
}

build_containerd() {
  stamped containerd-$CONTAINERD_VERSION && return
  step containerd "building containerd $CONTAINERD_VERSION (containerd, ctr, its runc shim) from its Go module" \
    "80 s with cold Go caches on 2 idle cores, 3-4 min on busy ones" \
    go_install $CONTAINERD_VERSION github.com/containerd/containerd/v2/cmd/{containerd,ctr,containerd-shim-runc-v2}
  touch "$CACHE/bin/.containerd-$CONTAINERD_VERSION"
}

build_crictl() {
  stamped crictl-$CRICTL_VERSION && return
  step crictl "building crictl $CRICTL_VERSION from its Go module" "25 s cold on idle cores, up to a minute on busy ones" \
    go_install $CRICTL_VERSION sigs.k8s.io/cri-tools/cmd/crictl
  touch "$CACHE/bin/.crictl-$CRICTL_VERSION"
}

# "go install nerdctl@v" fails (a replace in its go.mod points at a directory
# the module zip lacks): build a copy of the module without that test helper
# (step runs it as an if's condition, where set -e does not apply: hence &&)
nerdctl_build() {
  local src rc
  (cd /tmp && go mod download github.com/containerd/nerdctl/v2@$NERDCTL_VERSION) || return
  src=$(mktemp -d)
  cp -r "$(go env GOMODCACHE)/github.com/containerd/nerdctl/v2@$NERDCTL_VERSION/." "$src" &&
    chmod -R u+w "$src" &&
    rm -f "$src/cmd/nerdctl/helpers/testing_linux.go" &&
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -o "$CACHE/bin/nerdctl" ./cmd/nerdctl)
  rc=$?
  rm -rf "$src"
  return $rc
}
build_nerdctl() {
  stamped nerdctl-$NERDCTL_VERSION && return
  step nerdctl "building nerdctl $NERDCTL_VERSION from a copy of its Go module" "about 50 s cold" nerdctl_build
  touch "$CACHE/bin/.nerdctl-$NERDCTL_VERSION"
}

# CRI-O, containerd 1.7 and Kubernetes: each its own script, which says what
# it builds (minutes) and keeps its stamp
run_script() {
  "$REPO/test/e2e/$1" || { echo "setup: failed: test/e2e/$1"; exit 1; }
}

nriguard_build() {
  (cd "$REPO" && CGO_ENABLED=0 go build -o "$NG" ./cmd/nriguard) || return
  [ "$WHAT" = demo ] && return
  (cd "$REPO" && CGO_ENABLED=0 go build -o "$E2E/bin/ngprobe" ./test/ngprobe &&
    go build -o "$E2E/bin/promscrape" ./test/promscrape)
}
build_nriguard() {
  local what="nriguard"
  [ "$WHAT" = all ] && what="nriguard, the e2e's probe and scraper"
  step nriguard "building $what from this checkout" "under a minute with cold Go caches, seconds warm" nriguard_build
}

# the images (a tenth of a second): made again every time, with this ngprobe
make_images() {
  local probe=
  [ "$WHAT" = all ] && probe=$E2E/bin/ngprobe
  step images "making the images from Debian's busybox" "a second" \
    env NGPROBE="$probe" "$REPO/test/e2e/mkimage.sh" "$E2E/images.tar" "$E2E/busybox.tar"
}

if [ "$WHAT" = demo ]; then
  apt_install runc busybox-static jq bpftool
  build_containerd
  build_crictl
else
  apt_install runc busybox-static jq iproute2 bpftool podman conmon etcd-server openssl curl
  build_containerd
  build_crictl
  build_nerdctl
  run_script build-crio.sh
  run_script build-containerd17.sh
  run_script build-k8s.sh
  "$REPO/scripts/build-helm.sh" || { echo "setup: failed: scripts/build-helm.sh"; exit 1; } # installs the chart on that node
fi
[ ${#CACHED[@]} -eq 0 ] || echo "${P}already built (in $CACHE/bin): ${CACHED[*]}"
build_nriguard
make_images
echo "${P}ready in $(secs "$t0") s"
