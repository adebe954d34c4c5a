"""Energies and forces of molecular dynamics (files of benchmarks/md_data.py):
AtomCloudNet, SchNet and DimeNet++ trained by the same loop
(``acn_pyg.train.run`` with ``--data FILE``: MACE's weighted loss, energy
weight 1 and force weight 100), the same minutes each on one CPU thread, on
the same training frames; test energy and force MAE on held-out frames.

    python benchmarks/md_data.py --out data/md
    python benchmarks/forces.py --data data/md --minutes 4

Target: AtomCloudNet's force MAE at most half of SchNet's, and below
DimeNet++'s.
"""
import argparse
import glob
import itertools
import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save_results  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def one_run(job: dict) -> dict:
    from acn_pyg.train import Config, run

    name = os.path.splitext(os.path.basename(job["path"]))[0]
    cfg = Config(data=job["path"], model=job["model"], train_size=job["train_size"],
                 val_size=job["val_size"], test_size=job["test_size"],
                 time_budget=job["minutes"], threads=1, device="cpu", plot=False,
                 out=os.path.join(job["runs"], f"{name}_{job['model']}"))
    m = run(cfg)
    print(f"{name} {job['model']}: energy MAE {1e3 * m['test_energy_mae']:.1f} meV, forces MAE "
          f"{1e3 * m['test_forces_mae']:.1f} meV/A ({m['epochs_trained']:.1f} epochs)",
          flush=True)
    return {"molecule": name, "model": job["model"], "energy_mae_meV": 1e3 * m["test_energy_mae"],
            "forces_mae_meV_A": 1e3 * m["test_forces_mae"],
            "energy_rmse_meV": 1e3 * m["test_energy_rmse"],
            "forces_rmse_meV_A": 1e3 * m["test_forces_rmse"],
            "epochs": m["epochs_trained"], "parameters": m["parameters"],
            "baseline_energy_mae_meV": 1e3 * m["baseline_test_energy_mae"]}


def table(rows: list, models: list) -> list:
    lines = ["| molecule | " + " | ".join(f"{m} energy / forces" for m in models) + " |",
             "| --- " * (len(models) + 1) + "|"]
    for molecule in sorted({r["molecule"] for r in rows}):
        cells = []
        for model in models:
            r = next(r for r in rows if (r["molecule"], r["model"]) == (molecule, model))
            cells.append(f"{r['energy_mae_meV']:.1f} / {r['forces_mae_meV_A']:.1f} "
                         f"({r['epochs']:.0f} ep)")
        lines.append(f"| {molecule} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/md", help="folder of .xyz files (default: data/md)")
    p.add_argument("--models", default="acn,schnet,dimenet++",
                   help="(default: acn,schnet,dimenet++)")
    p.add_argument("--minutes", type=float, default=4.0,
                   help="training minutes a run (default: 4)")
    p.add_argument("--train-size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--val-size", type=int, default=100, help="(default: 100)")
    p.add_argument("--test-size", type=int, default=300, help="(default: 300)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default: 2)")
    p.add_argument("--runs", default="runs/forces", help="run folders (default: runs/forces)")
    p.add_argument("--out", default=os.path.join(RESULTS, "forces"),
                   help="output stem: .json and .md (default: benchmarks/results/forces)")
    args = p.parse_args(argv)
    files = sorted(glob.glob(os.path.join(args.data, "*.xyz")))
    if not files:
        p.error(f"no .xyz files in {args.data}: write them with benchmarks/md_data.py")
    models = args.models.split(",")
    jobs = [dict(path=f, model=m, minutes=args.minutes, train_size=args.train_size,
                 val_size=args.val_size, test_size=args.test_size, runs=args.runs)
            for f, m in itertools.product(files, models)]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.map(one_run, jobs)
    lines = [f"Test MAE, energy (meV) / forces (meV/A), {args.train_size} training frames, "
             f"{args.test_size} test frames, {args.minutes:g} min a run on one CPU thread, "
             f"{args.jobs} runs at once", ""] + table(rows, models)
    save_results(args.out, args, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
