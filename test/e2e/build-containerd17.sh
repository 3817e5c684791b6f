#!/bin/bash
# Build containerd 1.7 (containerd, ctr, containerd-shim-runc-v2) into
# $CACHE/c17/bin, apart from the 2.x binaries of the same names in $CACHE/bin
# (put $CACHE/c17/bin first in PATH when running 1.7: containerd looks its
# shim up in PATH). Cached behind a version stamp: a warm run does nothing.
# `go install .../cmd/containerd@v1.7.x` refuses (exclude directives in its
# go.mod): build a writable copy of the module instead.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
C17_VERSION=v1.7.35
bin=$CACHE/c17/bin
stamp=$bin/.containerd-$C17_VERSION
[ -e "$stamp" ] && exit 0
echo "build-containerd17: building containerd $C17_VERSION (3-5 min with cold caches on 2 cores)"
mkdir -p "$bin"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
(cd /tmp && go mod download github.com/containerd/containerd@$C17_VERSION)
cp -r "$(go env GOMODCACHE)/github.com/containerd/containerd@$C17_VERSION/." "$src"
chmod -R u+w "$src"
cd "$src"
GOFLAGS=-buildvcs=false go build -trimpath \
  -ldflags "-s -w -X github.com/containerd/containerd/version.Version=$C17_VERSION" \
  -o "$bin/" ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2 2> >(grep -v '^go: downloading' >&2)
touch "$stamp"
