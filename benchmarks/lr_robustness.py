"""How AtomCloudNet and PyG's SchNet train in a plain loop, not this package's
training program, over the learning rates people use: Adam at each learning
rate, batch 32, L1 loss on the target standardised over a per-element linear
baseline (the models' mean, std and atomref), ReduceLROnPlateau on the
validation MAE, no weight average (``--ema`` adds PyTorch's), no warm-up,
the same minutes each, on the same split. Test MAE of the best validation
epoch.

Target: AtomCloudNet's test MAE below SchNet's at every learning rate, and its
worst-to-best spread over the learning rates no wider than SchNet's.
"""
import argparse
import itertools
import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import plain_loop, save_results  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def plain_run(job: dict) -> dict:
    """One model at one learning rate and seed, trained for job['minutes']."""
    import torch

    from acn_pyg.train import Config, build_model, prepare

    torch.set_num_threads(job["threads"])
    cfg = Config(target=job["target"], model=job["model"], train_size=job["train_size"],
                 val_size=job["val_size"], test_size=job["test_size"], root=job["root"],
                 weight_norm=True)  # AtomCloudNet's default, as a user builds it
    prep = prepare(cfg)
    torch.manual_seed(job["seed"])
    model = build_model(cfg, prep.extensive, prep.mean, prep.std, prep.atomref)
    test, best, epochs = plain_loop(model, prep, job["lr"], job["batch_size"], job["minutes"],
                                    job["seed"], job["ema"])
    print(f"{job['target']} {job['model']} lr {job['lr']:g} seed {job['seed']}: test MAE "
          f"{test:.4g} {prep.unit} ({epochs} epochs)", flush=True)
    return {**job, "unit": prep.unit, "test_mae": test, "best_val_mae": best, "epochs": epochs}


def _targets(runs: list) -> list:
    return sorted({r["target"] for r in runs}, key=lambda t: t != "U0")


def _maes(runs: list, target: str, model: str, lr: float) -> list:
    """The test MAEs of one model at one learning rate, one per seed."""
    return [r["test_mae"] for r in runs
            if (r["target"], r["model"], r["lr"]) == (target, model, lr)]


def table(runs: list, models: list, lrs: list) -> list:
    lines = []
    for target in _targets(runs):
        unit = next(r["unit"] for r in runs if r["target"] == target)
        scale, shown = (1e3, "meV") if unit == "eV" else (1.0, unit)
        lines += [f"**{target}**, test MAE in {shown} (mean over seeds; each seed in brackets)",
                  "",
                  "| model | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | worst / best |",
                  "| --- " * (len(lrs) + 2) + "|"]
        for model in models:
            means = []
            cells = []
            for lr in lrs:
                maes = [scale * m for m in _maes(runs, target, model, lr)]
                means.append(sum(maes) / len(maes))
                cells.append(f"{means[-1]:.1f} ({', '.join(f'{m:.1f}' for m in maes)})")
            lines.append(f"| {model} | " + " | ".join(cells) +
                         f" | {max(means) / min(means):.2f} |")
        lines.append("")
    return lines


def plot(runs: list, models: list, lrs: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    targets = _targets(runs)
    fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 3.8), squeeze=False)
    for ax, target in zip(axes[0], targets):
        for model in models:
            maes = [_maes(runs, target, model, lr) for lr in lrs]
            ax.plot(lrs, [sum(m) / len(m) for m in maes], "o-", label=model)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("Adam learning rate")
        ax.set_ylabel(f"test MAE ({next(r['unit'] for r in runs if r['target'] == target)})")
        ax.set_title(f"QM9 {target}, plain loop")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="acn,schnet", help="(default: acn,schnet)")
    p.add_argument("--targets", default="U0,gap", help="QM9 targets (default: U0,gap)")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="(default: 3e-4,1e-3,3e-3)")
    p.add_argument("--seeds", default="0,1", help="initialisation and shuffling (default: 0,1)")
    p.add_argument("--minutes", type=float, default=4.0,
                   help="training minutes per run (default: 4)")
    p.add_argument("--train-size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--val-size", type=int, default=500, help="(default: 500)")
    p.add_argument("--test-size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="weight-average decay per step (AveragedModel with "
                        "get_ema_multi_avg_fn); 0: none (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run (default: 1)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default: 2)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--out", default=os.path.join(RESULTS, "lr_robustness"),
                   help="output stem: .json, .md and .png (default: "
                        "benchmarks/results/lr_robustness)")
    args = p.parse_args(argv)
    models, lrs = args.models.split(","), [float(x) for x in args.lrs.split(",")]
    jobs = [dict(target=t, model=m, lr=lr, seed=int(s), minutes=args.minutes,
                 train_size=args.train_size, val_size=args.val_size, test_size=args.test_size,
                 batch_size=args.batch_size, ema=args.ema, threads=args.threads,
                 root=args.root)
            for t, m, lr, s in itertools.product(args.targets.split(","), models, lrs,
                                                 args.seeds.split(","))]
    from acn_pyg.datasets import QM9
    QM9(args.root)  # built once, before the workers read it
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        runs = pool.map(plain_run, jobs)
    lines = [f"QM9, {args.train_size} training molecules, {args.test_size} test molecules, "
             f"batch {args.batch_size}, "
             + (f"weight average (decay {args.ema:g}), " if args.ema else "no weight average, ")
             + f"{args.minutes:g} min per run on {args.threads} CPU thread(s), "
             f"{args.jobs} runs at once", ""] + table(runs, models, lrs)
    save_results(args.out, args, runs, lines, key="runs")
    plot(runs, models, lrs, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
