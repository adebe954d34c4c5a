"""The model flags of a finished run (its ``metrics.json``), to continue it
or warm-start from its ``best.pt`` with the model it was trained with:

    python research/run_flags.py runs/gpu/acn_eq_wide_l4_n10000_b128/acn_n10000
    --hidden-channels 128 --hidden-irreps 128x0e+32x1o+32x2e --num-layers 4 ...

With ``--denoising`` also its denoising flags (``--denoise-weight`` and
``--denoise-sigma``), if it trained with them. ``gpu_learning_curve.sh``'s
``10000-again`` passes both to every run it continues, so that each keeps
its own depth, width and products, and its denoising or none.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finished_runs import model_flags  # noqa: E402

from acn_pyg.train import load_run, run_config  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run's output folder (with metrics.json), or that metrics.json")
    p.add_argument("--denoising", action="store_true",
                   help="also the run's --denoise-weight and --denoise-sigma, if it trained "
                        "with denoising")
    args = p.parse_args(argv)
    run = os.path.dirname(args.run) if args.run.endswith(".json") else args.run
    try:
        metrics = load_run(run)
    except FileNotFoundError as err:
        print(f"run_flags.py: {err} (a run cut short has not finished: it continues with "
              "--resume)", file=sys.stderr)
        return 1
    cfg = run_config(metrics)
    flags = model_flags(cfg)
    if args.denoising and cfg.denoise_weight > 0:
        flags += ["--denoise-weight", str(cfg.denoise_weight),
                  "--denoise-sigma", str(cfg.denoise_sigma)]
    print(" ".join(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
