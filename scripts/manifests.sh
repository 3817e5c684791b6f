#!/bin/bash
# install/kubernetes/daemonset.yaml is the Helm chart (install/helm/nriguard)
# rendered with its default values into kube-system: `make manifests` writes
# it; `make lint` runs this with --check, which fails when the committed file
# is not what the chart renders.
set -euo pipefail
cd "$(dirname "$0")/.."
"$PWD/scripts/build-helm.sh"
HELM=${CACHE:-/var/cache/nriguard-e2e}/bin/helm
out=install/kubernetes/daemonset.yaml
render() {
  cat <<'HEAD'
# nriguard on every node, as an external NRI plugin (docs/install.md, Kubernetes):
# the node settings (ConfigMap), the DaemonSet, and the admission policy that
# keeps the toleration annotation to nriguard's own namespace.
#
# GENERATED from the Helm chart install/helm/nriguard with its default values
# (`make manifests`: helm template nriguard install/helm/nriguard --namespace
# kube-system). Do not edit: change the chart, or install it with your values.
#
# Build the image from the repository root (install/kubernetes/Dockerfile), put
# it in the node's containerd (or your registry: then set image.repository).
HEAD
  "$HELM" template nriguard install/helm/nriguard --namespace kube-system
}
want=$(render)   # a chart that does not render stops here (set -e), with helm's error
if [ "${1:-}" = --check ]; then
  # the chart is well formed with its defaults, and with values that take
  # every other branch of its templates
  other=(--namespace guard --set metrics.address=::1 --set metrics.enabled=false --set "ceiling.exec=allow /usr/"
    --set toleration.admissionPolicy=false --set "settings.default_egress=allow tcp any:443" --set "extraArgs={--debug}"
    --set nodeSelector.a=b --set priorityClassName= --set resources=null --set tolerations=null)
  for n in 0 1; do
    [ $n = 0 ] && args=() || args=("${other[@]}")
    "$HELM" lint --quiet --strict install/helm/nriguard "${args[@]}" > /dev/null ||
      { "$HELM" lint --strict install/helm/nriguard "${args[@]}"; echo "manifests: helm lint install/helm/nriguard ${args[*]} failed"; exit 1; }
  done
  if ! d=$(diff -u "$out" - <<<"$want"); then
    printf '%s\n' "$d" | head -40
    echo "manifests: $out is not what the chart install/helm/nriguard renders: run 'make manifests' and commit it"
    exit 1
  fi
  exit 0
fi
printf '%s\n' "$want" > "$out"
echo "manifests: wrote $out from install/helm/nriguard"
