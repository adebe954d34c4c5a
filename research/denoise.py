"""Does denoising as an auxiliary task (``--denoise-weight``, ``--denoise-sigma``)
help? Paired runs, seed by seed, with and without it, at equal epochs::

    python research/denoise.py --train-size 100 --epochs 270 --seeds 0,1,2,3 \\
        --weights 0,1 --sigmas 0.05 --runs runs/denoise_n100 --out research/results/denoise_n100

With the option each step also runs the model on positions displaced by
Gaussian noise of standard deviation sigma (Angstrom), and a vector head on
its atom features predicts the displacement: the atom features must say
where each atom's equilibrium position is. The energy itself is trained on
the true positions, so the runs of one seed see the same batches. Each
control run is named ``seed<S>_w0``. The table gives each run's test MAE, its
change against its seed's control, its best validation and training errors,
its last epoch's denoising loss (1 is no better than predicting zero), its
epochs and training minutes.
"""
import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import (add_arguments, add_changes, base_config, finished_run,  # noqa: E402
                    in_order, previous_rows, recorded, run_line, run_row, write_comparison)

CONTROL = "none"


def label(weight: float, sigma) -> str:
    """A variant's name in the tables: :data:`CONTROL` without denoising."""
    return CONTROL if sigma is None else f"weight {weight:g}, sigma {sigma:g} A"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, runs="runs/denoise")
    p.add_argument("--weights", default="0,1", help="denoising weights; 0 is the control")
    p.add_argument("--sigmas", default="0.05",
                   help="noise standard deviations in Angstrom, each tried with every weight "
                        "above 0 (default: 0.05)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    weights = [float(w) for w in args.weights.split(",")]
    sigmas = [float(s) for s in args.sigmas.split(",")]
    if 0.0 not in weights:
        raise SystemExit("--weights must include 0, the control each seed is compared with")
    variants = [(0.0, None)] + [(w, s) for w in weights if w > 0 for s in sigmas]

    base = base_config(args)
    results = previous_rows(args, "variant")  # checked before anything trains
    records = list(results)
    for seed in seeds:
        for weight, sigma in variants:
            if sigma is None:
                out = os.path.join(args.runs, f"seed{seed}_w0")
                cfg = dataclasses.replace(base, init_seed=seed, out=out)
            else:
                out = os.path.join(args.runs, f"seed{seed}_dn{weight:g}_s{sigma:g}")
                cfg = dataclasses.replace(base, init_seed=seed, denoise_weight=weight,
                                          denoise_sigma=sigma, out=out)
            name = label(weight, sigma)
            if recorded(records, "variant", seed, name):
                continue
            metrics = finished_run(cfg, args.epochs)
            row = run_row(seed, cfg, metrics, variant=name)
            row["denoise_loss"] = (metrics["history"][-1].get("train_denoise_loss")
                                   if sigma is not None else None)
            results.append(row)

    labels = list(dict.fromkeys([label(w, s) for w, s in variants]
                                + [r["variant"] for r in results]))
    results = in_order(results, "variant", labels)
    add_changes(results, "variant", CONTROL)
    lines = [f"Denoising as an auxiliary task, QM9 {args.target}, {args.train_size} training "
             f"molecules, {args.epochs} epochs, batch {args.batch_size}; test MAE on "
             f"{args.test_size} held-out molecules (kcal/mol).", "",
             "| seed | variant | test | change | validation | training | denoising loss | "
             "minutes |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [run_line(r, r["variant"], "" if r["denoise_loss"] is None
                       else f"{r['denoise_loss']:.3f}") for r in results]
    write_comparison(args, lines, results, "variant", labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
