#!/usr/bin/env bash
# The #18 PTI speed measurements on a bare GPU machine, one device call (the tree slimmed, `.bench` and
# `.carry/pti_curves` carried). Each command has its own time limit, so one that fails or runs long leaves the rest.
#
#   bash tools/gpu/gpu_pti_speed.sh eager graph compile locality    # one call (~7 min on a fresh machine)
#   bash tools/gpu/gpu_pti_speed.sh batched processes quality      # another; batch64 alone (its memory)
#
# Writes $OUT/<part>.md (tables) and $OUT/quality/*.npz (scored on the CPU: `pti_speed_quality score`).
set -u
out=${OUT:-out}; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
python3 tools/gpu/device_setup.py /tmp/site_random > /dev/null   # random LPIPS trunks: timing only
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
speed() { PYTHONPATH=/tmp/site_random:/tmp/site:$PWD timeout "$1" python3 -m benchmarks.pti_speed --device cuda \
  --arch ffhq1024 "${@:2}"; }
for part in "$@"; do
  started=$SECONDS
  case $part in
    graph)     speed 150 --variants fp32+step-graph bf16+cl+step-graph ;;
    locality)  speed 200 --locality --variants bf16+cl+compile+step-graph ;;
    eager)     speed 100 --variants fp32 --repeats 1 ;;
    compile)   speed 240 --variants bf16+cl+compile+step-graph ;;
    batched)   speed 300 --independent --batch 4 8 16 --variants bf16+cl+compile+step-graph --project-steps 100 \
                 --tune-steps 100 ;;
    batch64)   speed 300 --independent --batch 64 --variants bf16+cl+compile+step-graph --project-steps 20 \
                 --tune-steps 20 --repeats 1 ;;
    processes) for i in 0 1; do speed 200 --variants bf16+cl+compile+step-graph --repeats 3 > "/tmp/process$i.md" 2>&1 & done
               wait; tail -n 4 /tmp/process*.md ;;
    quality)   PYTHONPATH=$PWD/.bench/site_half:/tmp/site:$PWD timeout 220 python3 -m benchmarks.pti_speed_quality run \
                 --device cuda --variants bf16+cl+compile+step-graph fp32 --limit 8 --out "$out/quality" ;;
    *) echo "unknown part $part" ;;
  esac > "$out/$part.md" 2>&1
  echo "$part: $((SECONDS - started)) s"; tail -n 6 "$out/$part.md"
done
