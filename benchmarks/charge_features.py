"""The original work's idea, measured: a model trained on an expensive
quantum-chemical feature (here QM9's Mulliken charges) supplies it to
another model. For each training size and seed: a charge model
(``acn-pyg train --target charges``) is trained on the training molecules
only; its predicted charges become an extra atom input
(``AtomCloudNet(num_extra_features=1)``) of a U0 model, trained by the plain
loop of ``benchmarks/common.py`` for the same minutes as the same U0 model
without them, on the same split (seed 0) with the same initialisation seed.

    python benchmarks/charge_features.py --sizes 100,1000 --seeds 0,1,2
"""
import argparse
import itertools
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import plain_loop, save_results  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def predicted_charges(model, prep) -> dict:
    """The charge model's charges of every molecule of the split, by QM9 index."""
    import torch
    from torch_geometric.loader import DataLoader

    table = {}
    model.eval()
    with torch.no_grad():
        for idx in prep.split.values():
            for data in DataLoader(prep.dataset[idx], batch_size=256):
                q = model(data.z, data.pos, data.batch).view(-1)
                sizes = torch.bincount(data.batch, minlength=data.num_graphs).tolist()
                for i, part in zip(data.idx.view(-1).tolist(), q.split(sizes)):
                    table[i] = part.view(-1, 1).clone()
    return table


def one_job(job: dict) -> dict:
    import torch

    from acn_pyg.models import AtomCloudNet
    from acn_pyg.train import Config, load_best_model, prepare, run

    torch.set_num_threads(1)
    common = dict(train_size=job["size"], val_size=job["val_size"], test_size=job["test_size"],
                  root=job["root"], seed=0)
    out = os.path.join(job["runs"], f"charges_n{job['size']}_s{job['seed']}")
    charges_cfg = Config(target="charges", init_seed=job["seed"], time_budget=job["minutes"],
                         threads=1, device="cpu", plot=False, out=out, **common)
    charges = run(charges_cfg)
    prep_q = prepare(charges_cfg)
    table = predicted_charges(load_best_model(out, charges_cfg, prep_q, "cpu"), prep_q)

    prep = prepare(Config(target="U0", **common))
    row = {"size": job["size"], "seed": job["seed"], "minutes": job["minutes"],
           "charges_test_mae": charges["test_mae"]}
    for name, extra in (("without", 0), ("with", 1)):
        torch.manual_seed(job["seed"])
        model = AtomCloudNet(num_extra_features=extra, std=prep.std, atomref=prep.atomref)
        features = (lambda data: torch.cat([table[i] for i in data.idx.view(-1).tolist()])
                    ) if extra else None
        test, _, epochs = plain_loop(model, prep, 1e-3, 32, job["minutes"], job["seed"],
                                     features=features)
        row[f"u0_{name}_meV"], row[f"epochs_{name}"] = 1e3 * test, epochs
    print(f"n={job['size']} seed {job['seed']}: charges MAE {charges['test_mae']:.4f} e; U0 "
          f"{row['u0_without_meV']:.1f} meV without, {row['u0_with_meV']:.1f} meV with the "
          "predicted charges", flush=True)
    return row


def main(argv=None) -> int:
    import multiprocessing

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000", help="(default: 100,1000)")
    p.add_argument("--seeds", default="0,1,2", help="initialisation seeds (default: 0,1,2)")
    p.add_argument("--minutes", default="2,4",
                   help="minutes a run, one per size (default: 2,4)")
    p.add_argument("--val-size", type=int, default=500, help="(default: 500)")
    p.add_argument("--test-size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--root", default="data/QM9", help="(default: data/QM9)")
    p.add_argument("--jobs", type=int, default=2, help="(default: 2)")
    p.add_argument("--runs", default="runs/charge_features", help="(default: runs/charge_features)")
    p.add_argument("--out", default=os.path.join(RESULTS, "charge_features"),
                   help="output stem (default: benchmarks/results/charge_features)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    minutes = dict(zip(sizes, (float(m) for m in args.minutes.split(","))))
    jobs = [dict(size=n, seed=int(s), minutes=minutes[n], val_size=args.val_size,
                 test_size=args.test_size, root=args.root, runs=args.runs)
            for n, s in itertools.product(sizes, args.seeds.split(","))]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.map(one_job, jobs)
    lines = [f"QM9 U0 test MAE (meV) on {args.test_size:,} held-out molecules, with and without "
             "the charges of a charge model trained on the same molecules as an extra atom "
             "input; plain loop, one CPU thread a run", "",
             "| molecules | minutes a run | charge model MAE (e) | U0 without | U0 with | "
             "with / without, per seed |", "| --- " * 6 + "|"]
    for n in sizes:
        rs = [r for r in rows if r["size"] == n]
        ratios = ", ".join(f"{r['u0_with_meV'] / r['u0_without_meV']:.2f}" for r in rs)
        lines.append(
            f"| {n:,} | {minutes[n]:g} | "
            f"{statistics.mean(r['charges_test_mae'] for r in rs):.4f} | "
            f"{statistics.mean(r['u0_without_meV'] for r in rs):.1f} | "
            f"{statistics.mean(r['u0_with_meV'] for r in rs):.1f} | {ratios} |")
    save_results(args.out, args, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
