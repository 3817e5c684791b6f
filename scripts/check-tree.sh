#!/bin/bash
# make lint: build outputs must not be committed. Fails, naming them, if a
# tracked file is an executable or shared ELF (BPF objects are relocatable
# ELF and belong in bpf/), a tar archive, or larger than 1 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  size=$(stat -c %s "$f")
  why=""
  if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
    # e_type at offset 16: 1 relocatable, 2 executable, 3 shared object
    etype=$(od -An -tu2 -j16 -N2 "$f" | tr -d ' ')
    [ "$etype" != 1 ] && why="an ELF executable or shared object"
    [ "$etype" = 1 ] && [[ "$f" != bpf/*.o ]] && why="an ELF object outside bpf/"
  elif [ "$size" -gt 262 ] && [ "$(dd if="$f" bs=1 skip=257 count=5 2>/dev/null)" = ustar ]; then
    why="a tar archive"
  elif [ "$size" -gt 1048576 ]; then
    why="larger than 1 MiB ($size bytes)"
  fi
  if [ -n "$why" ]; then echo "check-tree: $f is $why: build outputs are not committed (see .gitignore)"; bad=1; fi
done < <(git ls-files -z)
exit $bad
