"""AtomCloudNet, PyG's SchNet and DimeNet++ trained by the same loop on the same
QM9 split with the same wall-clock budget: test MAE for U0 and for the
HOMO-LUMO gap.

Target: at equal budget, a lower test MAE than both baselines on both targets.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

from acn_pyg.train import Config, run  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="U0,gap", help="QM9 targets (default: U0,gap)")
    p.add_argument("--models", default="acn,schnet,dimenet++",
                   help="models (default: acn,schnet,dimenet++)")
    p.add_argument("--train-size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--val-size", type=int, default=500, help="(default: 500)")
    p.add_argument("--test-size", type=int, default=2000, help="(default: 2000)")
    p.add_argument("--time-budget", type=float, default=20.0,
                   help="training minutes per model and target (default: 20)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per run; 0 keeps torch's default (default: 0)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--runs", default="runs/accuracy", help="checkpoints (default: runs/accuracy)")
    p.add_argument("--out", default=os.path.join(RESULTS, "accuracy"),
                   help="output stem (default: benchmarks/results/accuracy)")
    args = p.parse_args(argv)
    targets, models = args.targets.split(","), args.models.split(",")

    results = {}
    for target in targets:
        for model in models:
            cfg = Config(target=target, model=model, train_size=args.train_size,
                         val_size=args.val_size, test_size=args.test_size,
                         time_budget=args.time_budget, epochs=100000, device=args.device,
                         threads=args.threads, root=args.root,
                         out=os.path.join(args.runs, f"{target}_{model}"),
                         plot=False)
            results[(target, model)] = run(cfg)
            m = results[(target, model)]
            print(f"{target} {model}: test MAE {m['test_mae']:.4f} {m['unit']} "
                  f"({m['epochs']} epochs, {m['wall_time_s'] / 60:.1f} min)", flush=True)

    lines = [f"QM9, {args.train_size} training molecules, {args.test_size} test molecules, "
             f"{args.time_budget:g} min of training each on "
             f"{results[(targets[0], models[0])]['device']}", "",
             "| target | " + " | ".join(models) + " | AtomCloudNet best |",
             "| --- " * (len(models) + 2) + "|"]
    checks = []
    for target in targets:
        maes = {m: results[(target, m)]["test_mae"] for m in models}
        unit = results[(target, models[0])]["unit"]
        best = "acn" in maes and all(maes["acn"] < v for k, v in maes.items() if k != "acn")
        checks.append({"target": target, "met": best, "test_mae": maes, "unit": unit,
                       "epochs": {m: results[(target, m)]["epochs"] for m in models}})
        lines.append(f"| {target} ({unit}) | " + " | ".join(f"{maes[m]:.4f}" for m in models)
                     + f" | {'yes' if best else 'no'} |")
    met = all(c["met"] for c in checks)
    lines += ["", f"target: AtomCloudNet lowest test MAE on {', '.join(targets)} at equal budget "
              f"-> {'MET' if met else 'MISSED'}"]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "results": checks,
                   "target_met": met}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
