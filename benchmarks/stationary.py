"""Does the stationary-point penalty (``--stationary-weight``) help? Paired
runs, seed by seed, with and without it, at equal epochs (the learning-rate
schedule follows the epochs, not the clock), then how stationary each model's
energy is at held-out geometries::

    python benchmarks/stationary.py --train-size 100 --epochs 270 --seeds 0,1,2,3 \\
        --weights 0,1 --runs runs/stationary_n100 --out benchmarks/results/stationary_n100

QM9's geometries are minima of the electronic energy, so its gradient with
respect to the positions is zero there; the penalty asks the same of the
model. A run folder that already holds a finished run of the same config is
read, not trained again. The table gives each run's test MAE, its best
validation and training errors, its epochs and training minutes, and the RMS
gradient of its energies on the first ``--grad-molecules`` test molecules
(kcal/mol per Angstrom; zero for a model stationary where QM9 is).
"""
import argparse
import dataclasses
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import (add_arguments, add_changes, base_config, finished_run,  # noqa: E402
                    in_order, previous_rows, recorded, run_line, run_row, write_comparison)

from acn_pyg.training import load_best_model, prepare, stationary_penalty  # noqa: E402
from acn_pyg.units import EV_TO_KCALMOL  # noqa: E402


def rms_gradient(model, dataset, device, batch_size: int = 64) -> float:
    """RMS over atoms and axes of the gradient of each molecule's predicted
    energy with respect to its positions, in the model's unit per Angstrom."""
    from torch_geometric.loader import DataLoader
    total, count = 0.0, 0
    for data in DataLoader(dataset, batch_size=batch_size):
        data = data.to(device)
        pos = data.pos.clone().requires_grad_()
        energy = model(data.z, pos, data.batch).view(-1)
        total += float(stationary_penalty(energy, pos).detach()) * pos.numel()
        count += pos.numel()
    return math.sqrt(total / count)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, runs="runs/stationary")
    p.add_argument("--weights", default="0,1", help="stationary weights; 0 is the control")
    p.add_argument("--grad-molecules", type=int, default=1000,
                   help="test molecules on which the energies' gradients are measured")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    weights = [float(w) for w in args.weights.split(",")]
    if 0.0 not in weights:
        raise SystemExit("--weights must include 0, the control each seed is compared with")

    base = base_config(args)
    # Every run has the same data, split and scale: only the init seed and the
    # weight differ, and prepare() depends on neither.
    prep = prepare(base)
    results = previous_rows(args, "weight")  # checked before anything trains
    records = list(results)
    for seed in seeds:
        for weight in weights:
            if recorded(records, "weight", seed, weight):
                continue
            out = os.path.join(args.runs, f"seed{seed}_w{weight:g}")
            cfg = dataclasses.replace(base, init_seed=seed, stationary_weight=weight, out=out)
            metrics = finished_run(cfg, args.epochs)
            model = load_best_model(out, cfg, prep, "cpu")
            grad = rms_gradient(model, prep.dataset[prep.split["test"][:args.grad_molecules]],
                                "cpu")
            row = run_row(seed, cfg, metrics, weight=weight)
            row["rms_gradient_kcal_mol_A"] = grad * EV_TO_KCALMOL
            results.append(row)

    lines = [f"Stationary-point penalty, QM9 {args.target}, {args.train_size} training "
             f"molecules, {args.epochs} epochs, batch {args.batch_size}; test MAE on "
             f"{args.test_size} held-out molecules (kcal/mol), gradient RMS on the first "
             f"{args.grad_molecules} of them (kcal/mol/A).", "",
             "| seed | weight | test | change | validation | training | gradient RMS | "
             "minutes |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    values = list(dict.fromkeys(weights + [r["weight"] for r in results]))
    results = in_order(results, "weight", values)
    add_changes(results, "weight", 0.0)
    lines += [run_line(r, f"{r['weight']:g}", f"{r['rms_gradient_kcal_mol_A']:.2f}")
              for r in results]
    write_comparison(args, lines, results, "weight", values)
    return 0


if __name__ == "__main__":
    sys.exit(main())
