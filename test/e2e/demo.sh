#!/bin/bash
# make demo: nriguard guarding a real containerd. Provisions what it needs
# (cached), starts a private containerd with nriguard as its NRI plugin, runs
# a small labelled pod, and shows a connection allowed, one denied, an exec
# denied, live events, and the teardown. Leaves the machine as it found it.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
B=$(tput bold 2>/dev/null || true); N=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
tell() { printf '   %s\n' "$*"; }

"$REPO/test/e2e/setup.sh" >/dev/null || exit 1
"$REPO/test/e2e/cleanup.sh"
if [ -d $PINS ] && ls -A $PINS | grep -qv '^_'; then
  echo "demo: $PINS holds attachments: is a nriguard running on this machine? The demo will not share it."; exit 1
fi
[ -d $PINS ] || touch "$E2E/.made-pins"
ls -A $PINS 2>/dev/null > "$E2E/.pins-before"
for d in $OUTSIDE; do [ -e "$d" ] || echo "$d"; done > "$E2E/.made-outside"
trap '[ -n "${TAIL:-}" ] && kill $TAIL 2>/dev/null; "$REPO/test/e2e/cleanup.sh"' EXIT
write_configs

step "a private containerd $CONTAINERD_VERSION with NRI, and nriguard as its plugin"
start_containerd
ctr -a "$E2E/ctrd/containerd.sock" -n k8s.io images import --all-platforms "$E2E/images.tar" >/dev/null 2>&1
start_plugin || exit 1
tell "containerd: $E2E/ctrd/containerd.sock (its own root, state and NRI socket)"
tell "nriguard:   $NG plugin --socket $E2E/nri.sock   (log: $PLOG)"

# live events, in plain words
touch "$EVENTS"
tail -n0 -F "$EVENTS" 2>/dev/null | jq --unbuffered -r '
  "   \u001b[33mevent:\u001b[0m \(.verdict) by the \(.layer // "policy") \(.kind) " +
  (if .kind == "exec" then "\(.filename) (\(.enforcement))" else "\(.proto) \(.dest):\(.port)" end) +
  " by \(.comm) pid \(.pid) uid \(.uid) in pod \(.namespace)/\(.pod) container \(.container)"' &
TAIL=$!

step "a pod with two containers"
ANN='{"egress.nriguard.io/container.client":"allow tcp 127.0.0.1:18081","exec.nriguard.io/container.client":"allow /bin/"}'
tell "web:    no labels: serves 127.0.0.1:18080 and :18081 (host network)"
tell "client: pod annotations"
tell "          egress.nriguard.io/container.client: allow tcp 127.0.0.1:18081"
tell "          exec.nriguard.io/container.client:   allow /bin/"
PCFG=$(pod demo "$ANN")
POD=$(cr runp "$PCFG")
WEB=$(run_ctr "$POD" "$PCFG" web busybox '["/bin/sh","-c","nc -ll -p 18080 -e echo hello from 18080 & nc -ll -p 18081 -e echo hello from 18081 & trap \"exit 0\" TERM; while :; do sleep 1; done"]')
CLI=$(run_ctr "$POD" "$PCFG" client busybox '["/bin/sh","-c","trap \"exit 0\" TERM; while :; do sleep 1; done"]')
sleep 0.3
tell "nriguard attached the client's policy before its first instruction:"
tell "  $(ls $PINS/$CLI | tr '\n' ' ')"
tell "  (under $PINS/${CLI:0:12}...; the web container has none)"

step "client -> 127.0.0.1:18081 (allowed)"
tell "$(conn $CLI 18081)"
step "client -> 127.0.0.1:18080 (not in its rules)"
tell "$(conn $CLI 18080)"
sleep 0.3
step "web -> 127.0.0.1:18080 (web has no labels: untouched)"
tell "$(conn $WEB 18080)"
step "client runs /opt/bin/tool (a program its exec rule does not allow)"
out=$(crictl exec $CLI /opt/bin/tool echo hello 2>&1)
if grep -q 'exit code 137' <<<"$out"; then tell "exit code 137: killed before its first instruction (this kernel has no BPF LSM: SIGKILL backend)"
elif grep -q 'operation not permitted\|Operation not permitted' <<<"$out"; then tell "exec refused: Operation not permitted (BPF LSM backend)"
else tell "$out"; fi
sleep 0.3

step "teardown"
cr stop -t 2 "$CLI" >/dev/null; cr rm "$CLI" >/dev/null
tell "client stopped and removed: pins left for it: $(ls $PINS/$CLI 2>/dev/null | wc -l)"
for c in $(crictl ps -aq); do cr rm -f "$c" >/dev/null; done
for p in $(crictl pods -q); do cr rmp -f "$p" >/dev/null; done
tell "all removed: attachments left: $(ls $PINS | grep -vc '^_'); nriguard programs attached to cgroups: $(bpftool cgroup tree "$CGV2" | grep -c ' ng_'); kept by the plugin for the next containers (egress programs loaded ahead; the exec program for a minute): $(bpftool prog show | grep -c ' ng_')"
kill $TAIL 2>/dev/null; TAIL=
"$REPO/test/e2e/cleanup.sh"
trap - EXIT
tell "containerd and nriguard stopped; the machine is as it was."
