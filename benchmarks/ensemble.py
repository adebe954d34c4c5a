"""Test MAE of an ensemble: the mean prediction of several finished runs
(``examples/qm9.py`` or ``learning_curve.py`` run folders with ``metrics.json``
and ``best.pt``) that share target, split and sizes, beside each member's own.

    python benchmarks/ensemble.py runs/a/acn_n1000 runs/b/acn_n1000 \\
        --out benchmarks/results/ensemble_n1000

The ensemble costs the members' training compute together; the JSON lists it.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

from acn_pyg.training import ensemble_test  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (metrics.json and best.pt)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--root", default=None, help="QM9 folder, if not the runs' own")
    p.add_argument("--subset", default=None, help="QM9 subset file, if not the runs' own")
    p.add_argument("--out", default=None, help="output stem for .json and .md (default: none)")
    args = p.parse_args(argv)

    result = ensemble_test(args.runs, device=args.device, root=args.root, subset=args.subset)
    kcal = "test_mae_kcal_mol" in result
    unit = "kcal/mol" if kcal else result["unit"]
    members = result["member_test_mae_kcal_mol"] if kcal else result["member_test_mae"]
    compute = result.pop("compute")
    lines = [f"QM9 {result['target']} test MAE ({unit}) on {result['test_size']:,} molecules",
             "", "| run | init seed | batch | epochs | minutes | device | test MAE |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c, mae in zip(compute, members):
        lines.append(f"| {c['run']} | {c['init_seed']} | {c['batch_size']} | {c['epochs']} | "
                     f"{c['wall_time_s'] / 60:.1f} | {c['device']} | {mae:.3f} |")
    total = (result["test_mae_kcal_mol"] if kcal else result["test_mae"])
    lines.append(f"| **mean prediction of the {len(args.runs)}** | | | "
                 f"{sum(c['epochs'] for c in compute)} | "
                 f"{sum(c['wall_time_s'] for c in compute) / 60:.1f} | | **{total:.3f}** |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump({"machine": machine(), "result": result, "compute": compute}, f, indent=2)
        with open(args.out + ".md", "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
