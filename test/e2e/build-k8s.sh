#!/bin/bash
# Build Kubernetes (kubelet, kube-apiserver, kubectl, kube-scheduler,
# kube-controller-manager) into $CACHE/k8s/bin, cached behind a version
# stamp: a warm run does nothing.
# `go install k8s.io/kubernetes/cmd/kubelet@v` refuses (go.mod replaces the
# k8s.io/* staging modules with ./staging/..., which the module zip lacks):
# build a writable copy of the module with those replaces turned into
# requirements on the published staging modules (v1.X.Y -> v0.X.Y).
# Scheduler and controller-manager cost little once the kubelet and API
# server are built (about 2 min more on 2 cores, 140 CPU-s), so a DaemonSet
# can be tested as the cluster runs it, not only as a static pod.
# --background: start the build detached and return (make test starts it
# before the unit tests and vmtest, which leave a core idle); a later call
# waits for it on the lock, then finds the stamp.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
K8S_VERSION=v1.37.2
K8S_CMDS="kubelet kube-apiserver kubectl kube-scheduler kube-controller-manager"
staging=v0.${K8S_VERSION#v1.}
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
bin=$CACHE/k8s/bin
stamp=$bin/.k8s-$K8S_VERSION
[ -e "$stamp" ] && exit 0
mkdir -p "$bin"
if [ "${1:-}" = --background ]; then
  echo "build-k8s: building in the background (log: $CACHE/k8s/build.log)"
  # niced: it should take the CPU the tests leave idle, not theirs
  setsid nohup nice -n 19 "$0" > "$CACHE/k8s/build.log" 2>&1 < /dev/null &
  exit 0
fi
exec 9> "$CACHE/k8s/.lock"
if ! flock -n 9; then
  echo "build-k8s: waiting for the build already running (log: $CACHE/k8s/build.log)"
  flock 9
fi
[ -e "$stamp" ] && exit 0
[ -s "$CACHE/k8s/build.log" ] && { echo "build-k8s: the background build did not finish; its log ends:"; tail -5 "$CACHE/k8s/build.log"; }
echo "build-k8s: building $K8S_CMDS $K8S_VERSION (15-20 min with cold caches on 2 cores)"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
(cd /tmp && go mod download k8s.io/kubernetes@$K8S_VERSION)
cp -r "$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/." "$src"
chmod -R u+w "$src"
cd "$src"
rm -f go.work go.work.sum
edits=()
for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' go.mod); do
  edits+=(-dropreplace=$m -require=$m@$staging)
done
go mod edit "${edits[@]}"
# the version as hack/lib/version.sh stamps it, or the binaries say v0.0.0
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
pkgs=(); for c in $K8S_CMDS; do pkgs+=(./cmd/$c); done
# -mod=mod: let go fill in go.sum for the published staging modules
GOWORK=off GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0 go build -trimpath \
  -ldflags "$ldflags" -o "$bin/" "${pkgs[@]}" 2> >(grep -v '^go: downloading' >&2)
touch "$stamp"
