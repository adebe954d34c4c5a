"""Train AtomCloudNet (or PyG's SchNet / DimeNet++ by the same loop) on one QM9
target and report the test MAE.

    python examples/qm9.py                       # U0, 1,000 molecules, 3 minutes on CPU
    python examples/qm9.py --target gap --model schnet --time-budget 20
    python examples/qm9.py --learning-curve 100,1000 --target U_atom --test-size 10000

Writes metrics.json, parity.png (predicted against reference, less the
per-element linear baseline, and the error histogram), learning_curve.png
(training and validation error per epoch) and checkpoints (last.pt, best.pt)
to --out.
"""
import argparse
import dataclasses
import json
import os
import sys

from acn_pyg.train import add_config_arguments, config_from_args, run, summary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)  # one flag per Config field: --target, --model, --lr, ...
    p.add_argument("--no-plot", action="store_true",
                   help="skip the plots (parity.png, learning_curve.png)")
    p.add_argument("--learning-curve", default=None,
                   help="comma-separated training sizes, e.g. 100,1000,10000: one run per size "
                        "on the same test set, each with --time-budget, into OUT/n<size>")
    return p.parse_args(argv)


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
