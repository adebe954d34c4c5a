"""Cost of the many-body features against an AtomCloudNet forward on a batch
of 128 real QM9 molecules (CPU, float32). Target: under 10% of the forward."""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, median, qm9_batch, time_alternating  # noqa: E402

from acn_pyg import AtomCloudNet  # noqa: E402
from acn_pyg.nn import ManyBodyTerms  # noqa: E402

TARGET_FRACTION = 0.10


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--molecules", type=int, default=128, help="batch size (default: 128)")
    p.add_argument("--repeats", type=int, default=20, help="timed rounds (default: 20)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "many_body.json"),
                   help="JSON output (default: benchmarks/results/many_body.json)")
    args = p.parse_args(argv)

    data = qm9_batch(args.molecules, args.root)
    model = AtomCloudNet().eval()
    terms = {"whole molecule": ManyBodyTerms(), "cutoff 5 A": ManyBodyTerms(cutoff=5.0)}
    fns = {"AtomCloudNet forward": lambda: model(data.z, data.pos, data.batch)}
    for name, module in terms.items():
        fns[f"many-body ({name})"] = lambda m=module: m(data.z, data.pos, data.batch)
    with torch.no_grad():
        times = time_alternating(fns, args.repeats)
    base = median(times["AtomCloudNet forward"])
    rows = []
    print(f"{args.molecules} QM9 molecules ({data.num_nodes} atoms), float32, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} alternating rounds")
    for name, ts in times.items():
        frac = median(ts) / base
        rows.append({"name": name, "median_ms": 1e3 * median(ts), "fraction_of_forward": frac})
        print(f"  {name:32s} {1e3 * median(ts):8.2f} ms  {100 * frac:6.1f}% of the forward")
    met = all(r["fraction_of_forward"] < TARGET_FRACTION for r in rows[1:])
    print(f"target: many-body features < {100 * TARGET_FRACTION:.0f}% of an AtomCloudNet "
          f"forward -> {'MET' if met else 'MISSED'}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "molecules": args.molecules, "atoms": data.num_nodes,
                   "rows": rows, "target_fraction": TARGET_FRACTION, "target_met": met}, f,
                  indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
