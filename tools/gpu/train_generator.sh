#!/usr/bin/env bash
# The embedded generator's training on a GPU machine that keeps its files only while it stays warm (30 s after a
# call). The whole training set (WebP, ~52 MB) and the resume state (G, G_ema, D in float16, 46 MB) do not fit one
# call together, so a fresh machine takes two chained calls: `stage` brings the data, `train` the state.
#
#   bash tools/gpu/train_generator.sh stage                    # carry .carry/v2/data: kept in runs/v2/data
#   bash tools/gpu/train_generator.sh train MINUTES [python -m core.train stylegan2 options]
#
# train resumes from a carried compact .carry/v2/state the first time this machine sees it (Adam's moments restart),
# else from the warm machine's exact runs/v2/state.pt (fp32 nets, Adam, RNGs): a carried folder stays on the machine
# between calls, and is not taken again.
# Compact states are written in 15 MiB parts (`--part-mb 15`): the committed resume state stays under git's 20 MB a file.
# Carry: .bench (lpips / pytorch-msssim wheels, the float16 AlexNet trunk the in-loop metric uses) on every train call.
# Out:  state.tar.NN  G, G_ema, D float16 parts + meta.json (what the next session resumes from), 15 MiB pieces
#       best.tar.NN   the best G_ema by the in-loop FD, when it is not the last one
#       logs.tgz      log.jsonl, metrics.jsonl, train.log, config.json, the last sample grid
# Here: cat state.tar.* | tar x -C .carry/v2/state (likewise best.tar.* into .carry/v2/best)
# A call that runs a snapshot of the code (git archive HEAD core tools pyproject.toml > code.tgz, carried) removes the
# carried tree's core/ and tools/ first (`rm -rf core tools && tar xzf code.tgz && bash tools/gpu/...`): the device
# copies the working tree, whose new untracked files would otherwise sit beside the snapshot's.
set -euo pipefail
mode=$1
shift
run=runs/v2
out=$(realpath -m "${OUT:-out}")
mkdir -p "$run/data" "$out"
if [ -d .carry/v2/data ]; then
  cp .carry/v2/data/*.npz "$run/data/"
fi
if [ "$mode" = stage ]; then
  du -sh "$run/data"
  exit 0
fi
minutes=$1
shift
if ! ls "$run"/data/train-*.npz > /dev/null 2>&1; then
  echo "no training data on this machine (it was not warm): run 'stage' first" >&2
  exit 3
fi
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
export PYTHONPATH=/tmp/site:$PWD/.bench/site_half:$PWD PYTHONUNBUFFERED=1
carried=.carry/v2/state
if [ -f $carried/meta.json ] && ! cmp -s $carried/meta.json "$run/carried-meta.json"; then
  resume=$carried  # a state not resumed from on this machine yet (marked taken once the run succeeded)
elif [ -f "$run/state.pt" ]; then
  resume=$run/state.pt
else
  echo "nothing to resume from: carry .carry/v2/state" >&2
  exit 3
fi
echo "resume from $resume; data $(du -sh "$run/data" | cut -f1)"
python -m core.train stylegan2 --data "$run/data" --out "$run" --minutes "$minutes" --resume "$resume" --part-mb 15 "$@" 2>&1 |
  tee -a "$run/train.log"
[ "$resume" = "$carried" ] && cp $carried/meta.json "$run/carried-meta.json"
tar cf - -C "$run/compact" . | split -b 15M -d - "$out/state.tar."
if [ -f "$run/best/meta.json" ] && ! cmp -s <(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['nimg'])" \
    "$run/best/meta.json") <(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['nimg'])" \
    "$run/compact/meta.json"); then
  tar cf - -C "$run/best" . | split -b 15M -d - "$out/best.tar."
fi
cp "$(ls "$run"/samples-*.png | tail -1)" "$run/samples.png"
(cd "$run" && tar czf "$out/logs.tgz" $(ls log.jsonl metrics.jsonl train.log config.json samples.png 2>/dev/null))
ls -la "$out"
