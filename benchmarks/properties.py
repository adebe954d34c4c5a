"""Atomic and tensorial properties of QM9 through AtomCloudNet's output heads,
by the project's training program (``acn_pyg.train.run``), the same minutes
a run on one CPU thread, on the same held-out molecules for every size:

* the polarizability tensor (``--target polarizability``: the MAE of its
  principal values, since QM9's tensors are in another frame than its
  positions, and of its isotropic part) against ``alpha`` learned as a
  scalar;
* ``mu`` through the dipole-vector head (``--output dipole``, the default)
  against AtomCloudNet with a scalar head and PyG's SchNet;
* Mulliken charges per atom (``--target charges``).

    python benchmarks/properties.py --sizes 1000 --minutes 4
    python benchmarks/properties.py --sizes 10000 --minutes 12

Targets: the tensor model's isotropic MAE at least as good as the scalar
alpha model's; the dipole head better than the scalar head and SchNet.
"""
import argparse
import itertools
import json
import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save_results  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: (name, target, model, output) of every run at a size.
RUNS = (("alpha scalar", "alpha", "acn", "scalar"),
        ("polarizability tensor", "polarizability", "acn", "auto"),
        ("mu dipole head", "mu", "acn", "dipole"),
        ("mu scalar head", "mu", "acn", "scalar"),
        ("mu SchNet", "mu", "schnet", "auto"),
        ("charges", "charges", "acn", "auto"))


def one_run(job: dict) -> dict:
    from acn_pyg.train import Config, run

    cfg = Config(target=job["target"], model=job["model"], output=job["output"],
                 train_size=job["size"], val_size=job["val_size"], test_size=job["test_size"],
                 time_budget=job["minutes"], threads=1, device="cpu", plot=False,
                 init_seed=job["init_seed"], root=job["root"],
                 out=os.path.join(job["runs"],
                                  f"{job['key']}_n{job['size']}_s{job['init_seed']}"))
    m = run(cfg)
    row = {"name": job["name"], "size": job["size"], "init_seed": job["init_seed"],
           "target": job["target"],
           "model": job["model"], "output": m.get("output", "scalar"), "unit": m["unit"],
           "test_mae": m["test_mae"], "baseline_test_mae": m["baseline_test_mae"],
           "test_isotropic_mae": m.get("test_isotropic_mae"),
           "test_shape_sign_agreement": m.get("test_shape_sign_agreement"),
           "epochs": m["epochs_trained"], "minutes": job["minutes"]}
    print(f"n={job['size']} seed {job['init_seed']} {job['name']}: "
          f"test MAE {m['test_mae']:.4g} {m['unit']}"
          + (f" (isotropic {row['test_isotropic_mae']:.4g})"
             if row["test_isotropic_mae"] is not None else "")
          + f", {row['epochs']:.1f} epochs", flush=True)
    return row


def _seed(row: dict) -> int:
    return row.get("init_seed", 0)  # rows of runs before seeds were recorded: seed 0


def table(rows: list) -> list:
    """One row per run and one column per size: the test MAE (the mean over
    initialisation seeds, each in brackets, when there are several)."""
    sizes = sorted({r["size"] for r in rows})
    lines = ["| property | run | unit | " + " | ".join(f"{n:,} molecules" for n in sizes) + " |",
             "| --- " * (3 + len(sizes)) + "|"]
    for name, target, _, _ in RUNS:
        if not any(r["name"] == name for r in rows):
            continue
        cells = []
        for n in sizes:
            runs = sorted((r for r in rows if (r["name"], r["size"]) == (name, n)), key=_seed)
            if not runs:
                cells.append("-")
                continue
            cells.append(_cell(runs))
        unit = next((r["unit"] for r in rows if r["name"] == name), "")
        lines.append(f"| {target} | {name} | {unit} | " + " | ".join(cells) + " |")
    return lines


def _cell(runs: list) -> str:
    def mean(key):
        return sum(r[key] for r in runs) / len(runs)
    text = f"{mean('test_mae'):.4g}"
    if len(runs) > 1:
        text += " (" + ", ".join(f"{r['test_mae']:.4g}" for r in runs) + ")"
    if runs[0]["test_isotropic_mae"] is not None:
        text += f", isotropic {mean('test_isotropic_mae'):.4g}"
        if len(runs) > 1:
            text += " (" + ", ".join(f"{r['test_isotropic_mae']:.4g}" for r in runs) + ")"
    if all(r.get("test_shape_sign_agreement") is not None for r in runs):
        text += ", shape sign agrees for " + ", ".join(
            f"{r['test_shape_sign_agreement']:.0%}" for r in runs)
    return text + f" ({mean('epochs'):.0f} ep)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000", help="training sizes (default: 1000)")
    p.add_argument("--minutes", type=float, default=4.0, help="minutes a run (default: 4)")
    p.add_argument("--val-size", type=int, default=500, help="(default: 500)")
    p.add_argument("--test-size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--root", default="data/QM9", help="(default: data/QM9)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default: 2)")
    p.add_argument("--only", default=None,
                   help="comma-separated run names of RUNS to run (default: all)")
    p.add_argument("--init-seeds", default="0",
                   help="initialisation seeds, each a run on the same split (default: 0)")
    p.add_argument("--runs", default="runs/properties", help="(default: runs/properties)")
    p.add_argument("--out", default=os.path.join(RESULTS, "properties"),
                   help="output stem; rows of earlier sizes in OUT.json are kept "
                        "(default: benchmarks/results/properties)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    jobs = [dict(name=name, key=name.replace(" ", "_").lower(), target=target, model=model,
                 output=output, size=n, minutes=args.minutes, val_size=args.val_size,
                 test_size=args.test_size, root=args.root, runs=args.runs, init_seed=int(seed))
            for n, (name, target, model, output), seed in itertools.product(
                sizes, RUNS, args.init_seeds.split(","))
            if args.only is None or name in args.only.split(",")]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.map(one_run, jobs)
    old = []
    if os.path.exists(args.out + ".json"):
        with open(args.out + ".json") as f:
            new = {(r["name"], r["size"], _seed(r)) for r in rows}
            old = [r for r in json.load(f)["rows"] if (r["name"], r["size"], _seed(r)) not in new]
    rows = sorted(old + rows, key=lambda r: (r["size"], _seed(r)))
    lines = [f"Test MAE on {args.test_size:,} held-out QM9 molecules (the same for every size), "
             f"one CPU thread a run, {args.jobs} runs at once; minutes a run: "
             + ", ".join(f"{r['minutes']:g} at {r['size']:,}"
                         for r in {r["size"]: r for r in rows}.values()), ""] + table(rows)
    save_results(args.out, args, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
