#!/usr/bin/env bash
# Every GPU table of benchmarks/README.md in one self-contained device call (the machine starts bare).
# Run from the repo root with `.bench/` carried: the lpips wheel and the NVIDIA fixture manifest, made by
#   mkdir .bench && cp ../shared/fixtures/official/nvidia_stylegan2ada_1024/manifest.json .bench/ &&
#   pip download --no-deps --only-binary=:all: lpips==0.1.4 pytorch-msssim==1.0.0 -d .bench
# Tables are written to $OUT (or ./gpu-tables).
set -u
out=${OUT:-gpu-tables}; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
export PYTHONPATH=/tmp/site_random:/tmp/site:$PWD PYTHONUNBUFFERED=1
python tools/gpu/device_setup.py /tmp/site_random
fixture=../shared/fixtures/official/nvidia_stylegan2ada_1024
mkdir -p $fixture && cp .bench/manifest.json $fixture/
# Each table has its own time limit so that one slow part (a compilation) cannot cost the others; ~10 min each.
# Name parts to run only those: `bash tools/gpu/gpu_benchmarks.sh fir_speed train_speed`.
wanted=" ${*:-encoder_speed pti_speed train_speed generator_speed fir_speed} "
part() {
  local limit=$1 name=$2; shift 2
  [[ $wanted == *" $name "* ]] || return 0
  timeout "$limit" python3 "$@" 2>&1 | tee "$out/${name}_gpu.md"
}
part 110 encoder_speed benchmarks/encoder_speed.py --device cuda --repeats 10
part 200 pti_speed benchmarks/pti_speed.py --device cuda --arch ffhq1024 --project-steps 60 --tune-steps 60 \
    --variants fp32 bf16+cl bf16+cl+compile
part 570 train_speed benchmarks/train_speed.py --device cuda --steps 32
part 60 generator_speed benchmarks/generator_speed.py --device cuda --repeats 10
part 60 fir_speed benchmarks/fir_speed.py --device cuda
