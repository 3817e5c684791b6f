#!/bin/bash
# make e2e: nriguard with a real containerd 2.x (CRI + NRI), runc and crictl,
# in a private containerd that cannot collide with anything (own root, state,
# sockets, NRI socket). The containerd drop-in and plugin config are the ones
# in install/. Prints one PASS/FAIL line per check and "N passed, M failed".
# Then the runtimes on the hook path: CRI-O and containerd 1.7 (runtimes.sh).
# Then a real Kubernetes node with nriguard's DaemonSet (k8s.sh).
# Usage: run.sh [external|preregistered|hooks|crio|c17|k8s|all]
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MODE=${1:-all}
"$REPO/test/e2e/setup.sh" || exit 1
"$REPO/test/e2e/cleanup.sh"
keep_logs() { rm -rf "$CACHE/last-logs"; cp -r "$E2E/logs" "$CACHE/last-logs" 2>/dev/null; }
trap 'keep_logs; "$REPO/test/e2e/cleanup.sh"' EXIT
# stopped midway (Ctrl-C, a CI timeout): stop at once, cleaning up on the way out
trap 'exit 130' INT TERM

if [ -d $PINS ] && ls -A $PINS | grep -qv '^_'; then
  echo "e2e: $PINS holds attachments: is a nriguard running on this machine? Refusing to share it."; exit 1
fi
[ -d $PINS ] || touch "$E2E/.made-pins"
ls -A $PINS 2>/dev/null > "$E2E/.pins-before"
# every hierarchy: the v2 one ($CGV2) and, on hybrid hosts, the v1 ones
container_cgroups() { ls -d "$CGV2"/kubepods "$CGV2"/k8s.io /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io "$CGV2"/nriguard-e2e-kubelet /sys/fs/cgroup/*/nriguard-e2e-kubelet 2>/dev/null | sort -u; }
CGROUPS_BEFORE=$(container_cgroups)
# what the kubelet changes (k8s.sh puts it back): sysctls, bpffs propagation
host_settings() { sysctl kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys kernel.keys.root_maxbytes; awk '$5=="/sys/fs/bpf"{print $5, $7}' /proc/self/mountinfo; }
SETTINGS_BEFORE=$(host_settings)
# what the tools create outside $E2E whatever they are told (podman's blob
# cache, ctr's fifos and default runc root, nerdctl's CNI directory, nriguard
# pre-registered logs): removed at the end if it was not there before
rm -f "$E2E/.made-outside.done"
for d in $OUTSIDE; do [ -e "$d" ] || echo "$d"; done > "$E2E/.made-outside"
write_configs
# the host's own IPv4 address (not loopback): where the frame attacks send
HOSTIP=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)
[ -n "$HOSTIP" ] || { echo "e2e: this machine has no global IPv4 address: the SOCK_PACKET checks need one"; exit 1; }
# ---------------------------------------------------------------------------
external() {
  say "external plugin: nriguard plugin --socket $E2E/nri.sock"
  start_containerd
  ctr -a "$E2E/ctrd/containerd.sock" -n k8s.io images import --all-platforms "$E2E/images.tar" >/dev/null
  start_plugin || { bad "plugin connected"; return; }
  ok "plugin connected and synchronized"

  ANN='{"egress.nriguard.io/container.client":"allow tcp 127.0.0.1:18081; allow udp 127.0.0.1:18083",
        "exec.nriguard.io/container.client":"allow /bin/",
        "egress.nriguard.io/container.client2":"allow tcp 127.0.0.1:18080",
        "egress.nriguard.io/container.auditor":"allow tcp 127.0.0.1:18081",
        "egress.nriguard.io/container.qual":"allow tcp 127.0.0.1:18081,18095 exe=/opt/bin/nc; allow tcp 127.0.0.1:18080,18096 uid=0",
        "visibility.nriguard.io/container.qual":"both",
        "egress.nriguard.io/container.named":"allow udp 127.0.0.53:53; allow tcp api.e2e.test:18097; default deny",
        "visibility.nriguard.io/container.named":"flows",
        "mode.nriguard.io/container.auditor":"audit"}'
  PCFG=$(pod e2e "$ANN")
  POD=$(cr runp "$PCFG")
  SRV=$(run_ctr "$POD" "$PCFG" server busybox '["/bin/sh","-c","nc -ll -p 18080 -e echo hello18080 & nc -ll -p 18081 -e echo hello18081 & trap \"exit 0\" TERM; while :; do sleep 1; done"]')
  CLI=$(run_ctr "$POD" "$PCFG" client busybox "$LOOP")
  CLI2=$(run_ctr "$POD" "$PCFG" client2 busybox "$LOOP")
  AUD=$(run_ctr "$POD" "$PCFG" auditor busybox "$LOOP")
  QUAL=$(run_ctr "$POD" "$PCFG" qual busybox "$LOOP")
  NAMED=$(run_ctr "$POD" "$PCFG" named busybox "$LOOP")
  sleep 0.3
  check "client: TCP 18081 allowed" has hello18081 "$(conn $CLI 18081)"
  out=$(conn $CLI 18080); check "client: TCP 18080 denied (EPERM)" denied "$out"
  out=$(udp $CLI 18083); check "client: UDP 18083 allowed (the datagram arrived)" has 'arrived=[1-9]' "$out"
  out=$(udp $CLI 18082); check "client: UDP 18082 denied (EPERM, nothing arrived)" has 'Operation not permitted.*arrived=0' "$(tr '\n' ' ' <<<"$out")"
  check "client2 (its own container.<name> policy): 18080 allowed" has hello18080 "$(conn $CLI2 18080)"
  out=$(conn $CLI2 18081); check "client2: 18081 denied" denied "$out"
  check "server (no labels): 18080 reachable" has hello18080 "$(conn $SRV 18080)"
  check "server (no labels): nothing pinned" test ! -e "$PINS/$SRV"
  # AF_PACKET never reaches the cgroup hooks; containerd gives containers
  # CAP_NET_RAW, so nriguard refuses it in their seccomp policy instead
  out=$(cr exec $CLI arping -c1 -w1 -I lo 127.0.0.1 2>&1); check "client: AF_PACKET socket refused (arping)" denied "$out"
  out=$(cr exec $SRV arping -c1 -w1 -I lo 127.0.0.1 2>&1); check "server (no labels): AF_PACKET socket allowed" test -z "$(grep 'Operation not permitted' <<<"$out")"
  RTD=$(cr create "$POD" <(sed 's/"linux":{}/"linux":{"security_context":{"seccomp":{"profile_type":0}}}/' "$(ctrcfg client2b busybox "$LOOP" '{"egress.nriguard.io":"allow tcp 127.0.0.1:18081"}')") "$PCFG")
  cr start "$RTD" >/dev/null
  check "RuntimeDefault seccomp + egress label: allowed traffic works" has hello18081 "$(conn $RTD 18081)"
  out=$(cr exec $RTD arping -c1 -w1 -I lo 127.0.0.1 2>&1); check "RuntimeDefault seccomp + egress label: AF_PACKET refused" denied "$out"
  check "client: pinned under $PINS/<id>" test -e "$PINS/$CLI/meta"

  say "attacks from inside (test/ngprobe in the container, as root with containerd's default capabilities)"
  echo "   without a policy (server): $(probe $SRV socket:vsock socket:packetdgram iouring:setup tcp:0.0.0.0:18091 lsrr:127.0.0.2:127.0.0.1:18093)"
  check "client: AF_VSOCK, AF_XDP, AF_PACKET, io_uring refused; tcp, unix, netlink allowed" \
    same "EPERM EPERM EPERM EPERM EPERM ok ok ok" "$(probe $CLI socket:vsock socket:xdp socket:packetdgram iouring:setup iouring:socket:packet socket:tcp socket:unix socket:netlink)"
  check "client: 0.0.0.0 is judged as the local host it reaches" same "EPERM EPERM" "$(probe $CLI tcp:0.0.0.0:18091 udpsend:0.0.0.0:18092)"
  # socket(AF_INET, SOCK_PACKET) is a packet socket by another name: a raw
  # frame on lo to the host's own address (not loopback: a frame from
  # loopback is a martian), received by the probe itself
  check "server (no labels): a hand-built frame through socket(AF_INET, SOCK_PACKET) reaches its destination (the attack works without a policy)" \
    same "ok" "$(probe $SRV frame:lo:$HOSTIP:18098)"
  check "client: socket(AF_INET, SOCK_PACKET) refused, no frame sent (CAP_NET_RAW kept: containerd's default)" \
    same "EPERM EPERM" "$(probe $CLI frame:lo:$HOSTIP:18098 socket:sockpacket)"
  check "client: an IPv4 source route to an allowed address is refused" same "EPERM" "$(probe $CLI lsrr:127.0.0.2:127.0.0.1:18083)"
  check "client: the packet path reported it" event '.kind=="packet" and .reason=="routing-option" and .container=="client"'

  check "exec: allowed program runs (crictl exec client /bin/echo)" hasline hi "$(cr exec $CLI /bin/echo hi)"
  out=$(cr exec $CLI /opt/bin/tool echo hi 2>&1); rc=$?
  check "exec: denied program never runs (/opt/bin/tool, a copy of busybox)" test "$rc" != 0 -a -z "$(grep -x hi <<<"$out")"
  check "exec: event with the filename" event '.kind=="exec" and .filename=="/opt/bin/tool" and .container=="client" and .pod=="e2e"'

  check "enforce event names pod, namespace, container" \
    event '.verdict=="denied" and .port==18080 and .container=="client" and .pod=="e2e" and .namespace=="e2e-ns"'
  check "events are schema v1 and name the layer that refused" event '.v==1 and .layer=="label" and .port==18080 and .container=="client"'
  check "audit: traffic passes" has hello18080 "$(conn $AUD 18080)"
  check "audit: would-deny event with pod, namespace, container" \
    event '.verdict=="would-deny" and .port==18080 and .container=="auditor" and .pod=="e2e" and .namespace=="e2e-ns"'

  say "rules per program and user (exe=, uid=)"
  check "qual: /opt/bin/nc (the program exe= names) reaches 18081" has hello18081 "$(cr exec $QUAL /opt/bin/nc 127.0.0.1 18081 </dev/null 2>&1)"
  out=$(conn $QUAL 18081); check "qual: busybox nc (another file, the same bytes) is refused 18081" denied "$out"
  check "qual: another program is refused (ngprobe, to a port only /opt/bin/nc may reach)" same "EPERM ok" "$(probe $QUAL tcp:127.0.0.1:18095 sleep:500)"
  check "qual: the event names the program, its file and the rule that decided" \
    event '.kind=="connect" and .container=="qual" and .port==18095 and .exe=="/bin/ngprobe" and (.exe_file|test("^[0-9]+:[0-9]+:[0-9]+$")) and .rule=="default deny"'
  check "qual: uid 0 reaches 18080" has hello18080 "$(conn $QUAL 18080)"
  check "qual: uid 0 and uid 65534: one allowed, the other refused (ngprobe)" same "ok ok EPERM" "$(probe $QUAL tcp:127.0.0.1:18096 user:65534:65534 tcp:127.0.0.1:18096)"
  check "qual: the event names the user" event '.kind=="connect" and .container=="qual" and .port==18096 and .uid==65534'
  check "visibility: the allowed flow of /opt/bin/nc, with its program and the rule that allowed it" \
    event '.kind=="flow" and .phase=="new" and .verdict=="allowed" and .container=="qual" and .port==18081 and .exe_file!=null and .rule=="allow tcp 127.0.0.1:18081,18095 exe=/opt/bin/nc"'
  check "visibility: its end, with what it sent" event '.kind=="flow" and .phase=="end" and .container=="qual" and .port==18081 and .packets>0'
  check "visibility: allowed execs are seen (crictl exec of /opt/bin/nc)" event '.kind=="exec" and .verdict=="allowed" and .container=="qual" and .filename=="/opt/bin/nc"'
  check "visibility: not asked for, not reported (client)" test -z "$(jq -c 'select(.verdict=="allowed" and .container=="client")' "$EVENTS")"

  say "rules by DNS name (a DNS server on the host: ngprobe dnsserve at 127.0.0.53)"
  # (the answer is a documentation address: a name never opens loopback
  # ones; allowed, a connect there is under way, or unreachable, not EPERM)
  local allowed='^\(ok\|ENETUNREACH\|EHOSTUNREACH\|ETIMEDOUT\)$'
  "$E2E/bin/ngprobe" dnsserve:127.0.0.53,198.51.100.44 > "$E2E/logs/dnsserve.txt" 2>&1 &
  local dns=$!
  for i in $(seq 50); do grep -q ready "$E2E/logs/dnsserve.txt" 2>/dev/null && break; sleep 0.1; done
  check "named: before any answer, the name's address is refused" same "EPERM" "$(probe $NAMED connect:198.51.100.44:18097)"
  check "named: a connect at once to the address the answer gave is allowed" \
    has "$allowed" "$(probe $NAMED resolve:127.0.0.53,api.e2e.test,a,18097)"
  wait $dns
  check "named: the DNS server answered the container" same "ready served" "$(echo $(cat "$E2E/logs/dnsserve.txt"))"
  check "named: on another port, and another address, refused" same "EPERM EPERM" "$(probe $NAMED connect:198.51.100.44:18098 connect:198.51.100.45:18097)"
  check "named: the flow record names the DNS name and its rule" \
    event '.kind=="flow" and .phase=="new" and .container=="named" and .dest=="198.51.100.44" and .dns_name=="api.e2e.test" and .rule=="allow tcp api.e2e.test:18097"'

  say "the record stream and metrics (nriguard observe, Prometheus)"
  "$NG" observe --socket "$E2E/observe.sock" --container qual --kind connect > "$E2E/logs/observe-qual.jsonl" 2>&1 &
  local obs1=$!
  "$NG" observe --socket "$E2E/observe.sock" -o table > "$E2E/logs/observe-table.txt" 2>&1 &
  local obs2=$!
  sleep 0.5
  probe $QUAL tcp:127.0.0.1:18095 sleep:300 >/dev/null
  sleep 0.5
  kill $obs1 $obs2 2>/dev/null; wait $obs1 $obs2 2>/dev/null
  check "observe: a reader filtered to one container and kind sees its refusal" \
    test -n "$(jq -c 'select(.kind=="connect" and .container=="qual" and .port==18095 and .verdict=="denied")' "$E2E/logs/observe-qual.jsonl" 2>/dev/null)"
  check "observe: and nothing else" test -z "$(jq -c 'select(.container!="qual" or .kind!="connect")' "$E2E/logs/observe-qual.jsonl" 2>/dev/null)"
  check "observe: a second reader at once, as a table" has 'connect  denied .*e2e-ns/e2e/qual .*ngprobe.* tcp 127.0.0.1:18095' "$(cat "$E2E/logs/observe-table.txt")"
  check "observe: the socket is root's alone" same "600 root" "$(stat -c '%a %U' "$E2E/observe.sock")"
  M=$(scrape 2>&1)
  check "metrics: scraped over HTTP and parsed by Prometheus's text parser" test -n "$(grep '^nriguard_' <<<"$M")"
  check "metrics: refusals by kind, verdict and container" grep -q '^nriguard_decisions_total{container="qual",kind="connect",namespace="e2e-ns",pod="e2e",verdict="denied"} [1-9]' <<<"$M"
  check "metrics: policed containers, attach latency" grep -q '^nriguard_policed_containers{} [1-9]' <<<"$M"
  check "metrics: attach latency histogram" grep -q '^nriguard_attach_seconds_count{} [1-9]' <<<"$M"

  say "nriguard status"
  ST=$("$NG" status -o json --socket "$E2E/observe.sock" 2> "$E2E/logs/status.err")
  "$NG" status --socket "$E2E/observe.sock" > "$E2E/logs/status.txt" 2>&1
  of_ctr() { jq -r --arg id "$1" ".attachments[] | select(.id==\$id) | $2" <<<"$ST"; }
  check "status: the client with its pod, the plugin's, enforced, its egress and exec labels" \
    same "e2e-ns/e2e/client nri enforce egress:label,exec:label" "$(of_ctr "$CLI" '"\(.namespace)/\(.pod)/\(.container) \(.owner) \(.mode) \([.layers[] | .kind + ":" + .layer] | join(","))"')"
  check "status: the auditor in audit mode, from its annotation" has '^audit (pod annotation mode.nriguard.io/container.auditor)' "$(of_ctr "$AUD" .mode_of)"
  check "status: the unlabelled server is not listed" test -z "$(of_ctr "$SRV" .id)"
  check "status: the plugin answers: containerd 2.x on the start path, its exec backend, losses counted" \
    same "containerd start $("$NG" version | sed -n 's/^exec backend: \([a-z]*\).*/\1/p') true" \
    "$(jq -r '.plugin.status | "\(.runtime.name) \(.runtime.path) \(.exec_backend) \(.lost | has("egress"))"' <<<"$ST")"
  check "status: as a table for people, the client among the attachments" has "^  ${CLI:0:12}  e2e-ns/e2e/client  *nri  *enforce" "$(cat "$E2E/logs/status.txt")"

  say "nriguard profile: from nothing to an enforced policy"
  local WORK='["/bin/sh","-c","trap \"exit 0\" TERM; while :; do nc 127.0.0.1 18081 </dev/null >/dev/null 2>&1; sleep 0.5; done"]'
  LPCFG=$(pod learn '{"visibility.nriguard.io":"both"}')
  LPOD=$(cr runp "$LPCFG")
  LAPP=$(run_ctr "$LPOD" "$LPCFG" app busybox "$WORK")
  sleep 3
  local prof
  prof=$("$NG" profile --namespace e2e-ns --pod learn --since 2m --events "$EVENTS" -o json 2> "$E2E/logs/profile.err")
  echo "   learned: $(jq -c . <<<"$prof" | cut -c1-300)"
  check "profile: the unpoliced workload was observed and learned: its destination" \
    has 'allow tcp 127.0.0.1:18081' "$(jq -r '."e2e-ns/learn/app"."egress.nriguard.io/container.app"' <<<"$prof")"
  check "profile: and its programs" has 'allow /bin/\(sh\|busybox\)' "$(jq -r '."e2e-ns/learn/app"."exec.nriguard.io/container.app"' <<<"$prof")"
  check "profile: the YAML output is pod annotations for kubectl" \
    has '    egress.nriguard.io/container.app: "allow tcp 127.0.0.1:18081' "$("$NG" profile --namespace e2e-ns --pod learn --since 2m --events "$EVENTS" 2>/dev/null)"
  out=$("$NG" profile --namespace e2e-ns --pod nosuchpod --since 2m --events "$EVENTS" 2>&1); rc=$?
  check "profile: an unknown pod says so and prints nothing" test "$rc" = 1 -a -n "$(grep 'no records of namespace e2e-ns, pod nosuchpod' <<<"$out")"
  cr stop -t 1 "$LAPP" >/dev/null; cr rm "$LAPP" >/dev/null
  # the same workload, held to what it was seen doing
  EPCFG=$(pod learned "$(jq -c '."e2e-ns/learn/app"' <<<"$prof")")
  EPOD=$(cr runp "$EPCFG")
  EAPP=$(run_ctr "$EPOD" "$EPCFG" app busybox "$WORK")
  sleep 3
  check "profile applied: the workload runs enforced with zero refusals" \
    test -z "$(jq -c 'select(.pod=="learned" and (.verdict=="denied" or .verdict=="would-deny"))' "$EVENTS")"
  check "profile applied: what it did still works" has hello18081 "$(conn $EAPP 18081)"
  out=$(conn $EAPP 18080); check "profile applied: a destination it never used is refused" denied "$out"
  out=$(cr exec $EAPP /opt/bin/tool echo hi 2>&1); check "profile applied: a program it never ran is refused" test -z "$(grep -x hi <<<"$out")"

  say "image label (tighten-only)"
  IPCFG=$(pod img '{"egress.nriguard.io":"allow tcp 127.0.0.1:18080,18081"}')
  IPOD=$(cr runp "$IPCFG")
  LAB=$(run_ctr "$IPOD" "$IPCFG" labelled labelled "$LOOP")
  check "image label narrows the pod's policy: 18081 allowed" has hello18081 "$(conn $LAB 18081)"
  out=$(conn $LAB 18080); check "image label narrows the pod's policy: 18080 denied" denied "$out"
  check "the plugin log explains the layers" has '"source":"image label egress.nriguard.io"' "$(grep '"msg":"attached"' "$PLOG")"

  say "invalid annotation"
  BPCFG=$(pod bad '{"egress.nriguard.io/container.app":"allow tcp 127.0.0.1:18081; allow tcp 10.0.0/33"}')
  BPOD=$(cr runp "$BPCFG")
  out=$(crictl create "$BPOD" "$(ctrcfg app busybox "$LOOP")" "$BPCFG" 2>&1)
  echo "   crictl create says: $(grep -o 'nriguard: .*' <<<"$out" | head -1 | cut -c1-160)"
  check "crictl create fails naming the key and the rule" \
    grep -q 'egress.nriguard.io/container.app: rule 2 \\\?"allow tcp 10.0.0/33\\\?": invalid prefix length 33 (0-32)' <<<"$out"

  say "stop and remove"
  CG=$(find "$CGV2/kubepods" -type d -name "$CLI" | head -1)
  check "metrics: the client has series while it runs" grep -q 'container="client"' <<<"$(scrape)"
  cr stop -t 2 "$CLI" >/dev/null; cr rm "$CLI" >/dev/null
  check "client stopped and removed: its pins are gone" test ! -e "$PINS/$CLI"
  check "metrics: the client's series went with it" test -z "$(scrape | grep 'container="client"')"
  check "client's cgroup had nriguard programs attached before; it is gone now" test ! -d "$CG"

  say "plugin killed while containers run"
  # a program its exec rules allow, rewritten inside the container: refused
  # now, and it stays refused whatever restarts (identities are taken once)
  REW=$(cr create "$POD" "$(ctrcfg rewriter busybox "$LOOP" '{"exec.nriguard.io":"allow /bin/; allow /opt/bin/tool"}')" "$PCFG") && cr start "$REW" >/dev/null
  # (busybox runs the applet its name says: /tmp/echo is /opt/bin/tool as echo)
  cr exec $REW ln -s /opt/bin/tool /tmp/echo >/dev/null 2>&1
  check "rewrite: the allowed program runs before it is changed" hasline hi "$(cr exec $REW /tmp/echo hi 2>&1)"
  cr exec $REW sh -c 'cp /opt/bin/tool /tmp/t && cat /tmp/t > /opt/bin/tool' >/dev/null 2>&1
  refused_tool() { # the exit status, not the absence of output
    # (crictl itself: cr drops the "execing command in container" line that
    # carries the command's exit code)
    local out rc; out=$(crictl exec $REW /tmp/echo hi 2>&1); rc=$?
    [ "$rc" != 0 ] && ! grep -qx hi <<<"$out" && grep -q 'exit code 137\|Operation not permitted\|operation not permitted' <<<"$out" ||
      { echo "exit $rc: $out"; return 1; }
  }
  check "rewrite: the rewritten program is refused" refused_tool
  kill -9 "$(cat "$E2E/plugin.pid")"; sleep 0.3
  # the image whose labels are part of a running container's policy goes
  # while nriguard is away: its container stays held (never detached for
  # labels it cannot read)
  out=$(crictl rmi localhost/e2e/labelled:latest 2>&1)
  check "plugin dead: the labelled image is removed ($out)" test -z "$(crictl images -o json | jq -r '.images[].repoTags[]' | grep -x localhost/e2e/labelled:latest)"
  out=$(conn $CLI2 18081); check "plugin dead: client2 18081 still denied" denied "$out"
  # containerd 2.4.2 embeds NRI v0.12.3: the first request after the plugin
  # died still counts it as present and skips it (fail open, once); the
  # runtime then drops it and refuses every container (required plugin).
  LATE=$(cr create "$POD" "$(ctrcfg client busybox "$LOOP")" "$PCFG" 2>/dev/null) && cr start "$LATE" >/dev/null 2>&1 &&
    echo "   the first container created after the plugin died slipped through (NRI v0.12.3); reconciliation must catch it"
  out=$(crictl create "$POD" "$(ctrcfg late2 busybox "$LOOP")" "$PCFG" 2>&1)
  check "plugin dead: new containers are refused (required plugin)" has 'required plugin \\\?"nriguard\\\?" not present' "$out"
  cr stop -t 2 "$CLI2" >/dev/null
  check "plugin dead: a stopped container's pins are stale" test -e "$PINS/$CLI2"
  check "plugin dead: nriguard status says it is down, and what that means" \
    has 'Plugin: DOWN' "$("$NG" status --socket "$E2E/observe.sock" 2>&1)"
  start_plugin
  check "plugin restarted: synchronized, stale pins removed" test ! -e "$PINS/$CLI2"
  if [ -n "${LATE:-}" ]; then
    check "plugin restarted: the container that slipped through is attached now" test -e "$PINS/$LATE/meta"
    check "plugin restarted: and reported as late (a policy record)" \
      event '.kind=="policy" and .reason=="late" and .container_id=="'$LATE'"'
    ST=$("$NG" status -o json --socket "$E2E/observe.sock" 2>> "$E2E/logs/status.err")
    check "status: the late container is marked late, saying why" has 'while nriguard was away' "$(of_ctr "$LATE" .late)"
    check "status: the plugin names it among its late policy records" \
      same "client" "$(jq -r --arg id "$LATE" '.plugin.status.policy.late[] | select(.container_id==$id) | .container' <<<"$ST")"
    check "status: as a table, set apart as LATE" has "LATE" "$("$NG" status --socket "$E2E/observe.sock" 2>&1 | grep "${LATE:0:12}")"
    cr rm -f "$LATE" >/dev/null
  fi
  check "plugin restarted: running containers still enforced (one of them of an image removed meanwhile)" denied "$(conn $AUD 18080 2>/dev/null; conn $LAB 18080)"
  check "plugin restarted: the rewritten program is still refused (the restart resolved nothing again)" refused_tool
  ctr -a "$E2E/ctrd/containerd.sock" -n k8s.io images import --all-platforms "$E2E/images.tar" >/dev/null

  say "containerd restarted"
  n=$(grep -c '"msg":"connected"' "$PLOG")
  stop_containerd; start_containerd
  for i in $(seq 100); do [ "$(grep -c '"msg":"connected"' "$PLOG")" -gt "$n" ] && break; sleep 0.1; done
  check "plugin reconnected by itself" test "$(grep -c '"msg":"connected"' "$PLOG")" -gt "$n"
  check "containerd restarted: the rewritten program is still refused" refused_tool
  check "containerd restarted: its refusal is reported" event '.kind=="exec" and .verdict=="denied" and .container=="rewriter" and .filename=="/tmp/echo"'
  NEW=$(run_ctr "$POD" "$PCFG" client busybox "$LOOP")
  out=$(conn $NEW 18080); check "a container started after the restart is covered" denied "$out"

  say "timing: what nriguard adds to crictl start (median of 20)"
  TPCFG=$(pod timing '{"egress.nriguard.io":"allow tcp 127.0.0.1:18081","tolerate-missing-plugins.nriguard.io":"true"}')
  TPOD=$(cr runp "$TPCFG")
  NPCFG=$(pod plain '{"tolerate-missing-plugins.nriguard.io":"true"}')
  NPOD=$(cr runp "$NPCFG")
  median_start() { # pod-id pod-config label
    local ts=()
    for i in $(seq 20); do
      local id t; id=$(cr create "$1" "$(ctrcfg "t$3$i" busybox "$LOOP")" "$2")
      t=$(now); cr start "$id" >/dev/null; ts+=("$(echo "$(now) - $t" | bc)")
    done
    printf '%s\n' "${ts[@]}" | sort -n | sed -n 10p
  }
  LABELLED=$(median_start "$TPOD" "$TPCFG" l)
  PLAIN=$(median_start "$NPOD" "$NPCFG" p)
  kill "$(cat "$E2E/plugin.pid")"; rm -f "$E2E/plugin.pid"; sleep 0.3
  NOPLUGIN=$(median_start "$NPOD" "$NPCFG" n)
  printf '   crictl start, median of 20: labelled %.3fs, unlabelled %.3fs (plugin running); %.3fs without nriguard\n' "$LABELLED" "$PLAIN" "$NOPLUGIN"
  echo "crictl-start labelled=$LABELLED unlabelled=$PLAIN without=$NOPLUGIN" >> "$E2E/logs/timing.txt"
  cp "$E2E/logs/timing.txt" "$CACHE/timing-last.txt"
  start_plugin # so that removing the containers below goes through it

  for c in $(crictl ps -aq); do cr rm -f "$c" >/dev/null; done
  for p in $(crictl pods -q); do cr rmp -f "$p" >/dev/null; done
  # the shared egress programs (_egress-v2) and the exec program (_exec-v2) stay a
  # minute for the next container
  check "all removed: no attachments left" test -z "$(ls $PINS | grep -v '^_')"
  check "all removed: no nriguard program attached to any cgroup" test "$(bpftool cgroup tree "$CGV2" | grep -c ' ng_')" = 0
  check "all removed: only the plugin's shared egress programs (8 a copy) and the lingering exec program are loaded" \
    test "$(bpftool prog show | grep -c ' ng_')" = $((8 * $(ls $PINS/_egress-v* 2>/dev/null | wc -l) + $(ls $PINS | grep -c '^_exec-v')))
  kill "$(cat "$E2E/plugin.pid")"; rm -f "$E2E/plugin.pid" # one mode at a time
  sleep 0.5
  check "plugin stopped: no nriguard programs in the kernel" test "$(bpftool prog show | grep -c ' ng_')" = 0
  check "plugin stopped: it took the idle exec program with it" test -z "$(ls -d $PINS/_exec-* 2>/dev/null)"
  check "plugin stopped: it took the idle egress programs with it" test -z "$(ls -d $PINS/_egress-* 2>/dev/null)"
  stop_containerd
}

# ---------------------------------------------------------------------------
preregistered() {
  say "pre-registered plugin: containerd starts $E2E/nri/plugins/10-nriguard"
  ln -sf "$NG" "$E2E/nri/plugins/10-nriguard"
  # the operator's plugin config, pointed at this private containerd
  { cat "$REPO/install/nri/10-nriguard.conf" | grep -v '^event_log:'; echo "$NODECONF"; } > "$E2E/nri/conf.d/10-nriguard.conf"
  local log=/var/log/nriguard/nriguard.log n
  n=$(syncs $log)
  start_containerd
  ctr -a "$E2E/ctrd/containerd.sock" -n k8s.io images import --all-platforms "$E2E/images.tar" >/dev/null
  wait_sync $log "$n" && ok "containerd started the plugin; it synchronized" || { bad "pre-registered plugin started"; stop_containerd; return; }
  PCFG=$(pod pre '{"egress.nriguard.io":"allow tcp 127.0.0.1:18081","exec.nriguard.io":"allow /bin/"}')
  POD=$(cr runp "$PCFG")
  SRV=$(run_ctr "$POD" "$PCFG" server busybox '["/bin/sh","-c","nc -ll -p 18080 -e echo hello18080 & nc -ll -p 18081 -e echo hello18081 & trap \"exit 0\" TERM; while :; do sleep 1; done"]')
  sleep 0.3
  check "pre-registered: 18081 allowed" has hello18081 "$(conn $SRV 18081)"
  out=$(conn $SRV 18080); check "pre-registered: 18080 denied" denied "$out"
  out=$(cr exec $SRV /opt/bin/tool echo hi 2>&1); check "pre-registered: denied program never runs" test -z "$(grep -x hi <<<"$out")"
  check "pre-registered: its config came through Configure (event log)" event '.verdict=="denied" and .pod=="pre"'
  out=$(crictl create "$POD" "$(ctrcfg bad busybox "$LOOP" '{"egress.nriguard.io":"allow tcp"}')" "$PCFG" 2>&1)
  check "pre-registered: an invalid container annotation is refused" has 'egress.nriguard.io: rule 1' "$out"
  for c in $(crictl ps -aq); do cr rm -f "$c" >/dev/null; done
  for p in $(crictl pods -q); do cr rmp -f "$p" >/dev/null; done
  check "pre-registered: all removed, no attachments left" test -z "$(ls $PINS | grep -v '^_')"
  stop_containerd
  rm -f "$E2E/nri/plugins/10-nriguard"
}

. "$REPO/test/e2e/hooks.sh"
. "$REPO/test/e2e/runtimes.sh"
. "$REPO/test/e2e/k8s.sh"

T0=$(now)
case $MODE in
  external) external ;;
  preregistered) preregistered ;;
  hooks) podman_e2e; wrapper_e2e; nerdctl_e2e ;;
  crio) crio_e2e ;;
  c17) c17_e2e ;;
  k8s) k8s_e2e ;;
  *) external; preregistered; podman_e2e; wrapper_e2e; nerdctl_e2e; crio_e2e; c17_e2e; k8s_e2e ;;
esac
keep_logs
"$REPO/test/e2e/cleanup.sh"
trap - EXIT
say "machine as found"
check "no e2e processes left" test -z "$(pgrep -f "$E2E/" )"
check "no mounts left under $E2E" test -z "$(grep " $E2E" /proc/mounts)"
check "no container cgroups left" test "$(container_cgroups)" = "$CGROUPS_BEFORE"
check "sysctls and /sys/fs/bpf propagation as they were" same "$SETTINGS_BEFORE" "$(host_settings)"
check "nothing left outside $E2E" test -z "$(for d in $OUTSIDE; do [ -e "$d" ] && grep -qx "$d" "$E2E/.made-outside.done" && echo "$d"; done)"
check "no pins left" test -z "$(ls -A $PINS 2>/dev/null | grep -vxFf "$E2E/.pins-before" 2>/dev/null)"
printf '\ne2e took %.0fs\n' "$(echo "$(now) - $T0" | bc)"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
