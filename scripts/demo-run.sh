#!/bin/bash
# nriguard's first demo: one command held to the destinations it declares.
# Two local servers; the command may reach one and not the other.
set -euo pipefail
cd "$(dirname "$0")/.."
NG=./bin/nriguard
bb=$(command -v busybox)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() { kill "${SERVERS[@]}" 2>/dev/null || true; }
trap cleanup EXIT

step "two servers on this machine: 127.0.0.1:18080 and 127.0.0.1:18081"
SERVERS=()
for p in 18080 18081; do "$bb" nc -ll -p $p -e "$bb" echo "hello from $p" & SERVERS+=($!); done
sleep 0.3

POLICY='allow tcp 127.0.0.1:18081; allow udp 127.0.0.1:53'
step "enforce: nriguard run --egress '$POLICY' -- <connect to both>"
echo "(events, one JSON line each, come on stderr)"
$NG run --egress "$POLICY" -- sh -c "
  echo '-> 18081 (allowed):'; $bb nc 127.0.0.1 18081 </dev/null
  echo '-> 18080 (denied):';  $bb nc 127.0.0.1 18080 </dev/null || echo '   refused: the connect() got EPERM'
  echo '-> a raw socket, which cannot be judged by destination:'
  $bb ping -c1 -W1 127.0.0.1 >/dev/null 2>&1 || echo '   refused: no CAP_NET_RAW and no raw sockets under a policy'
" || true

step "audit: the same policy with --mode audit lets it through and reports it"
$NG run --mode audit --user nobody --egress "$POLICY" -- sh -c "
  echo '-> 18080 as nobody:'; $bb nc 127.0.0.1 18080 </dev/null"

step "a typo is refused with the label, the rule and what was expected"
$NG run --egress 'allow tcp 127.0.0.1:18081; allow tcp 10.0.0/33' -- true || true

step "teardown: nothing is left pinned or attached"
echo "pins under /sys/fs/bpf/nriguard: $(ls /sys/fs/bpf/nriguard 2>/dev/null | wc -l)"
echo "nriguard programs loaded in the kernel: $(bpftool prog show 2>/dev/null | grep -c ' ng_' || true)"
