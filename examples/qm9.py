"""Train AtomCloudNet (or PyG's SchNet / DimeNet++ by the same loop) on one QM9
target and report the test MAE.

    python examples/qm9.py                       # U0, 1,000 molecules, 3 minutes on CPU
    python examples/qm9.py --target gap --model schnet --time-budget 20
    python examples/qm9.py --learning-curve 100,1000 --target U_atom --test-size 10000

Writes metrics.json, parity.png and checkpoints (last.pt, best.pt) to --out.
"""
import argparse
import dataclasses
import json
import os
import sys

from acn_pyg.datasets.qm9 import TARGETS
from acn_pyg.training import MODELS, Config, run, summary


def parse_args(argv=None) -> argparse.Namespace:
    d = Config()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=d.target,
                   help=f"QM9 target by name or index 0-18: {', '.join(TARGETS)} "
                        f"(default: {d.target}, internal energy at 0 K in eV)")
    p.add_argument("--model", default=d.model, choices=MODELS,
                   help="acn (AtomCloudNet), or a PyG baseline with its published QM9 settings "
                        f"(default: {d.model})")
    p.add_argument("--train-size", type=int, default=d.train_size,
                   help=f"training molecules (default: {d.train_size})")
    p.add_argument("--val-size", type=int, default=d.val_size,
                   help=f"validation molecules, for checkpoint selection (default: {d.val_size})")
    p.add_argument("--test-size", type=int, default=d.test_size,
                   help=f"held-out test molecules (default: {d.test_size})")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help=f"maximum number of epochs (default: {d.epochs})")
    p.add_argument("--time-budget", type=float, default=d.time_budget,
                   help="training wall-clock budget in minutes; the learning rate decays "
                        f"over it (default: {d.time_budget})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"molecules per batch (default: {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr,
                   help="peak learning rate of Adam, cosine-decayed (default: 3e-3 for acn, "
                        "1e-3 for the baselines)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay (AdamW) when > 0 (default: 0, plain Adam)")
    p.add_argument("--warmup", type=float, default=d.warmup,
                   help="linear learning-rate warm-up over this fraction of the schedule "
                        f"(default: {d.warmup}: none)")
    p.add_argument("--ema", type=float, default=d.ema,
                   help="decay per step of the weight average used for validation and test; "
                        f"0 disables it (default: {d.ema})")
    p.add_argument("--device", default=d.device, choices=("auto", "cpu", "cuda"),
                   help="where to train; auto takes CUDA when available (default: auto)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the split and the initialisation (default: {d.seed})")
    p.add_argument("--init-seed", type=int, default=d.init_seed,
                   help="seed of the initialisation and shuffling only, to vary them on the "
                        "same split (default: --seed)")
    p.add_argument("--hidden-channels", type=int, default=d.hidden_channels,
                   help=f"AtomCloudNet scalar channels (default: {d.hidden_channels})")
    p.add_argument("--hidden-irreps", default=d.hidden_irreps,
                   help="AtomCloudNet irreps between layers, e.g. '64x0e+16x1o+16x2e' "
                        "(default: scalars only)")
    p.add_argument("--num-layers", type=int, default=d.num_layers,
                   help=f"AtomCloudConv layers (default: {d.num_layers})")
    p.add_argument("--cutoff", type=float, default=d.cutoff,
                   help=f"AtomCloudNet cutoff in Angstrom (default: {d.cutoff})")
    p.add_argument("--lmax", type=int, default=d.lmax,
                   help=f"largest spherical-harmonic degree (default: {d.lmax})")
    p.add_argument("--product-channels", type=int, default=d.product_channels,
                   help="channels per irrep of each layer's product of its cloud with itself "
                        "(body order three, as in MACE; default: 0, off)")
    p.add_argument("--radial-gain", type=float, default=d.radial_gain,
                   help="initialisation factor of the radial MLPs' output layers (default: 1)")
    p.add_argument("--many-body", action="store_true",
                   help="concatenate the Coulomb/London/ATM many-body atom features")
    p.add_argument("--root", default=d.root, help=f"dataset folder (default: {d.root})")
    p.add_argument("--data-source", default=d.data_source,
                   help="folder of qm9pack-format CSVs (default: the installed qm9pack)")
    p.add_argument("--subset", default=d.subset,
                   help="a QM9 subset file (acn_pyg.datasets.save_qm9_subset, "
                        "benchmarks/qm9_subset.py) to use instead of ROOT, where qm9pack "
                        "is missing; the split must lie in it (default: none)")
    p.add_argument("--out", default=d.out, help=f"output folder (default: {d.out})")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt (same flags as the interrupted run)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="CPU threads for torch; 0 keeps torch's default (default: 0)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="data-loader worker processes that collate batches while the model "
                        "steps, for a GPU, whose steps wait on the host (default: 0: collate in "
                        "this process)")
    p.add_argument("--no-reuse-memory", dest="reuse_memory", action="store_false",
                   help="on CPU, keep glibc's default of giving large freed blocks back to "
                        "the system (by default they are kept for reuse: faster steps, see "
                        "acn_pyg.utils.reuse_freed_memory)")
    p.add_argument("--compile", action="store_true",
                   help="run the training step through torch.compile (dynamic shapes; the "
                        "first steps compile for a minute or so)")
    p.add_argument("--no-plot", action="store_true", help="skip the parity plot")
    p.add_argument("--learning-curve", default=None,
                   help="comma-separated training sizes, e.g. 100,1000,10000: one run per size "
                        "on the same test set, each with --time-budget, into OUT/n<size>")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
    # Every Config field has a flag of the same name, except plot (--no-plot).
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
              if f.name != "plot"}
    return Config(**values, plot=not args.no_plot)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args)
    if args.learning_curve is None:
        metrics = run(cfg)
        print("\n".join(summary(metrics)))
        print(f"metrics: {os.path.join(cfg.out, 'metrics.json')}")
        return 0
    sizes = [int(s) for s in args.learning_curve.split(",")]
    rows = []
    for size in sizes:
        sub = dataclasses.replace(cfg, train_size=size, out=os.path.join(cfg.out, f"n{size}"))
        metrics = run(sub)
        print("\n".join(summary(metrics)))
        rows.append({"train_size": size, **{k: metrics[k] for k in (
            "test_mae", "baseline_test_mae", "epochs", "wall_time_s", "device")},
            "test_mae_kcal_mol": metrics.get("test_mae_kcal_mol")})
    with open(os.path.join(cfg.out, "learning_curve.json"), "w") as f:
        json.dump({"target": cfg.target, "model": cfg.model, "rows": rows}, f, indent=2)
    for row in rows:
        print(f"N={row['train_size']:>6}: test MAE {row['test_mae']:.5g} "
              f"({row['epochs']} epochs, {row['wall_time_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
