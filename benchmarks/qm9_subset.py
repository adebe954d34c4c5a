"""Writes the QM9 molecules that given splits and benchmark batches use to
one compact file (``acn_pyg.datasets.save_qm9_subset``), so that training
and benchmarks run on machines without qm9pack, e.g. a GPU node with no
internet: ``--subset FILE`` in examples/qm9.py, benchmarks/learning_curve.py
and benchmarks/speed.py."""
import argparse
import os
import sys

import torch

from acn_pyg.datasets import QM9, save_qm9_subset
from acn_pyg.train import split_indices


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train-size", type=int, default=10000,
                   help="largest training size (smaller ones are subsets) (default: 10000)")
    p.add_argument("--val-size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--test-size", type=int, default=10000, help="(default: 10000)")
    p.add_argument("--seeds", default="0", help="split seeds, comma-separated (default: 0)")
    p.add_argument("--batch", type=int, default=128,
                   help="molecules of benchmarks/common.qm9_batch to include (default: 128)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--out", default="data/qm9_subset.pt", help="(default: data/qm9_subset.pt)")
    args = p.parse_args(argv)
    dataset = QM9(args.root)
    parts = [torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:args.batch]]
    for seed in args.seeds.split(","):
        split = split_indices(len(dataset), args.train_size, args.val_size, args.test_size,
                              int(seed))
        parts.extend(split.values())
    save_qm9_subset(dataset, torch.cat(parts), args.out)
    print(f"wrote {args.out}: {torch.cat(parts).unique().numel()} molecules, "
          f"{os.path.getsize(args.out) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
