#!/usr/bin/env bash
# Model files a chain of device calls needs, mirrored under .carry/models/ (hard links: nothing is copied).
#
#   bash tools/gpu/stage_models.sh models/face128-v2/G_ema.safetensors models/face128/psp.safetensors ...
#
# Between chained calls the device keeps an ignored file only under a wholly ignored folder such as .carry/: one under
# models/, beside tracked files, is gone in the next call unless carried again (session 20: the training call found no
# G_ema.safetensors, carried one call earlier). So carry .carry/models/PATH; the chunk scripts put each file there
# back at PATH when they start.
set -euo pipefail
cd "$(dirname "$0")/../.."
for path in "$@"; do mkdir -p ".carry/models/$(dirname "$path")"; ln -f "$path" ".carry/models/$path"; done
du -sh .carry/models
