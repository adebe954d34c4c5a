#!/usr/bin/env bash
# One GPU session's checks, in the order of their value, each under its own
# time limit so that a cut-off step still leaves the others' results:
#
#   1. speed.py on CUDA (every model, alternating rounds) -> OUT/speed_cuda.*
#   2. profile_step.py on CUDA (acn, SchNet, batch 128)    -> OUT/profile_cuda*
#   3. the test suite on the GPU machine (CUDA tests included) -> OUT/cuda_tests.txt
#   4. only if the GPU speed target is met, and ending by DEADLINE seconds
#      after the start: the 1,000-molecule learning-curve point for several
#      init seeds and two EMA decays in parallel processes -> OUT/lc_runs.tgz
#
#   bash benchmarks/gpu_check.sh OUT [DEADLINE]
#   TESTS=cuda bash benchmarks/gpu_check.sh OUT 500   # only the CUDA tests
#
# Needs data/qm9_subset.pt (benchmarks/qm9_subset.py). Where qm9pack is not
# installed, a folder .devstub/qm9pack with the first lines of its CSVs lets
# the example's tests run (tests/test_qm9_dataset.py, which needs the whole
# data set, is left out).
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT [DEADLINE]}
DEADLINE=${2:-540}
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

if ! grep -q "MET" "$OUT/speed_cuda.md" 2>/dev/null || grep -q "MISSED" "$OUT/speed_cuda.md"; then
    echo "GPU speed target not met: no training"
    exit 0
fi
# Minutes of training that leave 75 s for the test-set evaluation and packing.
BUDGET=$(( (DEADLINE - $(elapsed) - 75) / 60 ))
if [ "$BUDGET" -lt 2 ]; then
    echo "too little time left for training"
    exit 0
fi
echo "training budget: $BUDGET min per run, 6 runs in parallel"
RUNS=runs/gpu_check
mkdir -p "$RUNS"
for ema in 0.99 0.999; do
    for seed in 0 1 2; do
        name=n1000_eq_wd_b32_ema${ema}_s${seed}
        timeout $(( DEADLINE - $(elapsed) - 20 )) $PY benchmarks/learning_curve.py \
            --subset $SUBSET --device cuda --threads 2 --sizes 1000 --budgets "$BUDGET" \
            --models acn --batch-size 32 --hidden-irreps 64x0e+16x1o+16x2e \
            --weight-decay 0.05 --ema $ema --init-seed $seed --val-size 1000 \
            --test-size 10000 --runs "$RUNS/$name" --out "$RUNS/$name/lc" \
            > "$RUNS.$name.log" 2>&1 &
    done
done
wait
grep -h "kcal/mol (" "$RUNS".*.log
tar czf "$OUT/lc_runs.tgz" --exclude=last.pt "$RUNS" "$RUNS".*.log
echo "[$(elapsed) s] training done"
