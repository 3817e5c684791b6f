#!/bin/bash
# make demo: nriguard guarding a real containerd. Provisions what it runs
# (test/e2e/setup.sh demo: runc, containerd, crictl, nriguard, the images;
# cached), starts a private containerd with nriguard as its NRI plugin, runs
# a small labelled pod, and shows a connection allowed, one denied, an exec
# denied, live events, and the teardown. Leaves the machine as it found it.
# A step that fails ends the demo with one line naming it; the logs are kept
# in $CACHE/demo-logs.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
# bold headings and yellow events on a terminal; plain text in a log
B= N= Y= Z=
if [ -t 1 ]; then B=$(tput bold 2>/dev/null); N=$(tput sgr0 2>/dev/null); Y=$'\e[33m' Z=$'\e[0m'; fi
T0=$(now)
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
tell() { printf '   %s\n' "$*"; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# fail TEXT: one line naming what failed (the EXIT trap keeps the logs and
# cleans up)
fail() {
  FAILED=1
  printf '%sdemo: failed: %s%s (logs: %s)\n' "$B" "$*" "$N" "$CACHE/demo-logs"
  exit 1
}
# doing TEXT HINT COMMAND...: "TEXT (HINT)... done (N s)"; if COMMAND fails,
# the end of what it printed, then fail naming TEXT
doing() {
  local text=$1 hint=$2 t out; t=$(now); shift 2
  printf '   %s%s... ' "$text" "${hint:+ ($hint)}"
  if out=$("$@" 2>&1); then echo "done ($(secs "$t") s)"; return; fi
  echo "failed after $(secs "$t") s:"
  [ -n "$out" ] && printf '%s\n' "$out" | tail -20 | sed 's/^/     | /'
  fail "$text"
}
finish() {
  [ -n "${TAIL:-}" ] && kill "$TAIL" 2>/dev/null
  if [ -n "${FAILED:-}" ] || [ "${1:-0}" != 0 ]; then
    rm -rf "$CACHE/demo-logs"; cp -r "$E2E/logs" "$CACHE/demo-logs" 2>/dev/null
  fi
  "$REPO/test/e2e/cleanup.sh"
}

step "provisioning what the demo runs (built once, cached in $CACHE)"
SETUP_PREFIX='   ' "$REPO/test/e2e/setup.sh" demo || exit 1   # it said what failed
T1=$(now)
"$REPO/test/e2e/cleanup.sh"
if [ -d $PINS ] && ls -A $PINS | grep -qv '^_'; then
  echo "demo: $PINS holds attachments: is a nriguard running on this machine? The demo will not share it."; exit 1
fi
[ -d $PINS ] || touch "$E2E/.made-pins"
ls -A $PINS 2>/dev/null > "$E2E/.pins-before"
for d in $OUTSIDE; do [ -e "$d" ] || echo "$d"; done > "$E2E/.made-outside"
trap 'finish $?' EXIT
trap 'exit 130' INT TERM
write_configs

step "a private containerd $CONTAINERD_VERSION with NRI, and nriguard as its plugin"
doing "starting containerd" "its own root, state and sockets; NRI on, nriguard required" start_containerd
doing "importing the images" "busybox and a pause image, made here: no registry" \
  ctr -a "$E2E/ctrd/containerd.sock" -n k8s.io images import --all-platforms "$E2E/images.tar"
doing "starting nriguard, waiting for it to connect to containerd's NRI socket" "" start_plugin
tell "containerd: $E2E/ctrd/containerd.sock"
tell "nriguard:   $NG plugin --socket $E2E/nri.sock   (log: $PLOG)"

# live events, in plain words
touch "$EVENTS"
tail -n0 -F "$EVENTS" 2>/dev/null | jq --unbuffered -r --arg y "$Y" --arg z "$Z" '
  "   \($y)event:\($z) \(.verdict) by the \(.layer // "policy") \(.kind) " +
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
POD=$(cr runp "$PCFG") || fail "crictl runp: the pod did not start"
WEB=$(run_ctr "$POD" "$PCFG" web busybox '["/bin/sh","-c","nc -ll -p 18080 -e echo hello from 18080 & nc -ll -p 18081 -e echo hello from 18081 & trap \"exit 0\" TERM; while :; do sleep 1; done"]') ||
  fail "crictl create/start: the web container did not start"
CLI=$(run_ctr "$POD" "$PCFG" client busybox '["/bin/sh","-c","trap \"exit 0\" TERM; while :; do sleep 1; done"]') ||
  fail "crictl create/start: the client container did not start"
sleep 0.3
[ -d "$PINS/$CLI" ] || fail "nriguard attached nothing to the client (no $PINS/$CLI)"
tell "nriguard attached the client's policy before its first instruction:"
tell "  $(ls $PINS/$CLI | tr '\n' ' ')"
tell "  (under $PINS/${CLI:0:12}...; the web container has none)"

step "client -> 127.0.0.1:18081 (allowed)"
out=$(conn $CLI 18081); tell "$out"
grep -q 'hello from 18081' <<<"$out" || fail "the allowed connection did not get through"
step "client -> 127.0.0.1:18080 (not in its rules)"
out=$(conn $CLI 18080); tell "$out"
grep -q 'Operation not permitted' <<<"$out" || fail "the connection outside the client's rules was not refused"
sleep 0.3
step "web -> 127.0.0.1:18080 (web has no labels: untouched)"
out=$(conn $WEB 18080); tell "$out"
grep -q 'hello from 18080' <<<"$out" || fail "the web container (no labels) could not connect"
step "client runs /opt/bin/tool (a program its exec rule does not allow)"
out=$(crictl exec $CLI /opt/bin/tool echo hello 2>&1)
if grep -q 'exit code 137' <<<"$out"; then tell "exit code 137: killed before its first instruction (this kernel has no BPF LSM: SIGKILL backend)"
elif grep -q 'operation not permitted\|Operation not permitted' <<<"$out"; then tell "exec refused: Operation not permitted (BPF LSM backend)"
else tell "$out"; fail "the exec outside the client's rules was not refused"; fi
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
printf '\ndemo: done in %s s (%s s of it provisioning)\n' "$(secs "$T0")" "$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }')"
