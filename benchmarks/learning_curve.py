"""The original AtomCloudNet learning curve on QM9 U_atom (internal energy at
298 K, atomization), reproduced for AtomCloudNet and PyG's SchNet trained by
the same loop, on the same held-out test molecules, beside the published table.

Targets: below 25 kcal/mol at 100, below 3 at 1,000 and below 0.8 at 10,000
training molecules.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

from acn_pyg.training import Config, run  # noqa: E402

#: The published learning curve (kcal/mol): CM and SLATM kernel ridge
#: regression, and the original AtomCloudNet (3 A cutoff).
PUBLISHED = {100: (385.7, 54.2, 114.65), 1000: (50.9, 14.54, 47.81),
             10000: (5.82, 1.28, 1.31)}
TARGETS = {100: 25.0, 1000: 3.0, 10000: 0.8}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000,10000",
                   help="training sizes (default: 100,1000,10000)")
    p.add_argument("--budgets", default="3,15,30",
                   help="training minutes per size, one per size (default: 3,15,30)")
    p.add_argument("--models", default="acn,schnet", help="models (default: acn,schnet)")
    p.add_argument("--test-size", type=int, default=10000,
                   help="held-out test molecules, the same for every run (default: 10000)")
    p.add_argument("--val-size", type=int, default=1000,
                   help="validation molecules (default: 1000)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--many-body", action="store_true",
                   help="AtomCloudNet with the many-body features")
    p.add_argument("--hidden-irreps", default=None,
                   help="AtomCloudNet irreps between layers, e.g. 64x0e+16x1o+16x2e "
                        "(default: 64 scalars)")
    p.add_argument("--cutoff", type=float, default=Config.cutoff,
                   help=f"AtomCloudNet cutoff in Angstrom (default: {Config.cutoff})")
    p.add_argument("--product-channels", type=int, default=Config.product_channels,
                   help="AtomCloudNet: channels per irrep of each layer's product of its cloud "
                        "with itself (default: 0, off)")
    p.add_argument("--radial-gain", type=float, default=Config.radial_gain,
                   help="AtomCloudNet: initialisation factor of the radial MLPs' output layers "
                        "(default: 1)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: the training loop's per model)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW weight decay when > 0 (default: 0)")
    p.add_argument("--ema", type=float, default=0.99,
                   help="decay per step of the weights' exponential moving average, which "
                        "validation, test and checkpoints use; 0 turns it off (default: 0.99)")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="linear learning-rate warm-up over this fraction of the schedule "
                        "(default: 0: none)")
    p.add_argument("--init-seed", type=int, default=None,
                   help="seed of initialisation and shuffling; the split (and test set) "
                        "stays that of seed 0 (default: 0)")
    p.add_argument("--compile", action="store_true",
                   help="run AtomCloudNet's training step through torch.compile (dynamic "
                        "shapes; compiling takes the first minute or two of the budget)")
    p.add_argument("--resume", action="store_true",
                   help="continue runs from RUNS/<model>_n<size>/last.pt (same flags)")
    p.add_argument("--subset", default=None,
                   help="QM9 subset file (benchmarks/qm9_subset.py) instead of ROOT")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per run; 0 keeps torch's default (default: 0)")
    p.add_argument("--workers", type=int, default=0,
                   help="data-loader worker processes per run (default: 0)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--runs", default="runs/learning_curve",
                   help="folder for checkpoints (default: runs/learning_curve)")
    p.add_argument("--out", default=os.path.join(RESULTS, "learning_curve"),
                   help="output stem (default: benchmarks/results/learning_curve)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    budgets = [float(b) for b in args.budgets.split(",")]
    if len(budgets) != len(sizes):
        raise SystemExit("--budgets needs one value per size")

    results = {}
    for size, budget in zip(sizes, budgets):
        for model in args.models.split(","):
            # AtomCloudNet's own options; the baselines keep Config's defaults.
            acn_options = dict(compile=args.compile, hidden_irreps=args.hidden_irreps,
                               product_channels=args.product_channels, cutoff=args.cutoff,
                               radial_gain=args.radial_gain,
                               many_body=args.many_body) if model == "acn" else {}
            cfg = Config(target="U_atom", model=model, train_size=size, val_size=args.val_size,
                         test_size=args.test_size, time_budget=budget, epochs=100000,
                         batch_size=args.batch_size, device=args.device, threads=args.threads,
                         root=args.root, subset=args.subset, resume=args.resume,
                         workers=args.workers,
                         lr=args.lr, weight_decay=args.weight_decay, init_seed=args.init_seed,
                         ema=args.ema, warmup=args.warmup, **acn_options,
                         out=os.path.join(args.runs, f"{model}_n{size}"), plot=False)
            m = run(cfg)
            results[(model, size)] = m
            print(f"{model} N={size}: {m['test_mae_kcal_mol']:.3f} kcal/mol "
                  f"({m['epochs']} epochs, {m['wall_time_s'] / 60:.1f} min, {m['device']})")

    models = args.models.split(",")
    lines = ["| N train | CM kernel | SLATM kernel | original ACN (3 A) | "
             + " | ".join(f"{m} (this work)" for m in models) + " | target | met |",
             "| --- " * (6 + len(models)) + "|"]
    rows = []
    for size in sizes:
        pub = PUBLISHED.get(size, (float("nan"),) * 3)
        maes = [results[(m, size)]["test_mae_kcal_mol"] for m in models]
        acn = results.get(("acn", size))
        met = acn is not None and size in TARGETS and acn["test_mae_kcal_mol"] < TARGETS[size]
        lines.append(f"| {size:,} | {pub[0]} | {pub[1]} | {pub[2]} | "
                     + " | ".join(f"{v:.2f}" for v in maes)
                     + f" | < {TARGETS.get(size, float('nan'))} | {'yes' if met else 'no'} |")
        rows.append({"train_size": size, "published": dict(zip(("cm", "slatm", "acn_3A"), pub)),
                     "target": TARGETS.get(size), "target_met": met,
                     "runs": {m: {k: results[(m, size)][k] for k in (
                         "test_mae_kcal_mol", "test_mae", "baseline_test_mae_kcal_mol", "epochs",
                         "wall_time_s", "device", "parameters")} for m in models}})
    table = "\n".join(lines)
    compute = ", ".join(f"{m} N={s}: {results[(m, s)]['epochs']} epochs in "
                        f"{results[(m, s)]['wall_time_s'] / 60:.1f} min on "
                        f"{results[(m, s)]['device']}" for s in sizes for m in models)
    text = (f"QM9 U_atom test MAE (kcal/mol) on {args.test_size:,} held-out molecules\n\n"
            f"{table}\n\nCompute: {compute}\n")
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "rows": rows, "args": vars(args)}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
