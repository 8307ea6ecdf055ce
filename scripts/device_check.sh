#!/usr/bin/env bash
# The GPU check, in one short run (its timeouts cap it at 9 minutes: 3 for the tests, 6 for speed):
# the CUDA tests, then scoring speed in float32 and bfloat16 at several batch sizes for both
# shipped models (random weights in their real configurations: speed does not depend on the weight
# values). Needs python3 with torch, transformers, numpy and pytest; nothing is installed and no
# registry is reached. The project runs from this checkout (PYTHONPATH), not from an install.
#
#   OUT=results/ bash scripts/device_check.sh
#
# Writes $OUT/gpu.txt (the card), $OUT/cuda_tests.log, $OUT/device_speed.json and .log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-artifacts/device}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
  | tee -a "$OUT/gpu.txt"

# The CUDA paths of the test suite (tests/test_cuda.py; skipped on machines without CUDA)
timeout 180 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log"
tests=${PIPESTATUS[0]}

timeout 360 python3 scripts/device_speed.py --device cuda -o "$OUT/device_speed.json" 2>&1 | tee "$OUT/device_speed.log"
speed=${PIPESTATUS[0]}

echo "cuda tests exit $tests, speed exit $speed"
exit $(( tests != 0 || speed != 0 ))
