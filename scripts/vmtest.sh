#!/bin/bash
# make vmtest: the kernel suite (bpf/'s tests: the egress datapath, DNS
# names, exec under BPF LSM and under the tracepoint + SIGKILL fallback) in
# Debian's own kernels, booted under qemu (TCG: no KVM needed):
#
#   run         kernel                        LSM
#   6.1         Debian 12 (bookworm)          lsm=...,bpf
#   6.1-nolsm   Debian 12 (bookworm)          lsm= without bpf: the SIGKILL backend
#   6.12        Debian 13 (trixie)            lsm=...,bpf
#   5.10        Debian 11 (bullseye)          lsm=...,bpf (below the floor: nothing loads, and the suite says why)
#
# Prints a table (run, LSM, passed, failed, skipped with the reason of each
# skip) and fails if a run's suite fails (unless the run is marked as
# expected to fail below, which it says loudly), if a kernel below the floor
# is not refused by name (TestKernelFloor), if the LSM backend did not
# run where BPF LSM is on, or if the SIGKILL backend was not chosen where it
# is off. Everything is cached in .cache/vmtest: the kernels, fetched with a
# private apt configuration (its own sources, state and cache in
# .cache/vmtest/apt: the host's apt is not touched), logs in logs/.
#
# VMTEST_RUNS="6.1 6.12"   only these runs (names above)
# VMTEST_RUN=REGEX         only these tests (go test -run)
# VMTEST_JOBS=N            VMs at once (default 2: the matrix took 503 s so, 800 s one at a time)
set -euo pipefail
cd "$(dirname "$0")/.."
C=$PWD/.cache/vmtest
mkdir -p "$C/logs"
rm -f "$C/vmlinuz" "$C/overlay.ko" "$C/kernel-package" "$C/console.log" # the one-kernel layout before the matrix

# name | kernel | lsm= | qemu's limit (s) | expected to fail ("" or why; "floor":
# below nriguard's kernel floor, where nothing loads and the suite must say
# so: TestKernelFloor passes, every test that loads programs skips naming
# what the kernel lacks)
# Longest first: two at a time, the matrix takes as long as its longest pair.
# The limits are about 3x what each run took on a loaded 2-core machine
# (docs/kernels.md); 5.10's is for the whole suite, once it loads there.
MATRIX=(
  "6.1|6.1|lockdown,capability,landlock,bpf|900|"
  "6.1-nolsm|6.1|lockdown,capability,landlock|900|"
  "6.12|6.12|lockdown,capability,landlock,bpf|600|"
  "5.10|5.10|lockdown,capability,bpf|900|floor"
)
# kernel | Debian package (newest that downloads) | suite
KERNELS=(
  '5.10|^linux-image-5\.10\.0-[0-9]+-cloud-amd64-unsigned$|bullseye'
  '6.1|^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$|bookworm'
  '6.12|^linux-image-6\.12\.[0-9]+\+deb13(\.[0-9]+)?-cloud-amd64-unsigned$|trixie'
)

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "vmtest: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

selected=()
for m in "${MATRIX[@]}"; do
  IFS='|' read -r name _ <<<"$m"
  if [ -z "${VMTEST_RUNS:-}" ] || [[ " $VMTEST_RUNS " == *" $name "* ]]; then selected+=("$m"); fi
done
[ ${#selected[@]} -gt 0 ] || { echo "vmtest: VMTEST_RUNS=$VMTEST_RUNS names no run"; exit 1; }

# A private apt: Debian's bullseye, bookworm and trixie (with their security
# updates, where kernels move), its own lists and downloads.
A=$C/apt
apt_private() { APT_CONFIG=$A/apt.conf "$@"; }
apt_setup() {
  [ -s "$A/apt.conf" ] && return
  mkdir -p "$A/parts" "$A/prefs" "$A/state/lists/partial" "$A/cache/archives/partial"
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  : > "$A/sources.list"
  for s in bullseye bookworm trixie; do
    echo "deb [signed-by=$key] http://deb.debian.org/debian $s main" >> "$A/sources.list"
    echo "deb [signed-by=$key] http://deb.debian.org/debian-security $s-security main" >> "$A/sources.list"
  done
  cat > "$A/apt.conf" <<EOF
Dir::Etc::Parts "$A/parts";
Dir::Etc::Main "/dev/null";
Dir::Etc::sourcelist "$A/sources.list";
Dir::Etc::sourceparts "-";
Dir::Etc::preferencesparts "$A/prefs";
Dir::State "$A/state";
Dir::State::status "/dev/null";
Dir::Cache "$A/cache";
APT::Sandbox::User "root";
Acquire::Languages "none";
// as the host's: the archive here may be a snapshot whose Release is past its Valid-Until
Acquire::Check-Valid-Until "false";
Debug::NoLocking "1";
EOF
}
apt_updated=
fetch_kernel() { # kernel name, package regex, suite
  local k=$1 re=$2 suite=$3 K=$C/kernels/$1
  [ -s "$K/vmlinuz" ] && [ -s "$K/release" ] && return
  apt_setup
  if [ -z "$apt_updated" ]; then
    echo "vmtest: apt-get update (private: $A)"
    apt_private apt-get update -qq
    apt_updated=1
  fi
  local pkgs pkg=
  pkgs=$(apt_private apt-cache search --names-only "$re" | cut -d' ' -f1 | sort -Vr)
  [ -n "$pkgs" ] || { echo "vmtest: no package matching $re in $suite's lists"; exit 1; }
  rm -rf "$K" && mkdir -p "$K/deb"
  # the newest the archive lists may not be downloadable yet: take the newest that is
  for p in $pkgs; do
    if (cd "$K/deb" && apt_private apt-get download -qq "$p" >/dev/null 2>&1); then pkg=$p; break; fi
    echo "vmtest: $p is listed but does not download; trying an older one"
  done
  [ -n "$pkg" ] || { echo "vmtest: none of $pkgs downloads"; exit 1; }
  echo "vmtest: fetched $pkg ($suite)"
  dpkg -x "$K"/deb/*.deb "$K/deb/root"
  cp "$K"/deb/root/boot/vmlinuz-* "$K/vmlinuz"
  local mods rel ko
  mods=
  for d in "$K"/deb/root/lib/modules/* "$K"/deb/root/usr/lib/modules/*; do [ -d "$d" ] && mods=$d && break; done
  [ -n "$mods" ] || { echo "vmtest: $pkg has no /lib/modules"; exit 1; }
  rel=$(basename "$mods")
  # overlayfs, for the exec identity tests on overlays (a module in Debian's kernels)
  ko=$(find "$mods" -name 'overlay.ko*' | head -1)
  case $ko in
    *.xz) xz -dc "$ko" > "$K/overlay.ko" ;;
    *.zst) zstd -qdc "$ko" > "$K/overlay.ko" ;;
    ?*) cp "$ko" "$K/overlay.ko" ;;
    *) echo "vmtest: $pkg has no overlay module: the overlay cases will fail there" ;;
  esac
  echo "$pkg" > "$K/package"
  echo "$rel" > "$K/release"
  rm -rf "$K/deb"
}
declare -A pkgre suite
for k in "${KERNELS[@]}"; do IFS='|' read -r n re s <<<"$k"; pkgre[$n]=$re; suite[$n]=$s; done
kernels=()
for m in "${selected[@]}"; do
  IFS='|' read -r _ k _ <<<"$m"
  [[ " ${kernels[*]} " == *" $k "* ]] || kernels+=("$k")
done
for k in "${kernels[@]}"; do fetch_kernel "$k" "${pkgre[$k]}" "${suite[$k]}"; done

# One initramfs for every kernel: busybox, the static test binary, iproute2
# (the tests make a network namespace with it) and each kernel's modules
# under /lib/modules/<release>/.
CGO_ENABLED=0 go test -c -o "$C/bpf.test" ./bpf/
R=$C/initramfs
rm -rf "$R" && mkdir -p "$R"/{bin,proc,sys,dev,tmp,run,usr/local/bin}
cp /bin/busybox "$R/bin/busybox"
cp "$C/bpf.test" "$R/bpf.test"
for k in "${kernels[@]}"; do
  rel=$(cat "$C/kernels/$k/release")
  mkdir -p "$R/lib/modules/$rel"
  [ ! -s "$C/kernels/$k/overlay.ko" ] || cp "$C/kernels/$k/overlay.ko" "$R/lib/modules/$rel/"
done
cp "$(command -v ip)" "$R/usr/local/bin/ip"
for lib in $(ldd "$(command -v ip)" | grep -o '/[^ ]*'); do
  mkdir -p "$R$(dirname "$lib")" && cp -L "$lib" "$R$lib"
done
# The kernel hands init the command line's VMTEST_* words as environment.
# The tests write to the second serial port (the log's .out file), the
# kernel to the first (.console).
cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec >/dev/ttyS1 2>&1
rel=$(uname -r)
insmod /lib/modules/$rel/overlay.ko || echo "vmtest: no overlayfs module for $rel: the overlay cases will fail"
lsms=$(cat /sys/kernel/security/lsm)
echo "VMTEST-KERNEL: $rel"
echo "VMTEST-LSMS: $lsms"
cd /tmp
export PATH=/usr/local/bin:/bin:/sbin
ip link set lo up
export NRIGUARD_EMULATED=1
if [ "$VMTEST_LSM" = 1 ]; then
  export NRIGUARD_REQUIRE_LSM=1 NRIGUARD_EXPECT_EXEC_BACKEND=lsm
else
  export NRIGUARD_EXPECT_EXEC_BACKEND=sigkill
fi
/bpf.test -test.v -test.count=1 ${VMTEST_FILTER:+"-test.run=$VMTEST_FILTER"}
echo "VMTEST-EXIT: $?"
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 > "$C/initrd.gz")

# One run: boot its kernel with the suite; the tests' output (the second
# serial port) in logs/<run>.out, shown as it comes (top-level results only),
# the kernel's console in logs/<run>.console.
boot() { # name kernel lsm timeout
  local name=$1 k=$2 lsm=$3 limit=$4 L=$C/logs/$1 on=1
  [[ ,$lsm, == *,bpf,* ]] || on=0
  rm -f "$L.out" "$L.console" "$L.time"
  local start=$SECONDS
  timeout "$limit" qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp "${VMTEST_SMP:-1}" -display none -no-reboot \
    -serial file:"$L.console" -serial stdio \
    -kernel "$C/kernels/$k/vmlinuz" -initrd "$C/initrd.gz" \
    -append "console=ttyS0 quiet lsm=$lsm panic=-1 VMTEST_LSM=$on${VMTEST_RUN:+ VMTEST_FILTER=$VMTEST_RUN}" \
    </dev/null 2>&1 | tee "$L.out" | tr -d '\r' |
    grep --line-buffered -E '^(--- (PASS|FAIL|SKIP)|VMTEST-|panic:|FAIL)' | sed -u "s/^/[$name] /" || true
  echo $((SECONDS - start)) > "$L.time"
}

jobs=${VMTEST_JOBS:-2}
echo "vmtest: ${#selected[@]} runs, $jobs at a time, under qemu (TCG): $(for m in "${selected[@]}"; do IFS='|' read -r n k _ <<<"$m"; printf '%s (%s) ' "$n" "$(cat "$C/kernels/$k/package")"; done)"
start=$SECONDS
running=0
for m in "${selected[@]}"; do
  IFS='|' read -r name k lsm limit _ <<<"$m"
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
  boot "$name" "$k" "$lsm" "$limit" &
  running=$((running + 1))
done
wait
total=$((SECONDS - start))

# The table, and the verdict.
fail=0
printf '\n%-10s %-5s %-8s %6s %6s %7s  %s\n' run LSM kernel passed failed skipped time
summary=()
for m in "${selected[@]}"; do
  IFS='|' read -r name k lsm limit expect <<<"$m"
  L=$C/logs/$name
  tr -d '\r' < "$L.out" > "$L.log" 2>/dev/null || : > "$L.log"
  on=on; [[ ,$lsm, == *,bpf,* ]] || on=off
  counts=$(awk '
    /^=== (RUN|CONT) / { cur = $3 }
    /^ +[^ ]+\.go:[0-9]+: / { sub(/^ +/, ""); last[cur] = $0 }
    /^ *--- PASS: / { p++ } /^ *--- FAIL: / { f++ } /^ *--- SKIP: / { s++ }
    END { printf "%d %d %d", p, f, s }' "$L.log")
  read -r p f s <<<"$counts"
  t=$(cat "$L.time" 2>/dev/null || echo "?")
  printf '%-10s %-5s %-8s %6s %6s %7s  %ss (limit %ss)\n' "$name" "$on" "$k" "$p" "$f" "$s" "$t" "$limit"
  # the skips, one line per reason
  awk '
    /^=== (RUN|CONT) / { cur = $3 }
    /^ +[^ ]+\.go:[0-9]+: / { sub(/^ +[^ ]+\.go:[0-9]+: /, ""); last[cur] = $0 }
    /^ *--- SKIP: / { r = (last[$3] == "" ? "(no reason given)" : last[$3]); if (!(r in n)) order[++k] = r; n[r]++; ex[r] = $3 }
    END { for (i = 1; i <= k; i++) printf "             skipped %d (%s%s): %s\n", n[order[i]], ex[order[i]], (n[order[i]] > 1 ? ", ..." : ""), order[i] }' "$L.log" | cut -c1-400
  floor=; [ "$expect" = floor ] && { floor=1; expect=; }
  why=
  if ! grep -q '^VMTEST-EXIT: 0' "$L.log"; then
    if grep -q '^VMTEST-EXIT: ' "$L.log"; then why="the suite failed"; else why="the suite did not finish in ${limit}s (killed or crashed)"; fi
    if [ -n "$expect" ]; then
      # what the kernel lacks, per program (TestEachProgramLoads), not every test it fails
      grep -E '^ +kernel_test\.go:[0-9]+: ' "$L.log" | sed -E 's/^ +kernel_test\.go:[0-9]+: /             /' | cut -c1-400 || true
      echo "             ($f tests failed: expected, see above)"
    else
      awk '
        /^=== (RUN|CONT) / { cur = $3 }
        /^ +[^ ]+\.go:[0-9]+: / { sub(/^ +/, ""); if (!(cur in first)) first[cur] = $0 }
        /^--- FAIL: / { printf "             failed %s: %s\n", $3, (first[$3] == "" ? "(see the log)" : first[$3]) }' "$L.log" | cut -c1-300
    fi
  fi
  rel=$(cat "$C/kernels/$k/release")
  grep -q "^VMTEST-KERNEL: $rel\$" "$L.log" || why="${why:+$why; }kernel $rel did not start the suite (console: $L.console)"
  got=$(grep -m1 '^VMTEST-LSMS: ' "$L.log" | cut -d' ' -f2- || true)
  if [ -n "$got" ] && [ "$on" = on ] && [[ ",$got," != *,bpf,* ]]; then why="${why:+$why; }BPF LSM is not active ($got)"; fi
  if [ -n "$floor" ]; then
    grep -q -- '--- PASS: TestKernelFloor' "$L.log" || why="${why:+$why; }below the floor, but TestKernelFloor did not pass"
    grep -q -- '--- PASS: TestSharedCopies' "$L.log" && why="${why:+$why; }marked below the floor, but the egress tests passed: take the mark off"
  elif [ -z "${VMTEST_RUN:-}" ]; then # (a run of some tests only need not have these)
    if [ "$on" = on ] && ! grep -q -- '--- PASS: TestExecTable/lsm' "$L.log"; then why="${why:+$why; }the LSM backend did not run"; fi
    be=lsm; [ "$on" = on ] || be=sigkill
    grep -q -- '--- PASS: TestExecBackendChosen' "$L.log" || why="${why:+$why; }nriguard was not shown to choose the $be backend"
    grep -q -- '--- PASS: TestExecTable/sigkill' "$L.log" || why="${why:+$why; }the SIGKILL backend did not pass"
    grep -q -- '--- PASS: TestSharedCopies' "$L.log" || why="${why:+$why; }the egress tests did not pass"
  fi
  if awk '/^=== (RUN|CONT) / { cur = $3 } /^ +[^ ]+\.go:[0-9]+: / { last[cur] = 1 } /^ *--- SKIP: / && !last[$3] { bad = 1 } END { exit !bad }' "$L.log"; then
    why="${why:+$why; }a test skipped without saying why"
  fi
  if [ -n "$why" ]; then
    if [ -n "$expect" ]; then
      summary+=("!!! $name: EXPECTED TO FAIL, NOT ENFORCED: $expect ($why; log: $L.log)")
    else
      summary+=("$name: FAILED: $why (log: $L.log, console: $L.console)")
      fail=1
    fi
  elif [ -n "$expect" ]; then
    summary+=("!!! $name: marked expected to fail ($expect) but passed: take the mark off")
    fail=1
  fi
done
echo "vmtest: the matrix took ${total}s"
for l in "${summary[@]}"; do echo "vmtest: $l"; done
[ "$fail" = 0 ] || { echo "vmtest: FAILED"; exit 1; }
echo "vmtest: every run passed"
