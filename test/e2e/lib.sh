# Sourced by the e2e scripts: where things live and small helpers.
# Everything private to the e2e lives under $E2E; built tools are cached in
# $CACHE so that a warm run provisions in seconds.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E=${E2E:-/var/tmp/nriguard-e2e}
CACHE=${CACHE:-/var/cache/nriguard-e2e}
CONTAINERD_VERSION=v2.4.2
CRICTL_VERSION=v1.37.0
export PATH=$CACHE/bin:$PATH
export CRI_CONFIG_FILE=$E2E/crictl.yaml
NG=$E2E/bin/nriguard
PINS=/sys/fs/bpf/nriguard

PASS=0; FAIL=0
ok()   { echo "PASS: $*"; PASS=$((PASS+1)); }
bad()  { echo "FAIL: $*"; FAIL=$((FAIL+1)); }
check(){ local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi; }
say()  { printf '\n== %s\n' "$*"; }
cr()   { crictl "$@" 2> >(grep -v 'level=warning' >&2); }
now()  { date +%s.%N; }
