#!/bin/bash
# make unit-nonroot: the tests as an unprivileged user. Those that need no
# root (grammar, compiler, digest, events schema, seccomp rewrite, runc
# wrapper, exec path resolution) must pass; those that do must skip with a
# one-line reason, not fail. The test binaries are built as root (the Go
# caches are root's) and run as nobody from a copy of the tree it can read.
set -euo pipefail
cd "$(dirname "$0")/.."
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# the tree as it is (tracked and new files), without build outputs
git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
  if [ -e "$f" ] || [ -L "$f" ]; then cp -P --parents "$f" "$W"; fi
done
mkdir -p "$W/.tests"
go test -c -o "$W/.tests/" ./... >/dev/null   # from here: the build cache serves them
chmod -R a+rX "$W"
fail=0
for t in "$W"/.tests/*.test; do
  pkg=$(basename "$t" .test)
  dir=$(cd "$W" && go list -f '{{.Dir}}' ./... | grep "/$pkg\$" | head -1)
  out=$(cd "${dir:-$W}" && setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp "$t" -test.count=1 -test.v 2>&1) || { echo "$out" | grep -v '^=== ' | tail -30; echo "unit-nonroot: $pkg FAILED as nobody"; fail=1; continue; }
  ran=$(grep -c '^--- PASS' <<<"$out" || true)
  skipped=$(grep -c '^--- SKIP' <<<"$out" || true)
  echo "unit-nonroot: $pkg: $ran passed, $skipped skipped (need root)"
done
exit $fail
