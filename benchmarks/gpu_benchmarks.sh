#!/usr/bin/env bash
# Every GPU table of benchmarks/README.md in one self-contained device call (the machine starts bare).
# Run from the repo root with `.bench/` carried: the lpips wheel and the NVIDIA fixture manifest, made by
#   mkdir .bench && cp ../shared/fixtures/official/nvidia_stylegan2ada_1024/manifest.json .bench/ &&
#   pip download --no-deps --only-binary=:all: lpips==0.1.4 -d .bench
# Tables are written to $OUT (or ./gpu-tables).
set -u
out=${OUT:-gpu-tables}; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 benchmarks/device_setup.py /tmp/site
fixture=../shared/fixtures/official/nvidia_stylegan2ada_1024
mkdir -p $fixture && cp .bench/manifest.json $fixture/
python3 benchmarks/generator_speed.py --device cuda --repeats 10 | tee "$out/generator_speed_gpu.md"
python3 benchmarks/pti_speed.py --device cuda --arch ffhq1024 --project-steps 60 --tune-steps 60 \
    --variants fp32 bf16+cl bf16+cl+compile | tee "$out/pti_speed_gpu.md"
python3 benchmarks/encoder_speed.py --device cuda --repeats 10 | tee "$out/encoder_speed_gpu.md"
