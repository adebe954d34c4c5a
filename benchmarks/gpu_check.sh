#!/usr/bin/env bash
# The GPU benchmarks and tests in one call, each under its own time limit so
# that a step cut off still leaves the others' results:
#
#   1. speed.py on CUDA (every model, alternating rounds) -> OUT/speed_cuda.*
#   2. profile_step.py on CUDA (acn, SchNet, batch 128)    -> OUT/profile_cuda*
#   3. the test suite on the GPU machine (CUDA tests included) -> OUT/cuda_tests.txt
#   4. the training program under torchrun, one process on the GPU (nccl and the
#      sharded sampler), 2 epochs of 1,000 molecules          -> OUT/ddp_cuda/
#   5. speed.py --compile (acn and SchNet, eager against torch.compile, batch
#      128)                                                   -> OUT/speed_cuda_compile.*
#
#   bash benchmarks/gpu_check.sh OUT
#   TESTS=cuda bash benchmarks/gpu_check.sh OUT   # only the CUDA tests
#   TESTS=none bash benchmarks/gpu_check.sh OUT   # no tests
#
# Needs data/qm9_subset.pt (benchmarks/qm9_subset.py). Where qm9pack is not
# installed, a folder .devstub/qm9pack with the first lines of its CSVs lets
# the example's tests run (tests/test_qm9_dataset.py, which needs the whole
# data set, is left out).
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT}
START=$(date +%s)
export PYTHONPATH=$PWD:$PWD/.devstub${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SUBSET=data/qm9_subset.pt
mkdir -p "$OUT"
nvidia-smi -L
elapsed() { echo $(( $(date +%s) - START )); }

timeout 200 $PY benchmarks/speed.py --device cuda --subset $SUBSET --repeats 20 \
    --out "$OUT/speed_cuda" 2>&1 | grep -v USDT | tail -22
echo "[$(elapsed) s] speed done"
timeout 60 $PY benchmarks/profile_step.py --device cuda --subset $SUBSET \
    --out "$OUT/profile_cuda" 2>&1 | grep -v USDT
echo "[$(elapsed) s] profile done"
if [ "${TESTS:-all}" != none ]; then  # TESTS=cuda: only the tests with CUDA in their name
    timeout 150 $PY -m pytest -n 8 -q -rs -p no:cacheprovider tests \
        --ignore=tests/test_qm9_dataset.py $([ "${TESTS:-all}" = cuda ] && echo "-k cuda") \
        > "$OUT/cuda_tests.txt" 2>&1
    tail -4 "$OUT/cuda_tests.txt"
    echo "[$(elapsed) s] tests done"
fi
DDP_DEVICE=${DDP_DEVICE:-cuda}  # cpu: the same command through gloo, for a check without a GPU
timeout 150 $PY -m torch.distributed.run --nproc_per_node=1 -m acn_pyg.train --subset $SUBSET \
    --device "$DDP_DEVICE" --train-size 1000 --val-size 500 --test-size 1000 --epochs 2 \
    --time-budget 60 --no-plot --out "$OUT/ddp_cuda" 2>&1 | grep -v USDT | tail -8
echo "[$(elapsed) s] torchrun done"
timeout 240 $PY benchmarks/speed.py --device cuda --subset $SUBSET --models acn,schnet \
    --batch-sizes 128 --compile --repeats 20 --out "$OUT/speed_cuda_compile" 2>&1 \
    | grep -v USDT | tail -12
echo "[$(elapsed) s] compile speed done"
