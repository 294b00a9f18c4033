#!/usr/bin/env bash
# One self-contained chunk of the embedded model's training on a GPU machine that keeps nothing between calls.
#
#   bash benchmarks/gpu_train_chunk.sh MINUTES [extra `python -m core.train stylegan2` options]
#
# In:  .bench/*.whl              the lpips and pytorch-msssim wheels (`core.train` imports them; see gpu_benchmarks.sh)
#      .carry/data/train-*.npz   the data shards this call trains on (rotate them across calls)
#      .carry/state/             compact resume state (G-*, D-* float16 parts + meta.json); absent: start fresh
# Out: $OUT/ G-*, G_ema-*, D-* parts, meta.json, samples.png, logs.tgz (log.jsonl, train.log, config.json,
#      and any other *.txt left in $OUT) -- at most 8 files of <= 16 MiB, what the device tool brings back.
# If the machine is still warm from the previous call, runs/face128 holds its exact state (state.pt, fp32 +
# Adam) and the shards it had: the chunk resumes from that when it is the state that was carried.
set -euo pipefail
minutes=$1
shift
run=runs/face128
out=${OUT:-out}
mkdir -p "$run/data" "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
# A fresh checkout has no .carry/state: rebuild it from what git keeps (D + meta in models/face128/resume; G starts
# from the shipped G_ema, whose file has the compact G's keys; the EMA restarts from it).
# Parts missing from a carried .carry/state (D, to keep the call under 64 MiB) come from models/face128/resume.
mkdir -p .carry/state
[ -f .carry/state/meta.json ] || cp models/face128/G_ema.safetensors .carry/state/G-00.safetensors
# models/face128/resume left the tree in session 6 (room for encoder data): `git checkout 0ae127d -- models/face128/resume`
[ -d models/face128/resume ] && cp -n models/face128/resume/* .carry/state/
cp .carry/data/train-*.npz "$run/data/"
resume=()
if [ -f "$run/state.pt" ] && cmp -s .carry/state/meta.json "$run/compact/meta.json"; then
  resume=(--resume "$run/state.pt")
elif [ -f .carry/state/meta.json ]; then
  resume=(--resume .carry/state)
fi
echo "chunk: ${#resume[@]} resume args ${resume[*]:-}; shards: $(ls "$run/data" | tr '\n' ' ')"
PYTHONUNBUFFERED=1 python -m core.train stylegan2 --data "$run/data" --out "$run" --minutes "$minutes" \
  "${resume[@]}" "$@" 2>&1 | tee "$run/train.log"
cp "$run"/compact/* "$out/"
cp "$(ls "$run"/samples-*.png | tail -1)" "$out/samples.png"
cp "$run"/{log.jsonl,train.log,config.json} "$out/" 2>/dev/null || true
(cd "$out" && tar czf logs.tgz --remove-files log.jsonl train.log config.json $(ls *.txt 2>/dev/null))
ls -la "$out"
