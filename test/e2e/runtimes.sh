# Sourced by run.sh: the NRI runtimes whose plugin path is the hook
# (plugin.PathHook): CRI-O 1.35 and containerd 1.7, private instances built
# from their modules (build-crio.sh, build-containerd17.sh) and cached.
# On both, the plugin decides at CreateContainer and adds nriguard's
# createRuntime hook, which attaches; the runtime's binary is nriguard-runc,
# which restricts the seccomp policy of the containers the plugin marks.
# A second runtime handler, "plain", runs Debian's runc directly: there a
# container with an egress policy is refused, saying why.

SERVER_CMD='["/bin/sh","-c","nc -ll -p 18080 -e echo hello18080 & nc -ll -p 18081 -e echo hello18081 & trap \"exit 0\" TERM; while :; do sleep 1; done"]'

# hookpath_checks NAME: the same checks on whichever runtime crictl talks to
# ($CRI_CONFIG_FILE), its plugin logging to $PLOG and events to $EVENTS.
# $PODX is extra JSON for pod and container configs (CRI-O's namespaces),
# $CLABELS a function printing a container's labels.
hookpath_checks() {
  local R=$1 out
  check "$R: the plugin chose the hook path" has '"path":"hook"' "$(grep '"msg":"connected"' "$PLOG")"
  local PCFG POD SRV CLI
  PCFG=$(rt_pod hp '{"egress.nriguard.io/container.client":"allow tcp 127.0.0.1:18081",
    "exec.nriguard.io/container.client":"allow /bin/",
    "egress.nriguard.io/container.gap":"allow tcp 127.0.0.1:18081"}')
  POD=$(cr runp "$PCFG")
  SRV=$(rt_ctr "$POD" "$PCFG" server "$SERVER_CMD")
  CLI=$(rt_ctr "$POD" "$PCFG" client "$LOOP")
  sleep 0.3
  check "$R: the hook attached the client, as the plugin's" has "^$CLI *NRI plugin" "$("$NG" list)"
  check "$R: client: 18081 allowed" has hello18081 "$(conn "$CLI" 18081)"
  out=$(conn "$CLI" 18080); check "$R: client: 18080 denied" denied "$out"
  out=$(cr exec "$CLI" /opt/bin/tool echo hi 2>&1); check "$R: client: a program not allowed never runs" test -z "$(grep -x hi <<<"$out")"
  out=$(cr exec "$CLI" arping -c1 -w1 -I lo 127.0.0.1 2>&1); check "$R: client: AF_PACKET refused (seccomp, from nriguard-runc)" denied "$out"
  check "$R: client: AF_VSOCK and io_uring refused, TCP allowed" same "EPERM EPERM ok" "$(probe "$CLI" socket:vsock iouring:setup socket:tcp)"
  echo "   $R: without a policy (server): a frame through socket(AF_INET, SOCK_PACKET): $(probe "$SRV" frame:lo:$HOSTIP:18098)"
  check "$R: client: socket(AF_INET, SOCK_PACKET) refused, no frame sent" same "EPERM EPERM" "$(probe "$CLI" frame:lo:$HOSTIP:18098 socket:sockpacket)"
  check "$R: client: CAP_NET_RAW (bit 13) taken away" \
    test $(( 0x$(cr exec "$CLI" grep CapBnd /proc/self/status | awk '{print $2}') >> 13 & 1 )) = 0
  check "$R: server (no labels): 18080 reachable, nothing pinned" has hello18080 "$(conn "$SRV" 18080; test ! -e "$PINS/$SRV" || echo pinned)"
  check "$R: the plugin's events name the client" event '.verdict=="denied" and .container=="client" and .port==18080'
  out=$(cr create "$POD" "$(rt_ctrcfg bad "$LOOP" '{"egress.nriguard.io":"allow tcp 10.0.0/33"}')" "$PCFG" 2>&1)
  check "$R: an invalid annotation is refused, naming key and rule" has 'egress.nriguard.io: rule 1 .*allow tcp 10.0.0/33.*: invalid prefix length 33' "$out"

  # plain runc: the container's seccomp policy lets it make any socket
  local PPLAIN PL
  PPLAIN=$(rt_pod plain '{"egress.nriguard.io":"allow tcp 127.0.0.1:18081"}')
  PL=$(cr runp --runtime plain "$PPLAIN")
  out=$( { id=$(cr create "$PL" "$(rt_ctrcfg lone "$LOOP")" "$PPLAIN") && cr start "$id"; } 2>&1)
  check "$R: without nriguard-runc an egress container is refused, saying what to do" has 'has an egress policy, but .*nriguard-runc' "$out"
  check "$R: ... and nothing runs or stays pinned for it" test -z "$(cr ps -q --name lone)$(ls $PINS | grep -v '^_' | grep -vx -e "$CLI")"

  # nriguard down: what runs stays held; what starts meanwhile runs without
  # its policy until the plugin is back (docs/install.md)
  kill "$(cat "$E2E/plugin.pid")"; sleep 0.3
  out=$(conn "$CLI" 18080); check "$R: plugin down: the client is still held (18080 denied)" denied "$out"
  local GAP; GAP=$(rt_ctr "$POD" "$PCFG" gap "$LOOP")
  check "$R: plugin down: a new labelled container starts without its policy (the gap the docs describe)" has hello18080 "$(conn "$GAP" 18080)"
  start_hookpath_plugin
  out=$(conn "$GAP" 18080); check "$R: plugin back: it attaches the policy of the container that started meanwhile" denied "$out"
  check "$R: ... and says its seccomp policy could not be checked" has "\"container_id\":\"$GAP\"" "$(grep 'seccomp' "$PLOG")"
  out=$(conn "$CLI" 18080); check "$R: plugin back: the client is still held" denied "$out"

  for c in $(crictl ps -aq); do cr rm -f "$c" >/dev/null; done
  for p in $(crictl pods -q); do cr stopp "$p" >/dev/null; cr rmp -f "$p" >/dev/null; done
  check "$R: all removed: no attachments left" test -z "$(ls $PINS | grep -v '^_')"
  check "$R: all removed: no decisions left for the hook" test -z "$(ls /run/nriguard/handoff 2>/dev/null)"
}

start_hookpath_plugin() {
  local n; n=$(syncs "$PLOG")
  nohup "$NG" plugin --socket "$RT_NRI" --config "$E2E/config.yaml" --log "$PLOG" >> "$E2E/logs/plugin.out" 2>&1 &
  echo $! > "$E2E/plugin.pid"
  wait_sync "$PLOG" "$n"
}

# ---------------------------------------------------------------------------
# CRI-O 1.35.2: conmon and runc from Debian, images loaded into its storage
# with podman. Its pod and containers use their own pid namespace: with the
# CRI default (the pod's), CRI-O makes an infra container whose
# oom_score_adj this VM refuses. It names NRI containers from the
# io.kubernetes.container.name label, as the kubelet sets it.
crio_e2e() {
  say "CRI-O $(crio --version 2>/dev/null | awk '/^Version:/{print $2}') with nriguard (external plugin, hook path)"
  local C=$E2E/crio
  mkdir -p $C/{root,run,logs,ns,nri/plugins,nri/conf.d,cni/net.d,exits,attach,lib,runc,podman-tmp,auth,policies}
  ln -sf "$NG" "$E2E/bin/nriguard-runc"
  cat > $C/crio.conf <<EOF
[crio]
root = "$C/root"
runroot = "$C/run"
storage_driver = "overlay"
log_dir = "$C/logs/pods"
version_file = "$C/run/version"
version_file_persist = "$C/lib/version"
clean_shutdown_file = "$C/lib/clean.shutdown"
[crio.api]
listen = "$C/crio.sock"
stream_address = "127.0.0.1"
stream_port = "0"
[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
namespaces_dir = "$C/ns"
pinns_path = "$CACHE/bin/pinns"
container_exits_dir = "$C/exits"
container_attach_socket_dir = "$C/attach"
hooks_dir = []
decryption_keys_path = "$C/keys"
[crio.runtime.runtimes.runc]
runtime_path = "$E2E/bin/nriguard-runc"
runtime_type = "oci"
runtime_root = "$C/runc"
monitor_path = "/usr/bin/conmon"
monitor_cgroup = "pod"
[crio.runtime.runtimes.plain]
runtime_path = "/usr/sbin/runc"
runtime_type = "oci"
runtime_root = "$C/runc"
monitor_path = "/usr/bin/conmon"
monitor_cgroup = "pod"
[crio.image]
pause_image = "localhost/e2e/pause:latest"
pause_command = "/bin/pause"
signature_policy = "$C/policy.json"
signature_policy_dir = "$C/policies"
namespaced_auth_dir = "$C/auth"
[crio.network]
network_dir = "$C/cni/net.d"
plugin_dirs = ["/usr/lib/cni"]
[crio.metrics]
enable_metrics = false
[crio.nri]
enable_nri = true
nri_listen = "$C/nri.sock"
nri_plugin_dir = "$C/nri/plugins"
nri_plugin_config_dir = "$C/nri/conf.d"
EOF
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' > $C/policy.json
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' $C $C > $C/storage.conf
  printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\ntmp_dir = "%s/podman-tmp"\n' $C > $C/containers.conf
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' $C/crio.sock $C/crio.sock > $C/crictl.yaml
  local PODMAN="env CONTAINERS_CONF=$C/containers.conf CONTAINERS_STORAGE_CONF=$C/storage.conf podman --root $C/root --runroot $C/run --storage-driver overlay --tmpdir $C/podman-tmp"
  $PODMAN load -q -i "$E2E/busybox.tar" >/dev/null 2>&1
  $PODMAN tag localhost/e2e/busybox:latest localhost/e2e/pause:latest   # pause_command: /bin/pause
  NRIGUARD_CONFIG=$E2E/config.yaml nohup crio --config $C/crio.conf --config-dir $C/crio.conf.d >> "$E2E/logs/crio.log" 2>&1 &
  echo $! > "$E2E/crio.pid"
  export CRI_CONFIG_FILE=$C/crictl.yaml RT_NRI=$C/nri.sock
  for i in $(seq 100); do crictl info >/dev/null 2>&1 && break; sleep 0.1; done
  crictl info >/dev/null 2>&1 || { bad "CRI-O started"; tail -5 "$E2E/logs/crio.log"; return; }
  rt_pod() { # name annotations
    cat > "$E2E/pods/crio-$1.json" <<EOF
{"metadata":{"name":"$1","namespace":"e2e-ns","uid":"uid-crio-$1","attempt":0},
 "annotations":$2,
 "labels":{"io.kubernetes.pod.name":"$1","io.kubernetes.pod.namespace":"e2e-ns","io.kubernetes.pod.uid":"uid-crio-$1"},
 "log_directory":"$E2E/pods/crio-$1-logs",
 "linux":{"cgroup_parent":"/kubepods/besteffort/poduid-crio-$1","security_context":{"namespace_options":{"network":2,"pid":1}}}}
EOF
    echo "$E2E/pods/crio-$1.json"
  }
  rt_ctrcfg() { # name command [annotations]
    cat > "$E2E/pods/crio-ctr-$1.json" <<EOF
{"metadata":{"name":"$1"},"labels":{"io.kubernetes.container.name":"$1"},"image":{"image":"localhost/e2e/busybox:latest"},
 "command":$2,"annotations":${3:-{\}},"log_path":"$1.log","linux":{"security_context":{"namespace_options":{"network":2,"pid":1}}}}
EOF
    echo "$E2E/pods/crio-ctr-$1.json"
  }
  rt_ctr() { local id; id=$(cr create "$1" "$(rt_ctrcfg "$3" "$4")" "$2") && cr start "$id" >/dev/null && echo "$id"; }
  start_hookpath_plugin || { bad "CRI-O: plugin connected"; stop_crio; return; }
  hookpath_checks "CRI-O"
  stop_crio
}

stop_crio() {
  kill "$(cat "$E2E/plugin.pid" 2>/dev/null)" 2>/dev/null; rm -f "$E2E/plugin.pid"
  local pid; pid=$(cat "$E2E/crio.pid"); kill "$pid"
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$E2E/crio.pid"
  export CRI_CONFIG_FILE=$E2E/crictl.yaml
}

# ---------------------------------------------------------------------------
# containerd 1.7.35 (NRI v0.8.0: no seccomp adjustment, no validator), its
# own binaries first in PATH (containerd finds its shim there).
c17_e2e() {
  say "containerd $(PATH=$CACHE/c17/bin:$PATH containerd --version | awk '{print $3}') with nriguard (external plugin, hook path)"
  local D=$E2E/c17
  mkdir -p $D/{nri/plugins,nri/conf.d}
  ln -sf "$NG" "$E2E/bin/nriguard-runc"
  cat > $D/config.toml <<EOF
version = 2
root = '$D/root'
state = '$D/state'
imports = []
[grpc]
  address = '$D/containerd.sock'
[ttrpc]
  address = '$D/containerd.sock.ttrpc'
[plugins]
  [plugins.'io.containerd.grpc.v1.cri']
    sandbox_image = 'localhost/e2e/pause:latest'
    restrict_oom_score_adj = true
    [plugins.'io.containerd.grpc.v1.cri'.containerd]
      snapshotter = 'overlayfs'
      default_runtime_name = 'runc'
      [plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.runc.options]
          BinaryName = '$E2E/bin/nriguard-runc'
          Root = '$D/runc'
          SystemdCgroup = false
      [plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.plain]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.plain.options]
          BinaryName = '/usr/sbin/runc'
          Root = '$D/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.grpc.v1.cri'.cni]
      conf_dir = '$D/cni/net.d'
  [plugins.'io.containerd.nri.v1.nri']
    disable = false
    socket_path = '$D/nri.sock'
    plugin_path = '$D/nri/plugins'
    plugin_config_path = '$D/nri/conf.d'
EOF
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' $D/containerd.sock $D/containerd.sock > $D/crictl.yaml
  NRIGUARD_CONFIG=$E2E/config.yaml PATH=$CACHE/c17/bin:$PATH nohup containerd --config $D/config.toml >> "$E2E/logs/containerd17.log" 2>&1 &
  echo $! > "$E2E/containerd17.pid"
  export CRI_CONFIG_FILE=$D/crictl.yaml RT_NRI=$D/nri.sock
  for i in $(seq 100); do crictl info >/dev/null 2>&1 && break; sleep 0.1; done
  crictl info >/dev/null 2>&1 || { bad "containerd 1.7 started"; tail -5 "$E2E/logs/containerd17.log"; return; }
  $CACHE/c17/bin/ctr --address $D/containerd.sock -n k8s.io images import --all-platforms "$E2E/images.tar" >/dev/null
  rt_pod() { pod "c17-$1" "$2"; }
  rt_ctrcfg() { ctrcfg "$1" busybox "$2" "${3:-}"; }
  rt_ctr() { run_ctr "$1" "$2" "$3" busybox "$4"; }
  start_hookpath_plugin || { bad "containerd 1.7: plugin connected"; stop_c17; return; }
  hookpath_checks "containerd 1.7"
  stop_c17
}

stop_c17() {
  kill "$(cat "$E2E/plugin.pid" 2>/dev/null)" 2>/dev/null; rm -f "$E2E/plugin.pid"
  local pid; pid=$(cat "$E2E/containerd17.pid"); kill "$pid"
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$E2E/containerd17.pid"
  export CRI_CONFIG_FILE=$E2E/crictl.yaml
}
