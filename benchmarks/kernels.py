"""Kernel launches and host syncs of one training forward+backward, per model,
on the same real QM9 batch: a device-independent proxy for GPU step time.

On a GPU, a train step of these models at 32-128 small molecules is bound by
launch overhead, not arithmetic: the step time changes little from 32 to 128
molecules and follows the number of kernels. This script counts, for each
model, the ATen ops that launch a kernel (views excluded) and the host syncs
among them, twice:

* ``gpu path``: the code a CUDA run takes (pure-PyTorch radius graph, since
  torch_cluster is usually absent there; AtomCloudNet's radial MLPs stacked),
  counted on CPU tensors;
* ``cpu path``: the code a CPU run takes here.

It measures counts, not time: the GPU target (train step >= SchNet's) is met
only by ``speed.py --device cuda``.
"""
import argparse
import json
import os
import sys
from contextlib import contextmanager

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import count_ops, machine, qm9_batch  # noqa: E402
from speed import RESULTS, build, step_fns  # noqa: E402

import acn_pyg.graph.radius as radius  # noqa: E402
import acn_pyg.models.atom_cloud_net as atom_cloud_net  # noqa: E402


@contextmanager
def gpu_code_path():
    saved = radius.HAS_TORCH_CLUSTER, getattr(atom_cloud_net, "STACK_RADIAL_ON_CPU", False)
    radius.HAS_TORCH_CLUSTER, atom_cloud_net.STACK_RADIAL_ON_CPU = False, True
    try:
        yield
    finally:
        radius.HAS_TORCH_CLUSTER, atom_cloud_net.STACK_RADIAL_ON_CPU = saved


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=32, help="molecules (default: 32)")
    p.add_argument("--models", default="acn,acn-small,acn-large,acn-equivariant,schnet,dimenet++",
                   help="comma-separated models")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--subset", default=None, help="QM9 subset file instead of ROOT")
    p.add_argument("--out", default=os.path.join(RESULTS, "kernels"), help="output stem")
    args = p.parse_args(argv)
    data = qm9_batch(args.batch_size, args.root, subset=args.subset)
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = build(name)
        fb = step_fns(model, data)[0].forward_backward
        row = {"model": name}
        for path, ctx in (("gpu_path", gpu_code_path), ("cpu_path", contextmanager(
                lambda: (yield)))):
            with ctx():
                fb()  # warm-up (lazy buffers, first-call work)
                row[path] = count_ops(fb)
        rows.append(row)
    base = next((r for r in rows if r["model"] == "schnet"), None)
    lines = [f"Kernels (non-view ATen ops) and host syncs of one forward+backward, "
             f"QM9 batch of {args.batch_size}", "",
             "| model | gpu path ops | syncs | x SchNet | cpu path ops | syncs |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = r["gpu_path"]["ops"] / base["gpu_path"]["ops"] if base else float("nan")
        r["gpu_path_ops_vs_schnet"] = ratio
        lines.append(f"| {r['model']} | {r['gpu_path']['ops']} | {r['gpu_path']['syncs']} | "
                     f"{ratio:.2f} | {r['cpu_path']['ops']} | {r['cpu_path']['syncs']} |")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "batch_size": args.batch_size, "rows": rows}, f,
                  indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
