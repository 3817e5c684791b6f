#!/bin/bash
# Install what building, testing and the demo need on Debian 12 (root).
# Idempotent: installs only what is missing.
# Usage: deps.sh [all|demo]
#   all   (make deps) Debian's packages for generate, lint, bench and the
#         tests, bpffs, staticcheck
#   demo  (make demo) Go and bpffs only: test/e2e/setup.sh demo provisions
#         the rest of what the demo runs
set -euo pipefail
WHAT=${1:-all}
case $WHAT in demo|all) ;; *) echo "usage: deps.sh [all|demo]" >&2; exit 2 ;; esac
command -v go >/dev/null || { echo "deps: Go is not installed (https://go.dev/doc/install)"; exit 1; }
if [ "$WHAT" = all ]; then
  pkgs=(clang llvm libbpf-dev iproute2 busybox-static bpftool nftables iptables ipset)
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
# bpffs, where attachments are pinned
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf
[ "$WHAT" = all ] || exit 0
# staticcheck for make lint, built once per version (in $CACHE, as the e2e's tools)
STATICCHECK_VERSION=v0.8.2
TOOLS=${CACHE:-/var/cache/nriguard-e2e}/bin
if [ ! -e "$TOOLS/.staticcheck-$STATICCHECK_VERSION" ]; then
  echo "deps: building staticcheck $STATICCHECK_VERSION (about a minute with cold caches)"
  mkdir -p "$TOOLS"
  (cd /tmp && GOBIN=$TOOLS GOFLAGS=-buildvcs=false go install honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION) 2> >(grep -v '^go: downloading' >&2)
  touch "$TOOLS/.staticcheck-$STATICCHECK_VERSION"
fi
