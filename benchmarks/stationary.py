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
from common import write_results  # noqa: E402

from acn_pyg.training import (Config, load_best_model, load_run, prepare,  # noqa: E402
                              run, run_config, stationary_penalty)
from acn_pyg.units import EV_TO_KCALMOL  # noqa: E402

#: Fields that only say where or how fast a run ran: a finished run is
#: reused whatever they were.
PLACE_FIELDS = ("root", "subset", "data_source", "out", "threads", "device", "plot")


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


def same_run(cfg: Config, metrics: dict) -> bool:
    """Whether a finished run's config (fields recorded before they existed
    at their defaults, as :func:`~acn_pyg.training.run_config` reads them)
    is :obj:`cfg`, wherever each ran."""
    recorded, wanted = (dataclasses.asdict(c) for c in (run_config(metrics), cfg))
    return all(recorded[k] == v for k, v in wanted.items() if k not in PLACE_FIELDS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="U_atom")
    p.add_argument("--train-size", type=int, default=100)
    p.add_argument("--val-size", type=int, default=500)
    p.add_argument("--test-size", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=270)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--time-budget", type=float, default=100.0,
                   help="minutes; well above the epochs' time, so that the learning-rate "
                        "schedule follows the epochs (default: 100)")
    p.add_argument("--seeds", default="0,1,2,3", help="init seeds (same split)")
    p.add_argument("--weights", default="0,1", help="stationary weights; 0 is the control")
    p.add_argument("--grad-molecules", type=int, default=1000,
                   help="test molecules on which the energies' gradients are measured")
    p.add_argument("--root", default="data/QM9")
    p.add_argument("--subset", default=None)
    p.add_argument("--data-source", default=None, help="qm9pack-format CSVs (tests)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs/stationary", help="folder of the run folders")
    p.add_argument("--out", default=None, help="output stem for .json and .md")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    weights = [float(w) for w in args.weights.split(",")]
    if 0.0 not in weights:
        raise SystemExit("--weights must include 0, the control each seed is compared with")

    base = Config(target=args.target, train_size=args.train_size, val_size=args.val_size,
                  test_size=args.test_size, epochs=args.epochs, time_budget=args.time_budget,
                  batch_size=args.batch_size, root=args.root, subset=args.subset,
                  data_source=args.data_source, threads=args.threads, device="cpu",
                  plot=False)
    # Every run has the same data, split and scale: only the init seed and the
    # weight differ, and prepare() depends on neither.
    prep = prepare(base)
    results = []
    for seed in seeds:
        for weight in weights:
            out = os.path.join(args.runs, f"seed{seed}_w{weight:g}")
            cfg = dataclasses.replace(base, init_seed=seed, stationary_weight=weight, out=out)
            try:
                metrics = load_run(out)
            except FileNotFoundError:
                metrics = None
            if metrics is not None and not same_run(cfg, metrics):
                raise SystemExit(f"{out} holds another run (its config differs): move it away")
            if metrics is None:
                metrics = run(cfg)
            if metrics["epochs"] < args.epochs:
                raise SystemExit(f"{out} ran {metrics['epochs']} of {args.epochs} epochs: the "
                                 "time budget bound, so its schedule did not follow the epochs")
            model = load_best_model(out, cfg, prep, "cpu")
            grad = rms_gradient(model, prep.dataset[prep.split["test"][:args.grad_molecules]],
                                "cpu")
            results.append({
                "seed": seed, "weight": weight, "run": out,
                "test_mae_kcal_mol": metrics["test_mae"] * EV_TO_KCALMOL,
                "best_val_mae_kcal_mol": metrics["best_val_mae"] * EV_TO_KCALMOL,
                "train_mae_kcal_mol": metrics["train_mae"] * EV_TO_KCALMOL,
                "epochs": metrics["epochs"], "minutes": metrics["wall_time_s"] / 60,
                "rms_gradient_kcal_mol_A": grad * EV_TO_KCALMOL,
            })

    lines = [f"Stationary-point penalty, QM9 {args.target}, {args.train_size} training "
             f"molecules, {args.epochs} epochs, batch {args.batch_size}; test MAE on "
             f"{args.test_size} held-out molecules (kcal/mol), gradient RMS on the first "
             f"{args.grad_molecules} of them (kcal/mol/A).", "",
             "| seed | weight | test | change | validation | training | gradient RMS | "
             "minutes |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    control = {r["seed"]: r for r in results if r["weight"] == 0.0}
    for r in results:
        change = r["test_mae_kcal_mol"] - control[r["seed"]]["test_mae_kcal_mol"]
        r["change_kcal_mol"] = change
        lines.append(f"| {r['seed']} | {r['weight']:g} | {r['test_mae_kcal_mol']:.3f} | "
                     f"{change:+.3f} | {r['best_val_mae_kcal_mol']:.3f} | "
                     f"{r['train_mae_kcal_mol']:.3f} | {r['rms_gradient_kcal_mol_A']:.2f} | "
                     f"{r['minutes']:.1f} |")
    lines += ["", "| weight | seeds | mean test | mean change | worse on |",
              "| --- | --- | --- | --- | --- |"]
    summary = []
    for weight in weights:
        rows = [r for r in results if r["weight"] == weight]
        mean = sum(r["test_mae_kcal_mol"] for r in rows) / len(rows)
        change = sum(r["change_kcal_mol"] for r in rows) / len(rows)
        worse = sum(r["change_kcal_mol"] > 0 for r in rows)
        summary.append({"weight": weight, "seeds": len(rows), "mean_test_mae_kcal_mol": mean,
                        "mean_change_kcal_mol": change, "worse_on": worse})
        lines.append(f"| {weight:g} | {len(rows)} | {mean:.3f} | {change:+.3f} | "
                     f"{worse} of {len(rows)} |")
    write_results(args.out, "\n".join(lines) + "\n",
                  {"args": vars(args), "runs": results, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
