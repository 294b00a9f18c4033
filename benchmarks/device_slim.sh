#!/usr/bin/env bash
# The device tool carries the whole tracked tree (64 MiB a call, code and data together); the shipped models other
# than the generator take 74 MB of it. `slim` takes them (and the notebooks and figures) out of git's index and
# ignores them, so a call carries ~20 MB of tree and names only the files it needs in `carry`; `unslim` restores.
# While slim, commit with explicit paths only (`git commit -- PATHS`): a plain `git commit` would delete them.
#
#   bash benchmarks/device_slim.sh slim | unslim
set -euo pipefail
cd "$(dirname "$0")/.."
files="models/face128/psp.safetensors models/face128/psp-zplus.safetensors models/face128/e4e.safetensors
  models/face128/style-transformer.safetensors models/face128/reference-edit.safetensors
  models/face128/dualstylegan-stage2.safetensors models/face128/styles/*.safetensors notebooks/*.ipynb
  benchmarks/*.png benchmarks/pti_curves.json models/face128/*.png docs/screenshots/*.png"
exclude=.git/info/exclude
case $1 in
  slim)   for f in $files; do git rm -q --cached --ignore-unmatch "$f"; echo "/$f" >> $exclude; done ;;
  unslim) for f in $files; do sed -i "\#^/$f\$#d" $exclude; git add -f "$f"; done ;;
  *) echo "usage: $0 slim|unslim" >&2; exit 2 ;;
esac
git status --short | head -3
