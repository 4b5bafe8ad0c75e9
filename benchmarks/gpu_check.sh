#!/usr/bin/env bash
# The GPU checks of issue 10 in one prepared call, for a machine with a CUDA device:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. the CUDA-marked tests (a missing GPU fails them, as in `tox -e gpu`), 2. the GPU share
# benchmark (quantizer's share of the step, BLAQ over LAQ), 3. one quick-profile table on CUDA,
# 4. (last, bounded: it compiles first) the compiled path's steps on VGG-small.
# Each step's output goes to OUT_DIR (default gpu-check); a failing step does not stop the next.
set -u
out=${1:-gpu-check}
mkdir -p "$out"
py=${PYTHON:-python}
export PYTHONHASHSEED=0 MPLBACKEND=Agg
BLAQ_REQUIRE_CUDA=1 "$py" -m pytest -q -m cuda tests 2>&1 | tee "$out/cuda-tests.txt"
"$py" benchmarks/gpu_share.py --steps 10 --json "$out/gpu-share.json" 2>&1 | tee "$out/gpu-share.txt"
"$py" reproduce.py --table 2 --profile quick --device cuda --runs-dir "$out/runs" \
    --out-dir "$out" 2>&1 | tail -40 | tee "$out/table2-cuda.txt"
timeout 300 "$py" benchmarks/gpu_share.py --steps 10 --models vgg-small --compiled \
    --optimizers fp-adam fp-adam-fused laq-lab laq-lab-c laq-lat-exact-c laq-laq-linear-c \
    laq-laq-linear-r1-c blaq-lab-c blaq-lat-exact-c --json "$out/gpu-share-compiled.json" \
    2>&1 | tee "$out/gpu-share-compiled.txt"
