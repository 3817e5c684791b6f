# Sourced by run.sh: the OCI hook mode, for containers that never reach NRI.

# podman (Debian's 4.3, runc) with the hooks.d files of install/, pointed at
# this build and the e2e's node settings; private storage under $E2E/podman.
podman_e2e() {
  say "OCI hook: podman --hooks-dir (install/hooks.d)"
  mkdir -p "$E2E/podman"/{root,runroot,tmp} "$E2E/hooks.d"
  local f
  for f in "$REPO"/install/hooks.d/*.json; do
    jq --arg ng "$NG" --arg conf "NRIGUARD_CONFIG=$E2E/config.yaml" '.hook.path=$ng | .hook.env=[$conf]' "$f" > "$E2E/hooks.d/$(basename "$f")"
  done
  printf '[containers]\nnetns = "host"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "%s"\nruntime = "runc"\n[engine.runtimes]\nrunc = ["/usr/sbin/runc"]\n' \
    "$E2E/podman/events.log" > "$E2E/podman/containers.conf"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$E2E/podman/root" "$E2E/podman/runroot" > "$E2E/podman/storage.conf"
  export CONTAINERS_CONF=$E2E/podman/containers.conf CONTAINERS_STORAGE_CONF=$E2E/podman/storage.conf
  local P="podman --root $E2E/podman/root --runroot $E2E/podman/runroot --tmpdir $E2E/podman/tmp --hooks-dir $E2E/hooks.d"
  # this VM lacks CAP_SYS_RESOURCE: podman's default rlimits cannot be set
  local R="--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=32768:32768 --network host"
  $P load -q -i "$E2E/busybox.tar" >/dev/null 2>&1
  # the hook cannot change a container's seccomp policy: podman's default
  # profile, restricted to the sockets nriguard judges, for labelled ones
  "$NG" seccomp --from /usr/share/containers/seccomp.json > "$E2E/seccomp.json"
  local S="--security-opt seccomp=$E2E/seccomp.json"
  "$NG" events > "$E2E/logs/hook-events.jsonl" 2>&1 &
  local reader=$!
  $P run -d $R --name srv localhost/e2e/busybox:latest \
    sh -c 'nc -ll -p 18080 -e echo hello18080 & nc -ll -p 18081 -e echo hello18081 & trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null
  $P run -d $R $S --name cli --annotation 'egress.nriguard.io=allow tcp 127.0.0.1:18081' --annotation 'exec.nriguard.io=allow /bin/' \
    localhost/e2e/busybox:latest sh -c 'trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null
  $P run -d $R $S --name qual --annotation 'egress.nriguard.io=allow tcp 127.0.0.1:18081 exe=/opt/bin/nc; allow tcp 127.0.0.1:18095 exe=/opt/bin/nc' \
    localhost/e2e/busybox:latest sh -c 'trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null
  sleep 0.3
  local id out qid
  id=$($P inspect cli --format '{{.Id}}')
  qid=$($P inspect qual --format '{{.Id}}')
  check "podman: exe=: /opt/bin/nc reaches 18081" has hello18081 "$($P exec qual /opt/bin/nc 127.0.0.1 18081 </dev/null 2>&1)"
  out=$($P exec qual nc 127.0.0.1 18081 </dev/null 2>&1); check "podman: exe=: busybox nc (a copy of the same bytes) is refused" denied "$out"
  check "podman: exe=: another program is refused (ngprobe)" same "EPERM ok" "$(echo $($P exec qual /bin/ngprobe tcp:127.0.0.1:18095 sleep:500 2>&1))"
  check "podman: the hook attached (owner: hook)" test -e "$PINS/$id/meta"
  check "podman: 18081 allowed" has hello18081 "$($P exec cli nc 127.0.0.1 18081 </dev/null 2>&1)"
  out=$($P exec cli nc 127.0.0.1 18080 </dev/null 2>&1); check "podman: 18080 denied" denied "$out"
  out=$($P exec cli /opt/bin/tool echo hi 2>&1); check "podman: denied program never runs" test -z "$(grep -x hi <<<"$out")"
  check "podman: the container without annotations is untouched" has hello18080 "$($P exec srv nc 127.0.0.1 18080 </dev/null 2>&1)"
  # podman's profile refuses what it does not allow with ENOSYS: so does its restricted copy
  check "podman: AF_VSOCK, AF_PACKET and io_uring refused (nriguard's profile); tcp allowed" \
    same "ENOSYS ENOSYS ENOSYS ok" "$(echo $($P exec cli /bin/ngprobe socket:vsock socket:packetdgram iouring:setup socket:tcp 2>&1))"
  echo "   podman: without a policy (srv): a frame through socket(AF_INET, SOCK_PACKET): $($P exec srv /bin/ngprobe frame:lo:$HOSTIP:18098 2>&1)"
  check "podman: socket(AF_INET, SOCK_PACKET) refused (nriguard's profile), no frame sent" \
    same "ENOSYS ENOSYS" "$(echo $($P exec cli /bin/ngprobe frame:lo:$HOSTIP:18098 socket:sockpacket 2>&1))"
  # exec rules are resolved in the container's own mount namespace: a file
  # of a volume (invisible where the hook runs) is the file denied
  # (busybox runs the applet its name says: a/echo is tool, b/echo is other)
  mkdir -p "$E2E/vol/a" "$E2E/vol/b" && cp /bin/busybox "$E2E/vol/tool" && cp /bin/busybox "$E2E/vol/other" &&
    ln -sf ../tool "$E2E/vol/a/echo" && ln -sf ../other "$E2E/vol/b/echo"
  $P run -d $R --name vol -v "$E2E/vol:/data" --annotation 'exec.nriguard.io=deny /data/tool; default allow' \
    localhost/e2e/busybox:latest sh -c 'trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null
  local vid; vid=$($P inspect vol --format '{{.Id}}')
  out=$($P exec vol /data/a/echo hi 2>&1); local rc=$?
  check "podman: a volume's file the exec rules deny never runs (exit $rc)" test "$rc" = 137 -a -z "$(grep -x hi <<<"$out")"
  check "podman: another file of the volume runs" hasline hi "$($P exec vol /data/b/echo hi 2>&1)"
  sleep 0.2
  check "podman: the volume file's refusal is reported" \
    test -n "$(jq -c --arg id "$vid" 'select(.container_id==$id and .kind=="exec" and .verdict=="denied" and .filename=="/data/a/echo")' "$E2E/logs/hook-events.jsonl" 2>/dev/null)"
  $P rm -f vol >/dev/null 2>&1
  out=$($P run $R --rm --annotation 'egress.nriguard.io=allow tcp 127.0.0.1:18081' localhost/e2e/busybox:latest true 2>&1)
  check "podman: a labelled container whose seccomp profile allows other socket families is refused, saying why" \
    has 'lets it make sockets the hooks cannot judge: socket families .*AF_VSOCK 40' "$out"
  out=$($P run $R --name bad --annotation 'egress.nriguard.io=allow tcp 10.0.0/33' localhost/e2e/busybox:latest true 2>&1)
  echo "   podman run says: $(grep -o 'nriguard: .*' <<<"$out" | head -1 | cut -c1-140)"
  check "podman: an invalid annotation refuses the container, naming key and rule" \
    grep -q 'egress.nriguard.io: rule 1 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)' <<<"$out"
  sleep 0.2
  check "podman: nriguard events names the container of a denial" \
    test -n "$(jq -c --arg id "$id" 'select(.container_id==$id and .verdict=="denied" and .port==18080)' "$E2E/logs/hook-events.jsonl" 2>/dev/null)"
  check "podman: the event names the program that was refused" \
    test -n "$(jq -c --arg id "$qid" 'select(.container_id==$id and .verdict=="denied" and .port==18095 and .exe=="/bin/ngprobe")' "$E2E/logs/hook-events.jsonl" 2>/dev/null)"
  # rules by DNS name through the hook: a DNS server on the host answers
  $P run -d $R $S --name named --annotation 'egress.nriguard.io=allow udp 127.0.0.53:53; allow tcp api.e2e.test:18097; default deny' \
    localhost/e2e/busybox:latest sh -c 'trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null
  "$E2E/bin/ngprobe" dnsserve:127.0.0.53,198.51.100.46 > "$E2E/logs/dnsserve-podman.txt" 2>&1 &
  local dns=$!
  for i in $(seq 50); do grep -q ready "$E2E/logs/dnsserve-podman.txt" 2>/dev/null && break; sleep 0.1; done
  check "podman: rules by DNS name: the answer's address allowed at once (not EPERM), another refused" \
    has '^\(ok\|ENETUNREACH\|EHOSTUNREACH\|ETIMEDOUT\) EPERM$' "$(echo $($P exec named /bin/ngprobe resolve:127.0.0.53,api.e2e.test,a,18097 connect:198.51.100.47:18097 2>&1))"
  wait $dns
  $P rm -f named >/dev/null 2>&1
  # nriguard profile: an unpoliced container asks to be seen, is profiled,
  # and the same workload runs held to the printed flags
  local work='trap "exit 0" TERM; while :; do nc 127.0.0.1 18081 </dev/null >/dev/null 2>&1; sleep 0.5; done'
  $P run -d $R --name learn --annotation visibility.nriguard.io=both localhost/e2e/busybox:latest sh -c "$work" >/dev/null
  local lid flags
  lid=$($P inspect learn --format '{{.Id}}')
  sleep 3
  flags=$("$NG" profile --container "$lid" --since 2m --events "$E2E/logs/hook-events.jsonl" -o flags 2> "$E2E/logs/podman-profile.err" | grep -v '^#')
  echo "   podman: learned: $flags"
  check "podman: profile learned the destination and the programs" has "egress.nriguard.io=allow tcp 127.0.0.1:18081.*exec.nriguard.io=allow /bin/\(sh\|busybox\)" "$flags"
  $P rm -f learn >/dev/null 2>&1
  eval "$P run -d $R $S --name learned $flags localhost/e2e/busybox:latest sh -c \"\$work\"" >/dev/null
  local eid; eid=$($P inspect learned --format '{{.Id}}')
  sleep 3
  check "podman: the profiled workload runs enforced with zero refusals" \
    test -z "$(jq -c --arg id "$eid" 'select(.container_id==$id and .verdict=="denied")' "$E2E/logs/hook-events.jsonl" 2>/dev/null)"
  check "podman: ... and reaches what it did" has hello18081 "$($P exec learned nc 127.0.0.1 18081 </dev/null 2>&1)"
  out=$($P exec learned nc 127.0.0.1 18080 </dev/null 2>&1); check "podman: ... not what it never did" denied "$out"
  out=$($P exec learned /opt/bin/tool echo hi 2>&1); check "podman: ... nor a program it never ran" test -z "$(grep -x hi <<<"$out")"
  $P rm -f learned >/dev/null 2>&1
  check "podman: removed: its pins are gone" test ! -e "$PINS/$eid"
  kill $reader 2>/dev/null; wait $reader 2>/dev/null
  # no plugin here: nriguard observe reads the pinned ring itself
  "$NG" observe --socket "$E2E/no-plugin.sock" --kind connect > "$E2E/logs/observe-hook.jsonl" 2> "$E2E/logs/observe-hook.err" &
  local obs=$!
  sleep 1.5 # (it looks for the pinned ring once a second)
  $P exec qual /bin/ngprobe tcp:127.0.0.1:18095 sleep:300 >/dev/null 2>&1
  sleep 1
  kill $obs 2>/dev/null; wait $obs 2>/dev/null
  check "podman: nriguard observe with no plugin says so and reads the pinned ring" has 'no plugin serves' "$(cat "$E2E/logs/observe-hook.err")"
  check "podman: ... and shows the refusal" \
    test -n "$(jq -c --arg id "$qid" 'select(.container_id==$id and .kind=="connect" and .port==18095)' "$E2E/logs/observe-hook.jsonl" 2>/dev/null)"
  $P stop -t 2 cli >/dev/null
  $P stop -t 2 qual >/dev/null
  check "podman: stop runs poststop: the exe= container's pins gone" test ! -e "$PINS/$qid"
  check "podman: stop runs poststop: pins gone" test ! -e "$PINS/$id"
  $P rm -af >/dev/null 2>&1
  unset CONTAINERS_CONF CONTAINERS_STORAGE_CONF
}

# The runc wrapper, for runtimes without hooks.d (nerdctl --runtime, ctr
# --runc-binary): a real containerd runs the container through nriguard-runc.
wrapper_e2e() {
  say "OCI hook through the runc wrapper: ctr run --runc-binary nriguard-runc"
  ln -sf "$NG" "$E2E/bin/nriguard-runc"
  start_containerd
  local C="ctr -a $E2E/ctrd/containerd.sock -n k8s.io" out
  $C images import --all-platforms "$E2E/images.tar" >/dev/null 2>&1
  NRIGUARD_CONFIG=$E2E/config.yaml $C run -d --net-host --runc-binary "$E2E/bin/nriguard-runc" \
    --annotation 'egress.nriguard.io=allow tcp 127.0.0.1:18081' localhost/e2e/busybox:latest wrapped \
    sh -c 'nc -ll -p 18081 -e echo hello18081 & trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null 2>&1
  sleep 0.3
  check "wrapper: the hook it added attached" test -e "$PINS/wrapped/meta"
  out=$($C task exec --exec-id t1 wrapped nc 127.0.0.1 18080 </dev/null 2>&1); check "wrapper: 18080 denied" denied "$out"
  check "wrapper: 18081 allowed" has hello18081 "$($C task exec --exec-id t2 wrapped nc 127.0.0.1 18081 </dev/null 2>&1)"
  $C task kill -s KILL wrapped >/dev/null 2>&1
  sleep 0.3
  $C task delete wrapped >/dev/null 2>&1
  check "wrapper: task delete runs poststop: pins gone" test ! -e "$PINS/wrapped"
  $C container rm wrapped >/dev/null 2>&1
  stop_containerd
}

# nerdctl (built from its module, see setup.sh) through the same wrapper:
# nerdctl run --runtime nriguard-runc --annotation ...
nerdctl_e2e() {
  say "OCI hook for nerdctl: nerdctl run --runtime nriguard-runc --annotation"
  ln -sf "$NG" "$E2E/bin/nriguard-runc"
  start_containerd
  local N="nerdctl --address $E2E/ctrd/containerd.sock --namespace k8s.io --data-root $E2E/nerdctl" out
  ctr -a "$E2E/ctrd/containerd.sock" -n k8s.io images import --all-platforms "$E2E/images.tar" >/dev/null 2>&1
  NRIGUARD_CONFIG=$E2E/config.yaml $N run -d --net host --runtime "$E2E/bin/nriguard-runc" --name nn \
    --annotation 'egress.nriguard.io=allow tcp 127.0.0.1:18081' --annotation 'exec.nriguard.io=allow /bin/' \
    localhost/e2e/busybox:latest sh -c 'nc -ll -p 18081 -e echo hello18081 & trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null 2>"$E2E/logs/nerdctl.err"
  sleep 0.3
  local id; id=$($N inspect nn --format '{{.ID}}' 2>/dev/null)
  check "nerdctl: the hook attached" test -n "$id" -a -e "$PINS/$id/meta"
  out=$($N exec nn nc 127.0.0.1 18080 </dev/null 2>&1); check "nerdctl: 18080 denied" denied "$out"
  check "nerdctl: 18081 allowed" has hello18081 "$($N exec nn nc 127.0.0.1 18081 </dev/null 2>&1)"
  out=$($N exec nn /opt/bin/tool echo hi 2>&1); check "nerdctl: denied program never runs" test -z "$(grep -x hi <<<"$out")"
  out=$($N exec nn arping -c1 -w1 -I lo 127.0.0.1 2>&1); check "nerdctl: AF_PACKET socket refused (seccomp, added by the wrapper)" denied "$out"
  check "nerdctl: AF_VSOCK and io_uring refused too" same "EPERM EPERM ok" "$(echo $($N exec nn /bin/ngprobe socket:vsock iouring:setup socket:tcp 2>&1))"
  check "nerdctl: the wrapper took CAP_NET_RAW (bit 13) away" \
    test $(( 0x$($N exec nn grep CapBnd /proc/self/status | awk '{print $2}') >> 13 & 1 )) = 0
  out=$(NRIGUARD_CONFIG=$E2E/config.yaml $N run --net host --runtime "$E2E/bin/nriguard-runc" --rm \
    --annotation 'egress.nriguard.io=allow tcp 10.0.0/33' localhost/e2e/busybox:latest true 2>&1)
  check "nerdctl: an invalid annotation refuses the container, naming key and rule" has 'egress.nriguard.io: rule 1' "$out"
  $N rm -f nn >/dev/null 2>&1
  check "nerdctl: rm runs poststop: pins gone" test -n "$id" -a ! -e "$PINS/$id"
  stop_containerd
}
