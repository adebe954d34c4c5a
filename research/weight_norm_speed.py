"""Cost per training step of weight normalisation: AtomCloudNet's train step
(forward, backward, Adam) with and without ``weight_norm``, timed alternately
in one process on the same real QM9 batch, float32.

    python research/weight_norm_speed.py --batch-sizes 32,128 --repeats 20
"""
import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from common import adam_step, machine, median, qm9_batch, time_alternating  # noqa: E402

from acn_pyg import AtomCloudNet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", default="32,128")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--root", default="data/QM9")
    p.add_argument("--out", default="research/results/weight_norm_speed.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for size in (int(b) for b in args.batch_sizes.split(",")):
        data = qm9_batch(size, args.root)
        steps = {}
        for name, flag in (("weight_norm", True), ("plain", False)):
            torch.manual_seed(0)
            steps[name] = adam_step(AtomCloudNet(weight_norm=flag), data)
        times = time_alternating(steps, args.repeats)
        row = {"batch": size, **{f"{k}_molecules_per_s": size / median(v)
                                 for k, v in times.items()}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
