#!/bin/bash
# make vmtest: run the kernel tests of bpf/ (the egress datapath, and the
# exec tests under BPF LSM, which this machine's kernel refuses) in Debian
# 12's own kernel, 6.1, booted with lsm=...,bpf under qemu (TCG: no KVM
# needed). Fails if the tests fail or if the LSM backend was skipped there.
# Everything is cached in .cache/vmtest.
set -euo pipefail
cd "$(dirname "$0")/.."
C=$PWD/.cache/vmtest
mkdir -p "$C"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "vmtest: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The newest Debian 6.1 cloud kernel the archive has (the ABI number moves).
# (and its overlayfs module, for the exec identity tests on overlays)
if [ ! -s "$C/vmlinuz" ] || [ ! -s "$C/overlay.ko" ]; then
  [ -n "$(apt-cache search --names-only '^linux-image-6\.1\.0-.*-cloud-amd64-unsigned$' 2>/dev/null)" ] || apt-get update -qq
  pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-.*-cloud-amd64-unsigned$' | cut -d' ' -f1 | sort -V | tail -1)
  [ -n "$pkg" ] || { echo "vmtest: no linux-image-6.1.0-*-cloud-amd64-unsigned package in the apt sources"; exit 1; }
  echo "vmtest: fetching $pkg"
  rm -rf "$C/deb" && mkdir -p "$C/deb"
  (cd "$C/deb" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" && dpkg -x ./*.deb root)
  cp "$C"/deb/root/boot/vmlinuz-* "$C/vmlinuz"
  ko=$(find "$C/deb/root/lib/modules" -name 'overlay.ko*' | head -1)
  case $ko in
    *.xz) xz -dc "$ko" > "$C/overlay.ko" ;;
    *.zst) zstd -qdc "$ko" > "$C/overlay.ko" ;;
    *) cp "$ko" "$C/overlay.ko" ;;
  esac
  echo "$pkg" > "$C/kernel-package"
  rm -rf "$C/deb"
fi

# The test binary, static, and an initramfs around it.
CGO_ENABLED=0 go test -c -o "$C/bpf.test" ./bpf/
R=$C/initramfs
rm -rf "$R" && mkdir -p "$R"/{bin,proc,sys,dev,tmp,run}
cp /bin/busybox "$R/bin/busybox"
cp "$C/bpf.test" "$R/bpf.test"
cp "$C/overlay.ko" "$R/overlay.ko"
# iproute2 (the tests make a network namespace with it) and its libraries
mkdir -p "$R/usr/local/bin"
cp "$(command -v ip)" "$R/usr/local/bin/ip"
for lib in $(ldd "$(command -v ip)" | grep -o '/[^ ]*'); do
  mkdir -p "$R$(dirname "$lib")" && cp -L "$lib" "$R$lib"
done
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
insmod /overlay.ko || echo "vmtest: no overlayfs: the overlay cases will skip"
echo "vmtest: kernel $(uname -r), active LSMs: $(cat /sys/kernel/security/lsm)"
cd /tmp
export PATH=/usr/local/bin:/bin:/sbin
ip link set lo up
NRIGUARD_REQUIRE_LSM=1 /bpf.test -test.v -test.count=1 2>&1
echo "VMTEST-EXIT: $?"
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 > "$C/initrd.gz")

echo "vmtest: booting $(cat "$C/kernel-package") under qemu (TCG)"
timeout 600 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 -nographic -no-reboot \
  -kernel "$C/vmlinuz" -initrd "$C/initrd.gz" \
  -append "console=ttyS0 quiet lsm=lockdown,capability,landlock,bpf panic=-1" < /dev/null | tee "$C/console.log" | grep -v '^=== \|^\s*$' || true

grep -q 'VMTEST-EXIT: 0' "$C/console.log" || { echo "vmtest: FAILED (console log: $C/console.log)"; exit 1; }
grep -q -- '--- PASS: TestExecTable/lsm' "$C/console.log" || { echo "vmtest: the LSM backend did not run"; exit 1; }
grep -q -- '--- PASS: TestSharedCopies' "$C/console.log" || { echo "vmtest: the egress tests did not run"; exit 1; }
echo "vmtest: the egress datapath and the exec tests (BPF LSM and SIGKILL) passed in Linux $(cat "$C/kernel-package")"
