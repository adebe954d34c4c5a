"""Keeps a finished run's best checkpoint in the repository, so that a later
session (on a fresh machine, where ``runs/`` is gone) can warm-start from it
(``--init-from``), test it, or put it in an ensemble::

    python benchmarks/keep_checkpoint.py runs/cpu_n10000_wd0/acn_n10000 cpu_n10000_wd0

copies the run's ``metrics.json`` and ``best.pt`` (the evaluated weights,
under 1 MB for the models of the learning curve) to
``benchmarks/checkpoints/NAME/``, after checking on the run's own data that
the checkpoint reproduces the test MAE the run reported
(``fit_diagnostic.diagnose`` on the test split), and prints a line for
``benchmarks/checkpoints/README.md``. ``last.pt`` (optimizer state, for
``--resume``) is not kept: a warm start takes a fresh optimizer.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fit_diagnostic import diagnose, display_unit  # noqa: E402

CHECKPOINTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")
#: Larger files do not belong in git.
MAX_BYTES = 4 * 2**20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a finished run folder (metrics.json + best.pt)")
    p.add_argument("name", help="folder name under benchmarks/checkpoints/")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    args = p.parse_args(argv)
    best = os.path.join(args.run, "best.pt")
    if not os.path.isfile(best):
        raise SystemExit(f"{best} not found: not a finished run")
    if os.path.getsize(best) > MAX_BYTES:
        raise SystemExit(f"{best} has {os.path.getsize(best) / 2**20:.1f} MiB, over "
                         f"{MAX_BYTES / 2**20:.0f} MiB: too large to keep in git")
    dest = os.path.join(CHECKPOINTS, args.name)
    if os.path.exists(dest) and not args.force:
        raise SystemExit(f"{dest} exists (--force replaces it)")
    # Only the test split is recomputed (the check); the training and validation
    # errors of the kept weights are the run's own (train_mae, best_val_mae).
    result = diagnose(args.run, args.device, splits=("test",))
    if not result["test_matches_run"]:
        raise SystemExit(f"{best} gives test MAE {result['test_mae_recomputed']:.6g}, not the "
                         f"run's {result['test_mae']:.6g}: not kept")
    os.makedirs(dest, exist_ok=True)
    for name in ("metrics.json", "best.pt"):
        shutil.copyfile(os.path.join(args.run, name), os.path.join(dest, name))
    scale, unit = display_unit(result["unit"])
    maes = [result[k] for k in ("train_mae", "best_val_mae", "test_mae")]
    print(f"| `{args.name}` | {result['train_size']} | {result['epochs']} | "
          + " | ".join("-" if v is None else f"{v * scale:.3f}" for v in maes) + f" | {unit} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
