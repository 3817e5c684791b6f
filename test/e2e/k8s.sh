# Sourced by run.sh: a real Kubernetes node (build-k8s.sh). etcd (Debian's
# etcd-server), kube-apiserver, kube-scheduler and kube-controller-manager
# (the DaemonSet controller) from the same release, a kubelet on the
# containerd 2.x the e2e builds, and nriguard installed as docs/install.md
# tells an operator: its image built from install/kubernetes/Dockerfile and
# imported, the containerd drop-in (install/containerd/nriguard.toml) with the
# validator that makes nriguard required, and the Helm chart
# (install/helm/nriguard, `helm install` with its default values: what
# install/kubernetes/daemonset.yaml is, `make lint` checks) with its
# admission policy for the toleration annotation.
# containerd serves its default sockets (/run/containerd/containerd.sock,
# /var/run/nri/nri.sock) so that the chart's defaults hold; its root and
# state stay under $K8S. Test pods use the node's network (no CNI here).

K8S=$E2E/k8s
KBIN=$CACHE/k8s/bin
K8S_NODE=nriguard-e2e-node
K8S_CGROOT=nriguard-e2e-kubelet   # the kubelet's own cgroupRoot (see below)
K8S_NS=nriguard-e2e
K8S_SYSCTLS="kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
# kubectl and helm (scripts/build-helm.sh) keep their discovery cache and
# state under $K8S: nothing in $HOME (~/.kube/cache, ~/.cache/helm)
kc() { KUBECACHEDIR=$K8S/kube-cache "$KBIN/kubectl" --kubeconfig "$K8S/kubeconfig" "$@"; }
hm() {
  KUBECACHEDIR=$K8S/kube-cache HELM_CACHE_HOME=$K8S/helm/cache HELM_CONFIG_HOME=$K8S/helm/config \
    HELM_DATA_HOME=$K8S/helm/data "$CACHE/bin/helm" --kubeconfig "$K8S/kubeconfig" "$@"
}
CHART=$REPO/install/helm/nriguard
VAP=nriguard-toleration   # the chart's ValidatingAdmissionPolicy and its binding (release nriguard)
TOLERATE=tolerate-missing-plugins.nriguard.io
kcr() { crictl --config "$K8S/crictl.yaml" "$@" 2>/dev/null; }
# every cgroup hierarchy's mount point (v1 ones and v2; pure v2 hosts have one)
cg_hiers() { awk '$3=="cgroup" || $3=="cgroup2" {print $2}' /proc/mounts; }

# k8s_start: containerd, control plane and kubelet; nriguard is not running yet.
k8s_start() {
  if [ -e /run/containerd/containerd.sock ] || [ -e /var/run/nri/nri.sock ]; then
    echo "k8s: a containerd or NRI socket is already at the default path: this tier needs those paths"; return 1
  fi
  # from here on $K8S exists: k8s_stop (and cleanup.sh) may stop what is ours
  mkdir -p "$K8S"/{ctrd,nri/plugins,nri/conf.d,logs,kubelet,podlogs,volplugins,pki,etcd,certs,podman/tmp}
  sysctl $K8S_SYSCTLS > "$K8S/sysctl.before"   # the kubelet rewrites them
  [ -e /var/lib/kubelet ] || touch "$K8S/.made-var-lib-kubelet"
  # The DaemonSet mounts /sys/fs/bpf Bidirectional (docs/install.md): the
  # host's bpffs must be a shared mount, as systemd makes it. This host has
  # no systemd: a private bpffs is made shared for the test, private after.
  if [ "$(awk '$5=="/sys/fs/bpf"{print $7}' /proc/self/mountinfo)" = - ]; then
    mount --make-shared /sys/fs/bpf && touch "$K8S/.made-bpffs-shared"
  fi
  # the default NRI socket, /var/run/nri/nri.sock (the DaemonSet mounts it);
  # a network config so that the node is Ready (test pods use the node's
  # network: nothing is ever set up with it)
  containerd_config "$K8S/ctrd" /run/containerd/containerd.sock "" "    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '$K8S/cni'" > "$K8S/ctrd/config.toml"
  mkdir -p "$K8S/cni"
  cat > "$K8S/cni/10-e2e.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "e2e", "plugins": [{"type": "bridge", "bridge": "ng-e2e0", "ipam": {"type": "host-local", "subnet": "10.244.0.0/24", "dataDir": "$K8S/cni-ipam"}}]}
EOF
  printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 30\n' > "$K8S/crictl.yaml"
  containerd --config "$K8S/ctrd/config.toml" >> "$K8S/logs/containerd.log" 2>&1 &
  echo $! > "$K8S/containerd.pid"; disown
  for i in $(seq 100); do kcr info >/dev/null && break; sleep 0.1; done
  kcr info >/dev/null || { echo "k8s: containerd did not start"; return 1; }
  ctr -a /run/containerd/containerd.sock -n k8s.io images import --all-platforms "$E2E/images.tar" >/dev/null 2>>"$K8S/logs/ctr.log" || return 1

  # nriguard's image, as docs/install.md says: make build, build the Dockerfile, import
  make -s -C "$REPO" build >/dev/null || return 1   # static (CGO_ENABLED=0): the image is FROM scratch
  local P="podman --root $K8S/podman/root --runroot $K8S/podman/runroot --tmpdir $K8S/podman/tmp --storage-driver vfs"
  CONTAINERS_CONF=/dev/null $P build -q -f "$REPO/install/kubernetes/Dockerfile" -t localhost/nriguard:latest "$REPO" >/dev/null || return 1
  CONTAINERS_CONF=/dev/null $P save -q -o "$K8S/nriguard-image.tar" localhost/nriguard:latest || return 1
  ctr -a /run/containerd/containerd.sock -n k8s.io images import "$K8S/nriguard-image.tar" >/dev/null 2>>"$K8S/logs/ctr.log" || return 1
  # pinned, as docs/install.md says: the kubelet's image GC must not take it
  # (with the validator, no pod would start while it cannot be pulled back)
  ctr -a /run/containerd/containerd.sock -n k8s.io images label localhost/nriguard:latest io.cri-containerd.pinned=pinned >/dev/null 2>>"$K8S/logs/ctr.log" || return 1
  ok "k8s: nriguard image built from install/kubernetes/Dockerfile and imported ($(du -h "$K8S/nriguard-image.tar" | cut -f1))"

  etcd --name nriguard-e2e --data-dir "$K8S/etcd" --listen-client-urls http://127.0.0.1:23790 \
    --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
    --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster nriguard-e2e=http://127.0.0.1:23800 \
    --listen-metrics-urls http://127.0.0.1:23810 > "$K8S/logs/etcd.log" 2>&1 &
  echo $! > "$K8S/etcd.pid"; disown
  openssl genrsa -out "$K8S/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$K8S/pki/sa.key" -pubout -out "$K8S/pki/sa.pub" 2>/dev/null
  echo 'nriguard-e2e-token,admin,admin,"system:masters"' > "$K8S/pki/tokens.csv"
  # the kubelet serves exec and logs on the node's IP: only to the API server's client certificate
  local pki=$K8S/pki
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=nriguard-e2e-ca -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -days 1 -in "$pki/kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/kubelet-client.crt" 2>/dev/null
  cat > "$K8S/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "https://127.0.0.1:16443", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: nriguard-e2e-token}}]
contexts: [{name: e2e, context: {cluster: e2e, user: admin}}]
current-context: e2e
EOF
  # No ServiceAccount admission: nothing here needs API credentials (the
  # DaemonSet sets automountServiceAccountToken: false) and no token controller runs.
  "$KBIN/kube-apiserver" --etcd-servers=http://127.0.0.1:23790 --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
    --secure-port=16443 --allow-privileged=true --cert-dir="$K8S/certs" --token-auth-file="$K8S/pki/tokens.csv" --authorization-mode=AlwaysAllow \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$K8S/pki/sa.pub" \
    --service-account-signing-key-file="$K8S/pki/sa.key" --service-cluster-ip-range=10.96.0.0/24 \
    --disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none \
    --kubelet-preferred-address-types=InternalIP --kubelet-client-certificate="$pki/kubelet-client.crt" \
    --kubelet-client-key="$pki/kubelet-client.key" > "$K8S/logs/apiserver.log" 2>&1 &
  echo $! > "$K8S/apiserver.pid"; disown
  for i in $(seq 120); do kc get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
  kc get --raw /readyz >/dev/null 2>&1 || { bad "k8s: API server ready"; tail -5 "$K8S/logs/apiserver.log"; return 1; }
  # the controllers what follows needs: daemonset (creates and replaces
  # nriguard's pods), nodelifecycle (lifts the not-ready taint the kubelet
  # registers with), garbagecollector (a deleted DaemonSet's pods), namespace;
  # and the scheduler
  "$KBIN/kube-controller-manager" --kubeconfig "$K8S/kubeconfig" --controllers=daemonset,nodelifecycle,garbagecollector,namespace --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=10357 --cert-dir="$K8S/certs" > "$K8S/logs/controller-manager.log" 2>&1 &
  echo $! > "$K8S/controller-manager.pid"; disown
  "$KBIN/kube-scheduler" --kubeconfig "$K8S/kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=10359 --cert-dir="$K8S/certs" > "$K8S/logs/scheduler.log" 2>&1 &
  echo $! > "$K8S/scheduler.pid"; disown

  # The kubelet gets a cgroupRoot of its own: with the default it SIGKILLs
  # processes in /kubepods/<qos>/pod* cgroups it does not know (crictl pods).
  for h in $(cg_hiers); do mkdir -p "$h/$K8S_CGROOT"; done
  cat > "$K8S/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false          # a hybrid host: the kubelet sees cgroup v1
failSwapOn: false
cgroupRoot: /$K8S_CGROOT
makeIPTablesUtilChains: false
syncFrequency: 10s
port: 10350
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10348
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: $K8S/pki/ca.crt}}
authorization: {mode: AlwaysAllow}
podLogsDir: $K8S/podlogs
volumePluginDir: $K8S/volplugins
evictionHard: {memory.available: "100Mi"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  # exec and logs go from the API server to the kubelet at the node's InternalIP: not loopback
  local ip; ip=$(ip -4 -br addr show scope global | awk '{print $3}' | cut -d/ -f1 | head -1)
  "$KBIN/kubelet" --config "$K8S/kubelet.yaml" --kubeconfig "$K8S/kubeconfig" --root-dir "$K8S/kubelet" \
    --cert-dir "$K8S/kubelet/pki" --hostname-override $K8S_NODE --node-ip "$ip" --address "$ip" --v=2 \
    > "$K8S/logs/kubelet.log" 2>&1 &
  echo $! > "$K8S/kubelet.pid"; disown
  for i in $(seq 120); do kc get node $K8S_NODE >/dev/null 2>&1 && break; sleep 0.5; done
  kc get node $K8S_NODE >/dev/null 2>&1 || { bad "k8s: the kubelet registered its node"; tail -5 "$K8S/logs/kubelet.log"; return 1; }
  check "k8s: the kubelet refuses anonymous requests on the node's IP" \
    same 401 "$(curl -sk -o /dev/null -w '%{http_code}' "https://$ip:10350/pods")"
  local f; for f in etcd apiserver controller-manager scheduler kubelet; do
    kill -0 "$(cat "$K8S/$f.pid")" 2>/dev/null || { echo "k8s: $f exited"; tail -5 "$K8S/logs/$f.log"; return 1; }
  done
  ok "k8s: $("$KBIN/kubelet" --version) node registered; etcd, API server, scheduler, controller-manager, kubelet running"
}

# k8s_logs: the node's logs where run.sh keeps them ($CACHE/last-logs)
k8s_logs() {
  mkdir -p "$E2E/logs/k8s"
  cp "$K8S"/logs/* "$E2E/logs/k8s/" 2>/dev/null
  kc logs -n kube-system -l app=nriguard --tail=-1 > "$E2E/logs/k8s/nriguard-pod.log" 2>&1
}

# k8s_stop: in reverse order, each before the next (an API server whose etcd
# is gone hangs in its shutdown); then what the kubelet changed on the host.
k8s_stop() {
  local f pid
  for f in kubelet scheduler controller-manager apiserver etcd; do
    [ -f "$K8S/$f.pid" ] || continue
    pid=$(cat "$K8S/$f.pid"); kill "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null; rm -f "$K8S/$f.pid"
  done
  if [ -f "$K8S/containerd.pid" ] && kill -0 "$(cat "$K8S/containerd.pid")" 2>/dev/null; then
    for c in $(kcr ps -aq); do kcr rm -f "$c" >/dev/null; done
    for p in $(kcr pods -q); do kcr rmp -f "$p" >/dev/null; done
  fi
  if [ -f "$K8S/containerd.pid" ]; then
    pid=$(cat "$K8S/containerd.pid"); kill "$pid" 2>/dev/null
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null; rm -f "$K8S/containerd.pid"
  fi
  # what outlived containerd (a run stopped midway): our shims (their working
  # directory is a bundle under $K8S), then every process in the kubelet's cgroups
  for pid in $(pgrep -f containerd-shim-runc-v2); do
    [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$K8S"/* ]] && kill -9 "$pid"
  done
  local h
  for h in $(cg_hiers); do
    [ -d "$h/$K8S_CGROOT" ] && find "$h/$K8S_CGROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
  done
  sleep 0.2
  [ -f "$K8S/sysctl.before" ] && while read -r l; do sysctl -qw "${l// /}"; done < "$K8S/sysctl.before"
  grep -o " $K8S[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done  # the kubelet bind-mounts its root dir
  [ -e "$K8S/.made-var-lib-kubelet" ] && rm -rf /var/lib/kubelet   # device-plugins: a hard-coded path
  find /var/log/containers -maxdepth 1 -lname "$K8S/*" -delete 2>/dev/null   # the kubelet's links to its pod logs
  [ -e "$K8S/.made-bpffs-shared" ] && mount --make-private /sys/fs/bpf && rm -f "$K8S/.made-bpffs-shared"
  for h in $(cg_hiers); do [ -d "$h/$K8S_CGROOT" ] && find "$h/$K8S_CGROOT" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  true
}

k8s_pod() { # name, annotations (YAML flow map), [extra container lines]; namespace $PODNS or $K8S_NS
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: ${PODNS:-$K8S_NS}, annotations: $2}
spec:
  hostNetwork: true                   # the node's network: nothing is set up per pod
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: "localhost/e2e/busybox:latest", imagePullPolicy: Never,
     command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]}
${3:-}
EOF
}
kconn() { kc exec -n $K8S_NS "$1" -c "${3:-client}" -- sh -c "nc 127.0.0.1 $2 </dev/null 2>&1" 2>&1; }
phase() { kc get pod -n $K8S_NS "$1" -o jsonpath='{.status.phase}{range .status.containerStatuses[*]}{" "}{.state.waiting.reason}{end}' 2>/dev/null; }
waits_phase() { # pod, pattern: waits for it in the pod's phase and waiting reasons
  local out
  for i in $(seq 40); do out=$(phase "$1"); grep -q -- "$2" <<<"$out" && return 0; sleep 0.5; done
  echo "$out"; return 1
}
wait_ready() { kc wait -n "${2:-$K8S_NS}" --for=condition=Ready "pod/$1" --timeout="${3:-60s}" >/dev/null 2>&1; }
ngpod() { kc get pod -n kube-system -l app=nriguard -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.phase}{"\n"}{end}' 2>/dev/null; }
wait_plugin() { # the DaemonSet's plugin has synchronized with containerd
  local p
  for i in $(seq 120); do
    p=$(ngpod | awk '$2=="Running"{print $1}' | head -1)
    [ -n "$p" ] && kc logs -n kube-system "$p" 2>/dev/null | grep -q '"msg":"synchronized"' && { echo "$p"; return 0; }
    sleep 0.5
  done
  return 1
}
# the objects helm installed, against the committed manifest (after its
# header; helm get manifest ends with blank lines)
noblanktail() { awk 'NF { for (; n > 0; n--) print ""; print; next } { n++ }'; }
release_is_manifest() {
  diff <(sed -n '/^---$/,$p' "$REPO/install/kubernetes/daemonset.yaml" | noblanktail) <(hm get manifest nriguard -n kube-system 2>&1 | noblanktail)
}
# vap_says PATTERN: a server-side dry run of a pod carrying the toleration in
# $PODNS (or $K8S_NS) gets PATTERN from the API server (admission runs on dry
# runs); waits for it, 20 s: a new or changed policy takes a moment to apply
vap_says() {
  local out
  for i in $(seq 40); do
    out=$(k8s_pod vapprobe "{$TOLERATE: \"true\"}" | kc create --dry-run=server -f - 2>&1)
    grep -q -- "$1" <<<"$out" && return 0
    sleep 0.5
  done
  echo "$out"; return 1
}
described() { # pod, pattern: waits for the pattern in kubectl describe
  local out
  for i in $(seq 60); do out=$(kc describe pod -n $K8S_NS "$1" 2>&1); grep -q -- "$2" <<<"$out" && return 0; sleep 0.5; done
  printf '%s\n' "$out" | sed -n '/^Events:/,$p'; return 1
}

k8s_e2e() {
  say "Kubernetes $("$KBIN/kubectl" version --client 2>/dev/null | awk '/Client/{print $3}'): a real node, nriguard's DaemonSet (helm install install/helm/nriguard)"
  if ! k8s_start; then bad "k8s: the node came up"; k8s_logs; k8s_stop; return; fi
  local out p p2 srv_lines

  # the chart with its default values, as an operator installs it
  out=$(hm install nriguard "$CHART" --namespace kube-system 2>&1)
  check "k8s: helm $(hm version --template "{{.Version}}" 2>&1) install nriguard install/helm/nriguard -n kube-system: deployed" has '^STATUS: deployed' "$out"
  # what was installed is the committed manifest, object for object (make
  # lint holds the file to the chart; this, the file to what ran)
  check "k8s: the release's manifest is install/kubernetes/daemonset.yaml" release_is_manifest
  if p=$(wait_plugin); then ok "k8s: the DaemonSet's pod $p runs and synchronized"
  else
    bad "k8s: the DaemonSet's plugin synchronized"; ngpod
    kc describe pod -n kube-system -l app=nriguard | sed -n '/^Events:/,$p' | tail -5
    kc logs -n kube-system -l app=nriguard --tail=10 --previous 2>&1 | cut -c1-300
    k8s_logs; k8s_stop; return
  fi
  kc create namespace $K8S_NS >/dev/null

  # the chart's admission policy: only nriguard's namespace (kube-system) may
  # carry the toleration annotation with the default values
  check "k8s: the chart's admission policy $VAP is in force (a dry run in $K8S_NS is refused)" vap_says "ValidatingAdmissionPolicy '$VAP'"
  out=$(k8s_pod tolerated "{$TOLERATE: \"true\"}" | kc create -f - 2>&1)
  echo "   kubectl create: $out"
  check "k8s: a pod carrying $TOLERATE in $K8S_NS is refused at creation, naming the policy and why" \
    has "pods \"tolerated\" is forbidden: ValidatingAdmissionPolicy '$VAP' with binding '$VAP' denied request: pod annotation $TOLERATE (start while nriguard is missing, without a policy) is allowed only in namespaces kube-system, not in $K8S_NS" "$out"
  check "k8s: ... it was not created" has NotFound "$(kc get pod -n $K8S_NS tolerated 2>&1)"
  out=$(k8s_pod tolerated "{$TOLERATE/container.client: \"true\"}" | kc create -f - 2>&1)
  check "k8s: ... so is a pod carrying it for one container ($TOLERATE/container.client, which the validator reads too)" \
    has "ValidatingAdmissionPolicy '$VAP' with binding '$VAP' denied request: pod annotation $TOLERATE/container.client " "$out"
  out=$(PODNS=kube-system k8s_pod tolerated "{$TOLERATE: \"true\"}" | kc create -f - 2>&1)
  check "k8s: a pod carrying it in kube-system, the release's namespace, is admitted" has '^pod/tolerated created$' "$out"
  check "k8s: ... and runs" wait_ready tolerated kube-system
  kc delete pod -n kube-system tolerated --wait=false >/dev/null 2>&1

  # one pod: a server on the node's network, a policed client, and per-container keys
  srv_lines='  - {name: server, image: "localhost/e2e/busybox:latest", imagePullPolicy: Never,
     command: ["/bin/sh", "-c", "nc -ll -p 18080 -e echo hello18080 & nc -ll -p 18081 -e echo hello18081 & trap \"exit 0\" TERM; while :; do sleep 1; done"]}'
  k8s_pod web '{egress.nriguard.io/container.client: "allow tcp 127.0.0.1:18081", exec.nriguard.io/container.client: "allow /bin/"}' "$srv_lines" | kc apply -f - >/dev/null
  if wait_ready web; then ok "k8s: a pod with nriguard annotations is Ready"
  else bad "k8s: pod web Ready: $(phase web)"; kc describe pod -n $K8S_NS web | sed -n '/^Events:/,$p' | tail -5; kc get node -o wide; kc describe node | grep -A3 Taints; fi
  for i in $(seq 60); do kc exec -n $K8S_NS web -c client -- true 2>/dev/null && break; sleep 0.5; done  # the node's InternalIP settles
  check "k8s: kubectl exec: client reaches 18081 (allowed)" has hello18081 "$(kconn web 18081)"
  out=$(kconn web 18080); check "k8s: kubectl exec: client to 18080 refused (EPERM)" denied "$out"
  check "k8s: server (no key of its own): 18080 reachable" has hello18080 "$(kconn web 18080 server)"
  out=$(kc exec -n $K8S_NS web -c server -- nc -w 2 169.254.169.254 80 </dev/null 2>&1)
  check "k8s: server: the ConfigMap's ceiling holds it too (169.254.169.254 refused)" denied "$out"
  out=$(kc exec -n $K8S_NS web -c client -- /opt/bin/tool echo hi 2>&1)
  check "k8s: kubectl exec: a program outside the exec policy never runs" test -z "$(grep -x hi <<<"$out")"
  check "k8s: ... refused by nriguard (its exec event)" has '"kind":"exec".*"verdict":"denied".*"pod":"web"' "$(kc logs -n kube-system "$p")"
  check "k8s: kubectl exec: an allowed program runs" hasline hi "$(kc exec -n $K8S_NS web -c client -- /bin/echo hi 2>&1)"
  # a program dropped into an allowed directory after the start is not an
  # allowed program, and no restart makes it one (identities are taken once)
  kc exec -n $K8S_NS web -c client -- cp /bin/busybox /bin/dropped >/dev/null 2>&1
  refused_dropped() { # the exit status, not the absence of output
    local out rc; out=$(kc exec -n $K8S_NS web -c client -- /bin/dropped echo hi 2>&1); rc=$?
    [ "$rc" != 0 ] && ! grep -qx hi <<<"$out" || { echo "exit $rc: $out"; return 1; }
  }
  check "k8s: a program copied into /bin/ (allowed) after the start is refused" refused_dropped
  check "k8s: the denial is in the plugin's log (kubectl logs), with pod and namespace" \
    has "\"verdict\":\"denied\".*\"pod\":\"web\".*\"namespace\":\"$K8S_NS\"" "$(kc logs -n kube-system "$p" | grep '"kind":"connect"')"
  # the stream on the host's /run/nriguard/observe.sock (a hostPath), as docs/install.md says
  timeout 30 "$NG" observe --namespace $K8S_NS -o json > "$K8S/observe.out" 2>&1 &
  local obs=$!
  for i in $(seq 10); do
    sleep 1; kconn web 18080 >/dev/null 2>&1
    grep -q '"verdict":"denied"' "$K8S/observe.out" && break
  done
  kill $obs 2>/dev/null; wait $obs 2>/dev/null
  check "k8s: nriguard observe on the host follows the DaemonSet's stream" has '"verdict":"denied"' "$(cat "$K8S/observe.out")"
  check "k8s: metrics on the node's loopback (metrics_addr in the ConfigMap)" \
    has 'nriguard_decisions_total.*denied' "$("$E2E/bin/promscrape" http://127.0.0.1:9964/metrics nriguard_ 2>&1)"

  # the policy holds for updates too: the annotation cannot be added later
  # (a sandbox the kubelet makes again, after a node's reboot, would read it)
  out=$(kc annotate pod -n $K8S_NS web "$TOLERATE=true" 2>&1)
  check "k8s: adding $TOLERATE to a running pod in $K8S_NS is refused (an update), naming the policy" \
    has "ValidatingAdmissionPolicy '$VAP' with binding '$VAP' denied request: pod annotation $TOLERATE " "$out"
  check "k8s: ... the pod does not carry it" test -z "$(kc get pod -n $K8S_NS web -o jsonpath='{.metadata.annotations}' | grep -o "$TOLERATE")"

  # the operator's choice: a namespace whose pods may start without nriguard
  local gen; gen=$(kc get ds -n kube-system nriguard -o jsonpath='{.metadata.generation}')
  out=$(hm upgrade nriguard "$CHART" -n kube-system --reuse-values --set "toleration.namespaces={$K8S_NS}" 2>&1)
  check "k8s: helm upgrade --set toleration.namespaces={$K8S_NS}: deployed" has '^STATUS: deployed' "$out"
  check "k8s: ... a pod there may carry $TOLERATE now (a dry run is admitted)" vap_says '^pod/vapprobe created (server dry run)$'
  check "k8s: ... the DaemonSet is unchanged (generation $gen): its pods are not replaced" \
    same "$gen" "$(kc get ds -n kube-system nriguard -o jsonpath='{.metadata.generation}')"

  # an invalid annotation: the parser's message in kubectl describe
  k8s_pod bad '{egress.nriguard.io: "allow tcp 10.0.0.0/33"}' | kc apply -f - >/dev/null
  check "k8s: an invalid annotation: kubectl describe shows the parser's message" described bad 'egress.nriguard.io: rule 1.*invalid prefix length 33'
  echo "   kubectl describe pod bad: $(kc describe pod -n $K8S_NS bad | grep -m1 'Error:' | sed 's/^ *//' | cut -c1-400)"
  check "k8s: ... and the pod is CreateContainerError" waits_phase bad CreateContainerError
  kc delete pod -n $K8S_NS bad --wait=false >/dev/null

  # nriguard missing: its pod gone from the node (a nodeSelector no node has)
  kc patch ds -n kube-system nriguard -p '{"spec":{"template":{"spec":{"nodeSelector":{"nriguard-e2e/none":"x"}}}}}' >/dev/null
  for i in $(seq 120); do [ -z "$(ngpod)" ] && ! pgrep -x nriguard >/dev/null && break; sleep 0.5; done
  check "k8s: nriguard's pod is gone" test -z "$(ngpod; pgrep -x nriguard)"
  out=$(kconn web 18080); check "k8s: nriguard missing: the running pod is still policed (18080 refused)" denied "$out"
  check "k8s: nriguard missing: ... and still reaches 18081" has hello18081 "$(kconn web 18081)"
  k8s_pod late '{egress.nriguard.io: "allow tcp 127.0.0.1:18081"}' | kc apply -f - >/dev/null
  check "k8s: nriguard missing: a new pod is refused (the validator)" described late 'required plugin .*nriguard.* not present'
  echo "   kubectl describe pod late: $(kc describe pod -n $K8S_NS late | grep -m1 'Error:' | sed 's/^ *//' | cut -c1-400)"
  check "k8s: ... it is CreateContainerError" waits_phase late CreateContainerError
  k8s_pod tolerant '{tolerate-missing-plugins.nriguard.io: "true"}' | kc apply -f - >/dev/null
  check "k8s: nriguard missing: a pod that tolerates it starts (its namespace in toleration.namespaces)" wait_ready tolerant
  kc patch ds -n kube-system nriguard --type json -p '[{"op":"remove","path":"/spec/template/spec/nodeSelector"}]' >/dev/null
  if p=$(wait_plugin); then ok "k8s: nriguard back ($p)"; else bad "k8s: nriguard back"; p=none; fi
  check "k8s: the refused pod starts once nriguard is back (kubelet retry)" wait_ready late $K8S_NS 120s
  out=$(kconn late 18080); check "k8s: ... and it is policed (18080 refused)" denied "$out"
  check "k8s: ... 18081 allowed" has hello18081 "$(kconn late 18081)"

  # a rollout restart: the new plugin adopts what the old one attached
  kc rollout restart ds -n kube-system nriguard >/dev/null
  kc rollout status ds -n kube-system nriguard --timeout=90s >/dev/null 2>&1
  p2=$(wait_plugin)
  check "k8s: kubectl rollout restart: a new plugin pod synchronized" test -n "$p2" -a "$p2" != "$p"
  out=$(kconn web 18080); check "k8s: after the restart: web still policed (18080 refused)" denied "$out"
  check "k8s: after the restart: web reaches 18081" has hello18081 "$(kconn web 18081)"
  local cid; cid=$(kc get pod -n $K8S_NS web -o jsonpath='{.status.containerStatuses[?(@.name=="client")].containerID}')
  check "k8s: after the restart: web's client is still attached (nriguard list)" has "^${cid#containerd://} *NRI plugin" "$("$NG" list 2>&1)"
  out=$(kc logs -n kube-system "$p2" 2>&1)
  check "k8s: ... and the new plugin adopted it as pinned (synchronized: adopted)" has '"msg":"synchronized".*"adopted":[1-9]' "$out"
  check "k8s: ... not as new (no late policy)" test -z "$(grep '"reason":"late"' <<<"$out")"
  check "k8s: after the rollout: the program dropped into /bin/ is still refused (nothing resolved again)" refused_dropped
  check "k8s: ... its refusal is in the new plugin's events" has '"kind":"exec".*"verdict":"denied".*"pod":"web".*"filename":"/bin/dropped"' "$(kc logs -n kube-system "$p2" 2>&1)"

  # deleting pods leaves nothing pinned
  local ids; ids=$(kcr ps -a -q --label io.kubernetes.pod.namespace=$K8S_NS)
  check "k8s: before the delete: web's client is pinned" test -e "$PINS/${cid#containerd://}"
  kc delete pod -n $K8S_NS --all --wait=true --timeout=60s >/dev/null 2>&1
  kc delete namespace $K8S_NS --wait=true --timeout=60s >/dev/null 2>&1
  check "k8s: the namespace had containers" test -n "$ids"
  for i in $(seq 60); do left=""; for id in $ids; do [ -e "$PINS/$id" ] && left+=" $id"; done; [ -z "$left" ] && break; sleep 0.5; done
  check "k8s: pods deleted: none of their containers is pinned" test -z "$left"
  k8s_logs
  out=$(hm uninstall nriguard -n kube-system --wait --timeout 60s 2>&1)
  check "k8s: helm uninstall nriguard" has 'release "nriguard" uninstalled' "$out"
  for i in $(seq 60); do pgrep -x nriguard >/dev/null || break; sleep 0.5; done
  check "k8s: ... the plugin is gone" test -z "$(pgrep -x nriguard)"
  check "k8s: ... and so is its admission policy" has NotFound "$(kc get validatingadmissionpolicy $VAP 2>&1)"
  k8s_stop
}
