"""Keeps a finished run's best checkpoint, so that a run on another machine
(where ``runs/`` is gone) can warm-start from it (``--init-from``), test it,
or put it in an ensemble::

    python research/keep_checkpoint.py runs/cpu_n10000_wd0/acn_n10000 \\
        ~/checkpoints/cpu_n10000_wd0

copies the run's ``metrics.json`` and ``best.pt`` (the evaluated weights) to
the folder given, after checking on the run's own data that the checkpoint
reproduces the test MAE the run reported (``fit_diagnostic.diagnose`` on the
test split), and prints the checkpoint's line for a table of kept ones (name,
training size, epochs, training, validation and test errors). ``last.pt``
(optimizer state, for ``--resume``) is not kept: a warm start takes a fresh
optimizer.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fit_diagnostic import diagnose, display_unit  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a finished run folder (metrics.json + best.pt)")
    p.add_argument("dest", help="folder to copy it to (its name names it in the table line)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    args = p.parse_args(argv)
    best = os.path.join(args.run, "best.pt")
    if not os.path.isfile(best):
        raise SystemExit(f"{best} not found: not a finished run")
    if os.path.exists(args.dest) and not args.force:
        raise SystemExit(f"{args.dest} exists (--force replaces it)")
    # Only the test split is recomputed (the check); the training and validation
    # errors of the kept weights are the run's own (train_mae, best_val_mae).
    result = diagnose(args.run, args.device, splits=("test",))
    if not result["test_matches_run"]:
        raise SystemExit(f"{best} gives test MAE {result['test_mae_recomputed']:.6g}, not the "
                         f"run's {result['test_mae']:.6g}: not kept")
    os.makedirs(args.dest, exist_ok=True)
    for name in ("metrics.json", "best.pt"):
        shutil.copyfile(os.path.join(args.run, name), os.path.join(args.dest, name))
    scale, unit = display_unit(result["unit"])
    maes = [result[k] for k in ("train_mae", "best_val_mae", "test_mae")]
    name = os.path.basename(os.path.normpath(args.dest))
    print(f"| `{name}` | {result['train_size']} | {result['epochs']} | "
          + " | ".join("-" if v is None else f"{v * scale:.3f}" for v in maes) + f" | {unit} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
