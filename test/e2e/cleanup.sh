#!/bin/bash
# Leave the machine as the e2e found it: containers, pods, plugin, containerd,
# mounts, cgroups, pins, logs. Keeps the cache ($CACHE). Safe to run twice.
. "$(dirname "$0")/lib.sh"
if [ -S "$E2E/ctrd/containerd.sock" ]; then
  for c in $(crictl ps -aq 2>/dev/null); do crictl rm -f "$c" >/dev/null 2>&1; done
  for p in $(crictl pods -q 2>/dev/null); do crictl rmp -f "$p" >/dev/null 2>&1; done
fi
for sock in "$E2E/crio/crio.sock" "$E2E/c17/containerd.sock"; do
  [ -S "$sock" ] || continue
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 10\n' "$sock" "$sock" > "$E2E/.crictl-cleanup.yaml"
  for c in $(crictl --config "$E2E/.crictl-cleanup.yaml" ps -aq 2>/dev/null); do crictl --config "$E2E/.crictl-cleanup.yaml" rm -f "$c" >/dev/null 2>&1; done
  for p in $(crictl --config "$E2E/.crictl-cleanup.yaml" pods -q 2>/dev/null); do crictl --config "$E2E/.crictl-cleanup.yaml" rmp -f "$p" >/dev/null 2>&1; done
done
rm -f "$E2E/.crictl-cleanup.yaml"
# the Kubernetes tier (k8s.sh): its control plane, kubelet and containerd
if [ -d "$E2E/k8s" ]; then . "$REPO/test/e2e/k8s.sh"; k8s_stop; fi
for f in plugin containerd crio containerd17; do
  if [ -f "$E2E/$f.pid" ]; then
    pid=$(cat "$E2E/$f.pid"); kill "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null; rm -f "$E2E/$f.pid"
  fi
done
# shims and plugins that containerd started (by their socket dir or path)
pkill -f "containerd-shim-runc-v2 .*-address $E2E/" 2>/dev/null
pkill -f "conmon .*$E2E/crio" 2>/dev/null
pkill -f "^$E2E/nri/plugins/" 2>/dev/null
if command -v podman >/dev/null && [ -d "$E2E/podman/root" ]; then
  CONTAINERS_CONF=$E2E/podman/containers.conf CONTAINERS_STORAGE_CONF=$E2E/podman/storage.conf \
    podman --root "$E2E/podman/root" --runroot "$E2E/podman/runroot" --tmpdir "$E2E/podman/tmp" rm -af >/dev/null 2>&1
fi
grep -o " $E2E[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
for h in "$CGV2" /sys/fs/cgroup/*/; do
  for d in k8s.io kubepods libpod_parent; do
    [ -d "$h/$d" ] && find "$h/$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
done
# pins: whatever is under the pin root that was not there when the e2e
# started (the run refuses to start next to another nriguard's attachments)
if [ -d $PINS ] && [ -e "$E2E/.pins-before" ]; then
  for d in $PINS/*; do
    n=$(basename "$d")
    [ -e "$d" ] && ! grep -qx "$n" "$E2E/.pins-before" || continue
    case $n in _*) rm -rf "$d" ;; *) "$NG" detach "$n" 2>/dev/null ;; esac
  done
  [ -e "$E2E/.made-pins" ] && rmdir $PINS 2>/dev/null
fi
# decisions the plugin left for hooks that never ran (the e2e runs alone:
# no other nriguard's are there)
rm -f /run/nriguard/handoff/* 2>/dev/null
rmdir /run/nriguard/handoff 2>/dev/null
if [ -e "$E2E/.made-outside" ]; then
  while read -r d; do rm -rf "$d"; done < "$E2E/.made-outside"
  mv "$E2E/.made-outside" "$E2E/.made-outside.done"
fi
rm -rf "$E2E/k8s" "$E2E/crio" "$E2E/c17" "$E2E/podman" "$E2E/nerdctl" "$E2E/hooks.d" "$E2E/ctrd" "$E2E/nri" "$E2E/logs" "$E2E/pods" "$E2E"/*.pid "$E2E/nri.sock" "$E2E/.made-pins" "$E2E/.pins-before"
true
