#!/usr/bin/env bash
# Learning-curve variants run in parallel on one GPU: the hyper-parameter
# searches behind research/results/learning_curve_gpu* and the gpu_*_n10000*
# folders. AtomCloudNet and SchNet steps on QM9 batches are bound by launch
# overhead, so one process leaves most of a GPU idle: on an H100, 6 processes
# each ran at 48% of the train-step throughput of one alone (2.9x in total).
#
#   python benchmarks/qm9_subset.py            # where qm9pack is installed
#   bash research/gpu_learning_curve.sh runs/gpu 10000   # the 10,000-molecule runs
#   bash research/gpu_learning_curve.sh runs/gpu 1000    # the 1,000-molecule variants
#   bash research/gpu_learning_curve.sh runs/gpu 10000-long  # the best recipe, 25 minutes
#   BUDGET=12 bash research/gpu_learning_curve.sh runs/gpu 10000-solo  # one run, whole GPU
#   BUDGET=12 bash research/gpu_learning_curve.sh runs/gpu 10000-pair  # eager and compiled
#   BUDGET=12 bash research/gpu_learning_curve.sh runs/gpu 10000-fast  # compiled, b128, workers
#   BUDGET=12 bash research/gpu_learning_curve.sh runs/gpu 10000-b128  # eager, b128, workers
#   INIT=runs/gpu/acn_eq_wd_n10000_b128/acn_n10000/best.pt BUDGET=12 \
#       bash research/gpu_learning_curve.sh runs/gpu 10000-warm  # warm restarts of b128
#   [INIT=...] BUDGET=12 bash research/gpu_learning_curve.sh runs/gpu 10000-capacity
#       # wider; no decay
#   INIT=... BUDGET=12 bash research/gpu_learning_curve.sh runs/gpu 10000-wide
#       # the wide model on, beside two from scratch
#   BUDGET=8 bash research/gpu_learning_curve.sh runs/gpu 10000-arch  # wide: +products, +layer
#   [INIT=...] BUDGET=8 bash research/gpu_learning_curve.sh runs/gpu 10000-deep
#       # 4 layers (on, or from scratch); 5, 6 layers
#   INIT=... BUDGET=8 bash research/gpu_learning_curve.sh runs/gpu 10000-grow
#       # a 4-layer model on as it is, and grown to 5 and 6 layers (research/grow.py)
#   [INIT=...] BUDGET=8 bash research/gpu_learning_curve.sh runs/gpu 10000-denoise
#       # 4 layers, +denoising
#   INIT=... BUDGET=8 bash research/gpu_learning_curve.sh runs/gpu 10000-l4-warm
#       # a 4-layer wide model trained on alone, peak lr 3e-4
#   INIT=... BUDGET=8 bash research/gpu_learning_curve.sh runs/gpu 10000-l4-reg
#       # it three times at once: weight decay 0.1, 0.2 and 0.3
#   [BUDGET=40] TIMEOUT=540 bash research/gpu_learning_curve.sh runs/gpu 10000-l4-long [--resume]
#       # the 4-layer wide model alone on a schedule spanning calls
#   PREV=runs/gpu BUDGET=3.3 bash research/gpu_learning_curve.sh runs/gpu_b 10000-again
#       # every finished run of PREV on from its best.pt, with its own model flags
#       # and its own denoising (or none); ONLY="NAME ..." continues those alone,
#       # WD=decay gives them that weight decay (default 0)
#       # (10000-wide-again and 10000-arch-again: the same, under earlier names)
#
# INIT is a best.pt (or last.pt) of the model the mode names. The checkpoints
# the searches started from are in the git history:
#   git show a84ce7a:benchmarks/checkpoints/NAME/best.pt > NAME.pt
# (e.g. h200x2_cpu2_n10000_wide_l4_wd0.25, the best 4-layer wide model).
#
# A schedule longer than a machine's time limit (BUDGET=36, say) can span
# calls: each call runs with TIMEOUT under the limit and --resume; before the
# machine goes, copy the run's folder with its last.pt (weights, EMA,
# optimizer, RNG states) into $OUT, and for the next call put it back under
# OUT_DIR. Copy every finished run folder (metrics.json, best.pt) out of a
# machine that does not keep its disk, or its checkpoints are lost; keep the
# ones worth starting from with research/keep_checkpoint.py (it checks the
# test MAE first).
#
# The runs need data/qm9_subset.pt on the machine (without it every run
# stops at once).
#
# A third argument is passed to every run, e.g. --resume to continue runs cut
# off by a time limit (same flags otherwise). TIMEOUT (seconds) stops runs
# that outlast a machine's time limit; their last.pt stays for --resume.
# DEVICE (default cuda) and THREADS (default 2) set where and on how many
# CPU threads each run works; PYTHON (default python) the interpreter.
set -uo pipefail
OUT=${1:?usage: gpu_learning_curve.sh OUT_DIR 1000|10000|10000-long|10000-solo|10000-pair|10000-fast|10000-b128|10000-warm|10000-capacity|10000-wide|10000-arch|10000-deep|10000-grow|10000-denoise|10000-l4-long|10000-l4-warm|10000-l4-reg|10000-again [extra flags]}
SIZE=${2:?usage: gpu_learning_curve.sh OUT_DIR 1000|10000|10000-long|10000-solo|10000-pair|10000-fast|10000-b128|10000-warm|10000-capacity|10000-wide|10000-arch|10000-deep|10000-grow|10000-denoise|10000-l4-long|10000-l4-warm|10000-l4-reg|10000-again [extra flags]}
EXTRA=${3:-}
EQ=64x0e+16x1o+16x2e
# The best recipe at 10,000 molecules over a BUDGET-minute schedule (default 12).
BEST10K="--sizes 10000 --budgets ${BUDGET:-12} --models acn --hidden-irreps $EQ --weight-decay 0.05"
# Batch 128, two collating workers, and with twice the channels (574,401
# parameters) the wide model.
B128="--sizes 10000 --budgets ${BUDGET:-12} --models acn --batch-size 128 --workers 2"
WIDE="$B128 --hidden-channels 128 --hidden-irreps 128x0e+32x1o+32x2e"
# The 10000-arch runs (research/results/gpu_h100_n10000_arch/), NAME:FLAGS beyond $WIDE.
ARCH=("acn_eq_wide_n10000_b128_control:"
      "acn_eq_wide_prod32_gain10_n10000_b128:--product-channels 32 --radial-gain 10"
      "acn_eq_wide_l4_n10000_b128:--num-layers 4")
mkdir -p "$OUT"

run() {  # name, then learning_curve.py flags
    local name=$1
    shift
    timeout "${TIMEOUT:-86400}" "${PYTHON:-python}" benchmarks/learning_curve.py \
        --subset data/qm9_subset.pt --device "${DEVICE:-cuda}" --threads "${THREADS:-2}" --val-size 1000 \
        --test-size 10000 --runs "$OUT/$name" --out "$OUT/$name/lc" $EXTRA "$@" \
        > "$OUT/$name.log" 2>&1 &
}

l4_warm() {  # name, then flags: a warm restart of the 4-layer wide model from
    # INIT, batch 128, at peak lr 3e-4 (the 10000-l4-* modes)
    local name=$1
    shift
    # shellcheck disable=SC2086
    run "$name" $WIDE --num-layers 4 --init-from "$INIT" --lr 3e-4 --warmup 0.02 "$@"
}

if [ "$SIZE" = 10000-capacity ]; then
    # The base equivariant model underfits at 10,000 molecules (0.64 kcal/mol
    # on its training molecules, 0.90 validation; results/fit_diagnostic.md),
    # and weight decay hurt there both warm (results/cpu_warm_n10000_wd/: 0.923
    # without, 0.950 with 0.05) and from scratch (results/cpu_n10000_scratch/:
    # 1.349 against 1.571). So, from scratch and without weight decay: twice the
    # channels beside the base model (only the width differs). The wide model
    # has 574,401 parameters (3.2x) and took 2.5x the base's CPU step at batch
    # 64; alone, the base step kept an H100 only 30% busy, three runs 99%.
    # With INIT= (a best.pt of the base model), a third run restarts from it,
    # also without weight decay, at a third of the scratch peak lr.
    run acn_eq_wide_n10000_b128 --sizes 10000 --budgets "${BUDGET:-12}" --models acn \
        --batch-size 128 --workers 2 --weight-decay 0 \
        --hidden-channels 128 --hidden-irreps 128x0e+32x1o+32x2e
    run acn_eq_n10000_b128 --sizes 10000 --budgets "${BUDGET:-12}" --models acn \
        --hidden-irreps $EQ --batch-size 128 --workers 2 --weight-decay 0
    if [ -n "${INIT:-}" ]; then
        run acn_eq_n10000_b128_warm --sizes 10000 --budgets "${BUDGET:-12}" --models acn \
            --hidden-irreps $EQ --batch-size 128 --workers 2 --weight-decay 0 \
            --init-from "$INIT" --lr 1e-3 --warmup 0.02
    fi
elif [ "$SIZE" = 10000-wide ]; then
    # After results/gpu_h100_n10000_capacity/: twice the channels tested 9%
    # below the base model in the same 7.4 GPU minutes (0.997 against 1.095),
    # fits its training molecules to 0.35 against 0.98 on validation, and was
    # still improving when its schedule ended. So: a wide checkpoint
    # (INIT=h100_cpu_n10000_wide_wd0 of commit a84ce7a, or a later one)
    # trained on at the gentle peak learning rate (3e-4: in
    # results/gpu_h100_n10000_warm/ a warm restart at 1e-3 lost, at 3e-4
    # gained), and beside it the wide model from scratch twice: with weight
    # decay 0.01 on the capacity runs' seed and data order (does the wide
    # model's gap want regularising?), and without decay on another seed (the
    # seed-to-seed spread, and a differently started member for an ensemble:
    # the mean of two differently started models beat both by 12%).
    INIT=${INIT:?set INIT to a best.pt of the wide model}
    run acn_eq_wide_n10000_b128_warm_lr3e-4 $WIDE --weight-decay 0 --init-from "$INIT" \
        --lr 3e-4 --warmup 0.02
    run acn_eq_wide_wd0.01_n10000_b128 $WIDE --weight-decay 0.01
    run acn_eq_wide_n10000_b128_seed2 $WIDE --weight-decay 0 --init-seed 2
elif [ "$SIZE" = 10000-arch ]; then
    # Where the 10,000-molecule error is (results/error_analysis_n10000/): in
    # the bulk of ordinary neutral molecules (0.914 there), and the wide model
    # fits its training molecules to 0.22 against 0.93 on validation; warm
    # restarts and weight averages stopped paying. So: what changes the
    # model's inductive bias, from scratch, on the capacity runs' seed and
    # data order, against a control in the same call (same GPU share): the
    # wide model as it is; with products of the cloud with itself (body order
    # three, 32 channels per irrep, radial gain 10: the best change at 1,000
    # molecules); with a fourth layer.
    for name_flags in "${ARCH[@]}"; do
        # shellcheck disable=SC2086
        run "${name_flags%%:*}" $WIDE --weight-decay 0 ${name_flags#*:}
    done
elif [ "$SIZE" = 10000-deep ]; then
    # After results/gpu_h100_n10000_arch/: a fourth layer tested 8% below the
    # 3-layer wide model from scratch in the same wall time (0.979 against
    # 1.063), 0.959 after one warm restart and 0.952 after 100 CPU minutes
    # more. So: that checkpoint (INIT=h100x2_cpu_n10000_wide_l4 of commit
    # a84ce7a, or a later one) trained on at 3e-4, and beside it five and six
    # layers from scratch on the same seed and data order (does depth keep
    # paying?). Without INIT, four layers from scratch instead, the arch
    # call's run again: a control in the same call (runs compare within a
    # call only) and a repeat of its 0.979.
    if [ -n "${INIT:-}" ]; then
        run acn_eq_wide_l4_n10000_b128_warm_lr3e-4 $WIDE --weight-decay 0 --num-layers 4 \
            --init-from "$INIT" --lr 3e-4 --warmup 0.02
    else
        run acn_eq_wide_l4_n10000_b128 $WIDE --weight-decay 0 --num-layers 4
    fi
    run acn_eq_wide_l5_n10000_b128 $WIDE --weight-decay 0 --num-layers 5
    run acn_eq_wide_l6_n10000_b128 $WIDE --weight-decay 0 --num-layers 6
elif [ "$SIZE" = 10000-grow ]; then
    # A 4-layer wide checkpoint (INIT=h100x2_cpu_n10000_wide_l4 of commit
    # a84ce7a, or a later one; a best.pt beside its run's metrics.json)
    # trained on at 3e-4 as it is, beside the same weights grown to five and
    # to six layers (research/grow.py: the new layers start as the identity,
    # so all three start from its function; does depth keep paying from a
    # trained start?).
    INIT=${INIT:?set INIT to a best.pt of the 4-layer wide model, beside its metrics.json}
    for layers in 4 5 6; do
        init=$INIT
        if [ "$layers" != 4 ]; then
            init=$OUT/grown_l$layers.pt
            "${PYTHON:-python}" research/grow.py "$(dirname "$INIT")" --checkpoint "$INIT" \
                --num-layers "$layers" --out "$init" || exit 2
        fi
        # shellcheck disable=SC2086
        run "acn_eq_wide_l4to${layers}_n10000_b128_warm_lr3e-4" $WIDE --weight-decay 0 \
            --num-layers "$layers" --init-from "$init" --lr 3e-4 --warmup 0.02
    done
elif [ "$SIZE" = 10000-denoise ]; then
    # Denoising as an auxiliary task (--denoise-weight 1 --denoise-sigma 0.05:
    # each step also runs the model on displaced positions, a vector head
    # predicts the displacement) lowered the test error at 100 and 1,000
    # molecules at equal epochs (results/denoise_n100/, results/denoise_n1000/),
    # for about twice the step. At 10,000 the GPU's steps are the limit, so
    # here at equal wall time: the 4-layer wide model from scratch (the arch
    # call's run again, the control) beside the same with denoising; and with
    # INIT (a 4-layer checkpoint) that model trained on at 3e-4 with
    # denoising, else a third from-scratch run with sigma 0.1. Run without
    # INIT (results/gpu_h100_n10000_denoise/): control 0.999, sigma 0.05
    # 1.256, sigma 0.1 1.238 (half the epochs); behind at equal epochs too.
    DN="$WIDE --weight-decay 0 --num-layers 4 --denoise-weight 1"
    run acn_eq_wide_l4_n10000_b128 $WIDE --weight-decay 0 --num-layers 4
    run acn_eq_wide_l4_dn1_s0.05_n10000_b128 $DN --denoise-sigma 0.05
    if [ -n "${INIT:-}" ]; then
        run acn_eq_wide_l4_dn1_s0.05_n10000_b128_warm_lr3e-4 $DN --denoise-sigma 0.05 \
            --init-from "$INIT" --lr 3e-4 --warmup 0.02
    else
        run acn_eq_wide_l4_dn1_s0.1_n10000_b128 $DN --denoise-sigma 0.1
    fi
elif [ "$SIZE" = 10000-l4-long ]; then
    # Denoising lost at 10,000 molecules (results/gpu_h100_n10000_denoise/),
    # at equal time and at equal epochs; what has paid there is steps. Alone
    # on the H100 the 4-layer wide model trained 20 epochs a minute, against
    # 11 each when three runs shared it. So: that model alone, from scratch on
    # the capacity runs' seed and data order, on a long cosine schedule
    # (BUDGET minutes, default 40) that spans calls: TIMEOUT cuts each call,
    # the next passes --resume as the third argument. Its last.pt (about 13 MB:
    # weights, EMA, optimizer) must be carried to the next call.
    run acn_eq_wide_l4_n10000_b128_long --sizes 10000 --budgets "${BUDGET:-40}" --models acn \
        --batch-size 128 --workers 2 --hidden-channels 128 --hidden-irreps 128x0e+32x1o+32x2e \
        --weight-decay 0 --num-layers 4
elif [ "$SIZE" = 10000-l4-warm ]; then
    # A result within one short call rather than a quarter of 10000-l4-long:
    # a 4-layer wide model (INIT=h100x2_cpu3_n10000_wide_l4 of commit a84ce7a,
    # 0.949) alone on the GPU, a fresh AdamW and a new BUDGET-minute cosine
    # schedule at peak lr 3e-4, no weight decay: the warm restart that took the
    # base model from 0.973 to 0.945 on a shared H100. On an H200
    # (results/gpu_h200_n10000_l4_warm/): 0.949 -> 0.919 in 8 minutes, then
    # -> 0.914 with INIT= that run's best.pt and BUDGET=3.3.
    INIT=${INIT:?set INIT to a best.pt of the 4-layer wide model}
    l4_warm acn_eq_wide_l4_n10000_b128_warm_solo --weight-decay 0
elif [ "$SIZE" = 10000-l4-reg ]; then
    # After results/gpu_h200_n10000_l4_warm/: the 4-layer model fits its
    # training molecules to 0.155 kcal/mol against 0.880 on validation, and
    # further restarts alone gained 0.030, then 0.005. On the CPU, weight decay
    # then helped each time at peak lr 1e-4: 0.05 against none (test 0.909
    # against 0.916, results/cpu_warm_n10000_abcf235/), then 0.25 against 0.05
    # (results/cpu_warm_n10000_4be3f23/). So, three warm restarts of the best
    # model (INIT=h200x2_cpu2_n10000_wide_l4_wd0.25 of commit a84ce7a)
    # sharing the GPU, at peak lr 3e-4 (AdamW's decay per step is lr x weight
    # decay, three times the CPU runs'), over decay strengths: 0.1, 0.2 and
    # 0.3 (on the CPU 0.5 and 1 made the 0.902 model worse from the first
    # epoch: results/cpu_warm_n10000_1d08fee/). Then 10000-again with PREV
    # continues them, each with its own model flags but weight decay 0 (ONLY=
    # the winner's name continues it alone, WD= its decay keeps that).
    INIT=${INIT:?set INIT to a best.pt of the 4-layer wide model}
    l4_warm acn_eq_wide_l4_n10000_b128_reg_wd0.1 --weight-decay 0.1
    l4_warm acn_eq_wide_l4_n10000_b128_reg_wd0.2 --weight-decay 0.2
    l4_warm acn_eq_wide_l4_n10000_b128_reg_wd0.3 --weight-decay 0.3
elif [ "$SIZE" = 10000-again ] || [ "$SIZE" = 10000-wide-again ] \
        || [ "$SIZE" = 10000-arch-again ]; then
    # Every finished 10,000-molecule run of an earlier call (PREV=its OUT_DIR,
    # still on the machine, or carried) trained on once more from its best.pt
    # at peak lr 3e-4, batch 128, no weight decay, each with the model and
    # denoising flags of its own metrics.json (research/run_flags.py; a run
    # with denoising gets a new head, best.pt holds none): what the second
    # calls of results/gpu_h100_n10000_wide/ (BUDGET=4.3) and
    # results/gpu_h100_n10000_arch/ (BUDGET=3.3) ran, under the names they had
    # then; after 10000-deep it continues the 4-, 5- and 6-layer runs alike. A
    # run without a metrics.json (cut short) is named and left for --resume.
    # ONLY (run names, space-separated) continues those runs alone, each with
    # a larger share of the GPU (results/gpu_h100_n10000_denoise/ continued
    # only the control). WD sets their weight decay (default 0, whatever the
    # runs had).
    PREV=${PREV:?set PREV to the OUT_DIR of the runs to continue}
    if [ -n "${ONLY:-}" ]; then
        dirs=()
        for name in $ONLY; do
            if [ ! -d "$PREV/$name/acn_n10000" ]; then
                echo "ONLY names $name, but $PREV/$name/acn_n10000 does not exist" >&2
                exit 2
            fi
            dirs+=("$PREV/$name/acn_n10000")
        done
    else
        dirs=("$PREV"/*/acn_n10000)
    fi
    for dir in "${dirs[@]}"; do
        name=$(basename "$(dirname "$dir")")
        if ! flags=$("${PYTHON:-python}" research/run_flags.py --denoising "$dir"); then
            echo "not continued: $name" >&2
            continue
        fi
        # shellcheck disable=SC2086
        run "${name}_warm_lr3e-4" $B128 $flags --weight-decay "${WD:-0}" \
            --init-from "$dir/best.pt" --lr 3e-4 --warmup 0.02
    done
elif [ "$SIZE" = 10000-warm ]; then
    # The batch-128 run (results/gpu_h100_n10000_b128/; its best.pt, INIT=path)
    # trained on for another BUDGET minutes with a fresh optimizer and a new
    # cosine schedule (a warm restart), two peak learning rates at once (the
    # step is host-bound, GPU 30% busy alone, so runs share the GPU at little
    # cost).
    INIT=${INIT:?set INIT to the best.pt or last.pt to start from}
    run acn_eq_wd_n10000_b128_warm_lr1e-3 $BEST10K --batch-size 128 --workers 2 \
        --init-from "$INIT" --lr 1e-3 --warmup 0.02
    run acn_eq_wd_n10000_b128_warm_lr3e-4 $BEST10K --batch-size 128 --workers 2 \
        --init-from "$INIT" --lr 3e-4 --warmup 0.02
    # Beside them, from scratch: products 16 + radial gain 10 (the best
    # recipe at 1,000 molecules), not yet run at 10,000; its last.pt can be
    # carried to a later call and resumed.
    run acn_eq_wd_prod16_gain10_n10000_b128 $BEST10K --batch-size 128 --workers 2 \
        --product-channels 16 --radial-gain 10
elif [ "$SIZE" = 10000-b128 ]; then
    # results/gpu_h100_n10000_b128/: the best recipe alone on the GPU, eager,
    # batch 128, two collating workers. At 12 minutes it ended where batch 64
    # did (0.97 kcal/mol): the step is host-bound (GPU 30% busy), so what
    # helps is more steps, i.e. a longer BUDGET spanning calls.
    run acn_eq_wd_n10000_b128 $BEST10K --batch-size 128 --workers 2
elif [ "$SIZE" = 10000-fast ]; then
    # The same recipe with the most epochs per minute the loop offers (not yet
    # run on a GPU): one process, the compiled step, batches collated by two
    # workers, batch 128 (the step is bound by the host, so twice the
    # molecules per step cost little).
    run acn_eq_wd_n10000_b128_fast $BEST10K --batch-size 128 --compile --workers 2
elif [ "$SIZE" = 10000-pair ]; then
    # The 10000-solo recipe twice at once: eagerly and through torch.compile
    # (whose fused kernels may cut the launch-bound step time; if compiling
    # fails on the machine, the eager run goes on alone).
    run acn_eq_wd_n10000_b64 $BEST10K --batch-size 64
    run acn_eq_wd_n10000_b64_compile $BEST10K --batch-size 64 --compile
elif [ "$SIZE" = 10000-solo ]; then
    # The <0.8 kcal/mol attempt for a machine held about 15 minutes: the best
    # recipe alone on the GPU (parallel runs each got about half a lone run's
    # steps), batch 64, a BUDGET-minute cosine schedule (default 12), cut by
    # TIMEOUT and continued with --resume on the next call if need be.
    run acn_eq_wd_n10000_b64_solo $BEST10K --batch-size 64
elif [ "$SIZE" = 10000-long ]; then
    # The <0.8 kcal/mol attempt: only the best recipe at 1,000 molecules
    # (equivariant + weight decay; batch 16 beat 32 there on CPU), two batch
    # sizes, a 25-minute cosine schedule spread over several calls
    # (TIMEOUT=560, then --resume).
    run acn_eq_wd_n10000_b16 --sizes 10000 --budgets 25 --models acn --batch-size 16 \
        --hidden-irreps $EQ --weight-decay 0.05
    run acn_eq_wd_n10000_b32 --sizes 10000 --budgets 25 --models acn --batch-size 32 \
        --hidden-irreps $EQ --weight-decay 0.05
elif [ "$SIZE" = 10000 ]; then
    run acn_n10000 --sizes 10000 --budgets 17 --models acn --batch-size 64
    run acn_eq_n10000 --sizes 10000 --budgets 17 --models acn --batch-size 64 --hidden-irreps $EQ
    run schnet_n10000 --sizes 10000 --budgets 17 --models schnet --batch-size 64
else
    run acn_n1000 --sizes 1000 --budgets 8 --models acn
    run acn_wd_n1000 --sizes 1000 --budgets 8 --models acn --weight-decay 0.05
    run acn_mb_n1000 --sizes 1000 --budgets 8 --models acn --many-body
    run acn_eq_n1000 --sizes 1000 --budgets 8 --models acn --hidden-irreps $EQ
    run acn_eq_wd_n1000 --sizes 1000 --budgets 8 --models acn --hidden-irreps $EQ \
        --weight-decay 0.05
    run acn_eq_wd_mb_n1000 --sizes 1000 --budgets 8 --models acn --hidden-irreps $EQ \
        --weight-decay 0.05 --many-body
    run acn_eq_wide_wd_n1000 --sizes 1000 --budgets 8 --models acn \
        --hidden-irreps 64x0e+32x1o+32x2e --weight-decay 0.05
fi
wait
if ls "$OUT"/*/lc.json >/dev/null 2>&1; then
    "${PYTHON:-python}" research/learning_curve_table.py "$OUT"/*/lc.json --out "$OUT/table"
else
    echo "no run finished: see $OUT/*.log" >&2
    exit 1
fi
