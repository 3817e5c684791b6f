#!/bin/bash
# Build the helm command from its Go module into /var/cache/nriguard-e2e/bin,
# once per version (a stamp beside it, as scripts/deps.sh does for
# staticcheck): `make manifests` and `make lint` render the chart
# (install/helm/nriguard) with it, and the e2e installs the chart with it
# (test/e2e/k8s.sh). Measured: 233 s on 2 cores (240 CPU-s) with the module
# cache warm and nothing of helm's in the build cache; the Kubernetes build's
# packages are not reused (other versions of shared dependencies). Prints
# nothing when cached.
set -euo pipefail
HELM_VERSION=v4.3.2
TOOLS=${CACHE:-/var/cache/nriguard-e2e}/bin
stamp=$TOOLS/.helm-$HELM_VERSION
[ -e "$stamp" ] && [ -x "$TOOLS/helm" ] && exit 0
mkdir -p "$TOOLS"
if [ "${1:-}" = --background ]; then
  # (make test: niced, beside the unit tests; make lint waits on the lock)
  echo "build-helm: building in the background (log: $TOOLS/.helm-build.log)"
  setsid nohup nice -n 19 "$0" > "$TOOLS/.helm-build.log" 2>&1 < /dev/null &
  sleep 0.2 # (it takes the lock before anyone waits on it)
  exit 0
fi
exec 9> "$TOOLS/.helm.lock"   # one build at a time (make lint and the e2e's setup may race)
if ! flock -n 9; then
  echo "build-helm: waiting for the build already running (log: $TOOLS/.helm-build.log)"
  flock 9
fi
[ -e "$stamp" ] && [ -x "$TOOLS/helm" ] && exit 0
echo "build-helm: building helm $HELM_VERSION from helm.sh/helm/v4 (a few minutes with cold Go caches)"
# static, and the version as helm's Makefile sets it (else it says v4.3)
(cd /tmp && GOBIN=$TOOLS GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
  helm.sh/helm/v4/cmd/helm@$HELM_VERSION 2> >(grep -v '^go: downloading' >&2))
rm -f "$TOOLS"/.helm-v*
touch "$stamp"
