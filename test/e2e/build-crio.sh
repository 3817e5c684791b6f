#!/bin/bash
# Build CRI-O (crio, cgo + libseccomp) and pinns (static C) into $CACHE/bin,
# cached behind a version stamp: a warm run only checks. Debian 12 has no
# cri-o package, and crio is not `go install`able (pinns is C, and the go.mod
# names a go-criu the proxy does not serve): build a writable copy of the
# module. Runs with Debian's conmon and runc (installed here if missing).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
CRIO_VERSION=v1.35.2
GOCRIU=v8.3.0   # the proxy answers 403 for go-criu/v8@v8.1.0, which 1.35.2 requires
pkgs="libseccomp-dev gcc make libc6-dev pkg-config conmon runc"
have=" $(dpkg-query -W -f='${db:Status-Abbrev}${Package} ' $pkgs 2>/dev/null || true)"
need=()
for p in $pkgs; do [[ $have == *" ii $p "* ]] || need+=($p); done
if [ ${#need[@]} -gt 0 ]; then
  echo "build-crio: apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
stamp=$CACHE/bin/.crio-$CRIO_VERSION
[ -e "$stamp" ] && exit 0
echo "build-crio: building crio and pinns $CRIO_VERSION (5-8 min with cold caches on 2 cores)"
mkdir -p "$CACHE/bin"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
(cd /tmp && go mod download github.com/cri-o/cri-o@$CRIO_VERSION)
cp -r "$(go env GOMODCACHE)/github.com/cri-o/cri-o@$CRIO_VERSION/." "$src"
chmod -R u+w "$src"
cd "$src"
make -s -C pinns CC=gcc >/dev/null
install -m 755 bin/pinns "$CACHE/bin/pinns"
if grep -q 'checkpoint-restore/go-criu/v8 v8\.1\.0' go.mod; then
  go mod edit -require=github.com/checkpoint-restore/go-criu/v8@$GOCRIU
fi
# the Makefile's tags on Debian 12, minus gpgme (openpgp instead), btrfs and
# devicemapper (no headers needed); -mod=mod fills in go.sum for go-criu
CGO_ENABLED=1 GOFLAGS="-buildvcs=false -mod=mod" go build -trimpath \
  -tags "containers_image_ostree_stub containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper btrfs_noversion seccomp" \
  -ldflags "-s -w" -o "$CACHE/bin/crio" ./cmd/crio 2> >(grep -v '^go: downloading' >&2)
touch "$stamp"
