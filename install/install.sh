#!/bin/bash
# make install: the binary, node settings, the systemd unit (external mode),
# the containerd drop-in and the pre-registered plugin link. It restarts
# nothing: see docs/install.md for what to enable.
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
install -D -m 755 bin/nriguard "$DESTDIR/usr/local/bin/nriguard"
ln -sf nriguard "$DESTDIR/usr/local/bin/nriguard-runc" # the runc wrapper (nerdctl, ctr)
install -D -m 644 -t "$DESTDIR/usr/share/containers/oci/hooks.d" install/hooks.d/*.json
[ -e "$DESTDIR/etc/nriguard/config.yaml" ] || install -D -m 644 install/config/config.yaml "$DESTDIR/etc/nriguard/config.yaml"
install -D -m 644 install/systemd/nriguard.service "$DESTDIR/etc/systemd/system/nriguard.service"
install -D -m 644 install/containerd/nriguard.toml "$DESTDIR/etc/containerd/conf.d/nriguard.toml"
install -d "$DESTDIR/opt/nri/plugins" "$DESTDIR/etc/nri/conf.d"
ln -sf /usr/local/bin/nriguard "$DESTDIR/opt/nri/plugins/10-nriguard"
[ -e "$DESTDIR/etc/nri/conf.d/10-nriguard.conf" ] || install -m 644 install/nri/10-nriguard.conf "$DESTDIR/etc/nri/conf.d/10-nriguard.conf"
echo "installed under ${DESTDIR:-/}. Next (docs/install.md): either 'systemctl enable --now nriguard' (external)"
echo "or rely on the pre-registered link in /opt/nri/plugins; import /etc/containerd/conf.d/*.toml and restart containerd."
