#!/usr/bin/env bash
# The device tool carries the whole tracked tree (64 MiB a call, code and data together); the shipped models, notebooks
# and figures take ~190 MB of it. `slim` takes them out of git's index and ignores them, so a call carries ~1.3 MB of
# code and names what it needs in `carry`; `unslim` restores them. While slim, commit with explicit paths only
# (`git commit -- PATHS`): a plain `git commit` would delete them.
#
#   bash tools/gpu/slim.sh slim | unslim
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude=.git/info/exclude
case $1 in
  slim)
    files=$(git ls-files -- '*.safetensors' '*.png' '*.jpg' '*.ipynb' benchmarks/pti_curves.json)
    echo "# slim: begin" >> $exclude
    for f in $files; do git rm -q --cached "$f"; echo "/$f" >> $exclude; done
    echo "# slim: end" >> $exclude ;;
  unslim)
    files=$(sed -n '/^# slim: begin$/,/^# slim: end$/{/^\//s#^/##p}' $exclude)
    sed -i '/^# slim: begin$/,/^# slim: end$/d' $exclude
    for f in $files; do git add -f "$f"; done ;;
  *) echo "usage: $0 slim|unslim" >&2; exit 2 ;;
esac
echo "$(git ls-files | wc -l) tracked files, $(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) bytes"
