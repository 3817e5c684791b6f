#!/bin/bash
# Build the e2e images without a registry: OCI layouts made with tar and
# sha256sum from Debian's static busybox.
#   localhost/e2e/busybox:latest   busybox, plus /opt/bin/tool and /opt/bin/nc:
#                                  copies of it (other files, for exec and
#                                  exe= rules; nc runs the nc applet), and
#                                  /bin/ngprobe ($NGPROBE: test/ngprobe, the
#                                  attacker's probe) if given
#   localhost/e2e/pause:latest     the sandbox image
#   localhost/e2e/labelled:latest  busybox whose image config carries the label
#                                  egress.nriguard.io: allow tcp 127.0.0.1:18081
# Usage: mkimage.sh OUT.tar [BUSYBOX.tar]
#   OUT.tar holds all three (for ctr import); BUSYBOX.tar only the busybox
#   image (podman load takes one image per archive)
set -euo pipefail
OUT=$1
OUT_BUSYBOX=${2:-}
BB=${BUSYBOX:-/bin/busybox}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

R=$W/rootfs
mkdir -p $R/bin $R/etc $R/tmp $R/proc $R/sys $R/dev $R/root $R/opt/bin
cp "$BB" $R/bin/busybox
for a in $("$BB" --list); do [ "$a" = busybox ] || ln -s busybox $R/bin/$a; done
cp "$BB" $R/opt/bin/tool
cp "$BB" $R/opt/bin/nc   # busybox's nc applet from another file, for exe= rules
[ -z "${NGPROBE:-}" ] || cp "$NGPROBE" $R/bin/ngprobe
echo 'root:x:0:0:root:/root:/bin/sh' > $R/etc/passwd
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> $R/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > $R/etc/group
chmod 1777 $R/tmp
printf '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile :; do sleep 3600 & wait $!; done\n' > $R/bin/pause
chmod 755 $R/bin/pause

B=$W/blobs/sha256
mkdir -p $B
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C $R -cf $W/layer.tar .
LD=$(sha256sum $W/layer.tar | cut -d' ' -f1)
LS=$(stat -c %s $W/layer.tar)
mv $W/layer.tar $B/$LD

blob() { # stdin -> blob; prints "digest size"
  local t=$W/tmpblob d
  cat > $t
  d=$(sha256sum $t | cut -d' ' -f1)
  echo "$d $(stat -c %s $t)"
  mv $t $B/$d
}
manifest() { # $1 = image config "config" object
  set -- $(printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$1" "$LD" | blob)
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$1" "$2" "$LD" "$LS" | blob
}
desc() { # $1 digest, $2 size, $3 name
  printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}' "$1" "$2" "$3"
}
set -- $(manifest '{"Env":["PATH=/bin:/opt/bin"],"Cmd":["/bin/sh"]}')
D1=$(desc $1 $2 localhost/e2e/busybox:latest)
set -- $(manifest '{"Env":["PATH=/bin"],"Entrypoint":["/bin/pause"]}')
D2=$(desc $1 $2 localhost/e2e/pause:latest)
set -- $(manifest '{"Env":["PATH=/bin:/opt/bin"],"Cmd":["/bin/sh"],"Labels":{"egress.nriguard.io":"allow tcp 127.0.0.1:18081"}}')
D3=$(desc $1 $2 localhost/e2e/labelled:latest)

layout() { # OUT descriptors...
  local out=$1 L=$W/layout
  shift
  rm -rf $L
  mkdir -p $L/blobs/sha256
  echo '{"imageLayoutVersion":"1.0.0"}' > $L/oci-layout
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$(IFS=,; echo "$*")" > $L/index.json
  cp $B/* $L/blobs/sha256/
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C $L -cf "$out" .
}
layout "$OUT" "$D1" "$D2" "$D3"
[ -z "$OUT_BUSYBOX" ] || layout "$OUT_BUSYBOX" "$D1"
