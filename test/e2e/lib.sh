# Sourced by the e2e scripts: where things live and small helpers.
# Everything private to the e2e lives under $E2E; built tools are cached in
# $CACHE so that a warm run provisions in seconds.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E=${E2E:-/var/tmp/nriguard-e2e}
CACHE=${CACHE:-/var/cache/nriguard-e2e}
CONTAINERD_VERSION=v2.4.2
CRICTL_VERSION=v1.37.0
NERDCTL_VERSION=v2.2.1
export PATH=$CACHE/bin:$PATH
export CRI_CONFIG_FILE=$E2E/crictl.yaml
NG=$E2E/bin/nriguard
PINS=/sys/fs/bpf/nriguard
METRICS=127.0.0.1:19964
scrape() { "$E2E/bin/promscrape" "http://$METRICS/metrics" nriguard_; }
# the cgroup v2 hierarchy: its own mount in hybrid mode
CGV2=/sys/fs/cgroup; [ -d /sys/fs/cgroup/unified ] && CGV2=/sys/fs/cgroup/unified
OUTSIDE="/var/lib/containers /run/crio /var/lib/crio /etc/crio /run/containers /run/libpod /run/containerd /etc/cni /var/lib/cni /var/lib/nerdctl /var/log/nriguard /run/nriguard /run/nri /var/lib/kubelet /var/run/kubernetes /var/log/containers /var/log/pods $HOME/.kube $HOME/.cache/helm $HOME/.config/helm"

PASS=0; FAIL=0
ok()   { echo "PASS: $*"; PASS=$((PASS+1)); }
bad()  { echo "FAIL: $*"; FAIL=$((FAIL+1)); }
# check DESCRIPTION COMMAND...: PASS or FAIL, and on failure the command
# and what it printed (has, hasline and denied print the text they looked in)
check(){
  local d=$1 out; shift
  if out=$("$@" 2>&1); then ok "$d"; return; fi
  bad "$d"
  printf '      $ %s\n' "$*" | cut -c1-240
  [ -n "$out" ] && printf '%s\n' "$out" | tail -15 | cut -c1-240 | sed 's/^/      | /'
  return 0
}
has()     { grep -q -- "$1" <<<"$2" || { printf '%s\n' "$2"; return 1; }; }   # has PATTERN TEXT
same()    { [ "$1" = "$2" ] || { printf 'want %s\ngot  %s\n' "$1" "$2"; return 1; }; } # same WANT GOT
hasline() { grep -qx -- "$1" <<<"$2" || { printf '%s\n' "$2"; return 1; }; }  # a whole line

say()  { printf '\n== %s\n' "$*"; }
cr()   { crictl "$@" 2> >(grep -v 'level=warning\|level=error msg="execing command in container' >&2); }
now()  { date +%s.%N; }

EVENTS=$E2E/logs/events.jsonl
PLOG=$E2E/logs/plugin.log

# containerd_config DIR ADDRESS NRI [CRI]: a private containerd 2.x's config:
# root, state, runc root and shim sockets under DIR, serving ADDRESS, importing
# the operator's drop-in from install/; NRI: more lines for its NRI section
# (plugins come from DIR/../nri), CRI: more for the CRI runtime section.
containerd_config() {
  local d=$1 nri=$(dirname "$1")/nri
  cat <<EOF
version = 3
root = '$d/root'
state = '$d/state'
# the operator's drop-in, as installed: NRI on, nriguard required
imports = ['$REPO/install/containerd/nriguard.toml']
[grpc]
  address = '$2'
[ttrpc]
  address = '$2.ttrpc'
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'localhost/e2e/pause:latest'
  [plugins.'io.containerd.cri.v1.runtime']
    # this VM lacks CAP_SYS_RESOURCE: the sandbox cannot lower oom_score_adj
    restrict_oom_score_adj = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '/usr/sbin/runc'
          Root = '$d/runc'
          SystemdCgroup = false
${4:-}
  [plugins.'io.containerd.nri.v1.nri']
$3
    plugin_path = '$nri/plugins'
    plugin_config_path = '$nri/conf.d'
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '$d/s'
EOF
}

# write_configs: the private containerd's config (importing the operator's
# drop-in from install/), crictl's, and nriguard's node settings.
write_configs() {
  mkdir -p "$E2E"/{ctrd,nri/plugins,nri/conf.d,logs,pods}
  containerd_config "$E2E/ctrd" "$E2E/ctrd/containerd.sock" "    socket_path = '$E2E/nri.sock'" > "$E2E/ctrd/config.toml"
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$E2E/ctrd/containerd.sock" "$E2E/ctrd/containerd.sock" > "$E2E/crictl.yaml"
  # no ceiling here: a container without labels must be left alone
  NODECONF="event_log: $EVENTS
containerd:
  socket: $E2E/ctrd/containerd.sock
  namespace: k8s.io"
  echo "$NODECONF" > "$E2E/config.yaml"
}

start_containerd() {
  nohup containerd --config "$E2E/ctrd/config.toml" >> "$E2E/logs/containerd.log" 2>&1 &
  echo $! > "$E2E/containerd.pid"
  for i in $(seq 100); do crictl info >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "containerd did not start"; tail -20 "$E2E/logs/containerd.log"; exit 1
}
stop_containerd() {
  local pid; pid=$(cat "$E2E/containerd.pid"); kill "$pid"
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$E2E/containerd.pid"
}
# (grep -c prints 0 and fails when nothing matches: "|| echo 0" would print two lines)
syncs() { local n; n=$(grep -c '"msg":"synchronized"' "$1" 2>/dev/null); echo "${n:-0}"; }
# wait_sync LOG COUNT: until the plugin's log has more synchronizations than
# COUNT; 60 s, as long as a cold containerd and a first load of the programs
# can take. On failure: the plugin's log and what containerd said of NRI.
wait_sync() {
  for i in $(seq 600); do [ "$(syncs "$1")" -gt "$2" ] && return 0; sleep 0.1; done
  echo "plugin did not synchronize in 60 s; its log ($1) ends:"; tail -15 "$1" 2>&1
  echo "containerd's log, on NRI:"; grep -i 'nri\|plugin' "$E2E/logs/containerd.log" | tail -15
  [ -s "$E2E/logs/plugin.out" ] && { echo "the plugin's stderr:"; tail -5 "$E2E/logs/plugin.out"; }
  return 1
}
start_plugin() {
  local n; n=$(syncs "$PLOG")
  nohup "$NG" plugin --socket "$E2E/nri.sock" --config "$E2E/config.yaml" --log "$PLOG" \
    --observe-socket "$E2E/observe.sock" --metrics-addr "$METRICS" >> "$E2E/logs/plugin.out" 2>&1 &
  echo $! > "$E2E/plugin.pid"
  wait_sync "$PLOG" "$n"
}
# conn CTR PORT: what busybox nc in the container says
conn() { cr exec "$1" sh -c "nc 127.0.0.1 $2 </dev/null 2>&1"; }
# udp CTR PORT: send a datagram with busybox tftp (nc has no -u here) to a
# port nobody listens on; prints what tftp said and how many datagrams the
# kernel counted arriving there (Udp NoPorts: host-network pods share it)
noports() { awk '/^Udp: [0-9]/{print $3}' /proc/net/snmp; }
udp() {
  local before out; before=$(noports)
  out=$(cr exec "$1" sh -c "timeout 1 tftp -g -r x -l /tmp/x 127.0.0.1 $2 2>&1")
  echo "$out arrived=$(( $(noports) - before ))"
}
denied() { grep -q 'Operation not permitted' <<<"$1" || { printf '%s\n' "$1"; return 1; }; }
# probe CTR OPS...: the attacker's probe (test/ngprobe) in a CRI container,
# its results on one line
probe() { local c=$1; shift; echo $(cr exec "$c" /bin/ngprobe "$@" 2>&1); }
pod() { # name, annotations (JSON object), extra -> pod config path
  cat > "$E2E/pods/$1.json" <<EOF
{"metadata":{"name":"$1","namespace":"e2e-ns","uid":"uid-$1","attempt":0},
 "annotations":$2,
 "log_directory":"$E2E/pods/$1-logs",
 "linux":{"cgroup_parent":"/kubepods/besteffort/poduid-$1","security_context":{"namespace_options":{"network":2}}}}
EOF
  echo "$E2E/pods/$1.json"
}
ctrcfg() { # name, image, command (JSON array), [annotations] -> container config path
  cat > "$E2E/pods/ctr-$1.json" <<EOF
{"metadata":{"name":"$1"},"image":{"image":"localhost/e2e/$2:latest"},"command":$3,"annotations":${4:-{\}},"log_path":"$1.log","linux":{}}
EOF
  echo "$E2E/pods/ctr-$1.json"
}
LOOP='["/bin/sh","-c","trap \"exit 0\" TERM; while :; do sleep 1; done"]'
run_ctr() { # pod-id pod-config name image command -> container id (started)
  local id; id=$(cr create "$1" "$(ctrcfg "$3" "$4" "$5")" "$2") || return 1
  cr start "$id" >/dev/null || return 1
  echo "$id"
}
event() { # jq filter over the event log; waits a little for the line
  for i in $(seq 30); do [ -n "$(jq -c "select($1)" "$EVENTS" 2>/dev/null)" ] && return 0; sleep 0.1; done
  return 1
}

