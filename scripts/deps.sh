#!/bin/bash
# Install what building, testing and the demo need on Debian 12 (root).
# Idempotent: installs only what is missing.
set -euo pipefail
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
command -v go >/dev/null || { echo "deps: Go is not installed (https://go.dev/doc/install)"; exit 1; }
# bpffs, where attachments are pinned
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf
# staticcheck for make lint, built once per version
STATICCHECK_VERSION=v0.8.2
TOOLS=/var/cache/nriguard-e2e/bin
if [ ! -e "$TOOLS/.staticcheck-$STATICCHECK_VERSION" ]; then
  echo "deps: building staticcheck $STATICCHECK_VERSION (about a minute with cold caches)"
  mkdir -p "$TOOLS"
  (cd /tmp && GOBIN=$TOOLS GOFLAGS=-buildvcs=false go install honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION)
  touch "$TOOLS/.staticcheck-$STATICCHECK_VERSION"
fi
