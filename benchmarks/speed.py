"""Train-step and inference throughput (molecules/s) and peak memory of
AtomCloudNet against PyG's SchNet, DimeNet++ and DimeNet on the same real QM9
batches, float32. Models are timed alternately in one process, so the ratios
hold on a noisy machine.

Targets (CPU, batch 128): AtomCloudNet's default train step at least 2x SchNet's
and 1.5x DimeNet++'s; on a GPU at least SchNet's.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (count_ops, machine, median, peak_memory_mb, qm9_batch,  # noqa: E402
                    time_alternating)

from acn_pyg import AtomCloudNet  # noqa: E402
from acn_pyg.train.baselines import HAS_TORCH_SPARSE  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGETS = {"cpu": {"schnet": 2.0, "dimenet++": 1.5}, "cuda": {"schnet": 1.0}}
#: Largest batch a model is run at: PyG's original DimeNet (6 blocks of bilinear
#: triplet layers) took more than 24 GB for a 128-molecule train step on CPU
#: and was killed for memory, so it is measured at 32 only.
MAX_BATCH = {"cpu": {"dimenet": 32}, "cuda": {}}


def build(name: str) -> torch.nn.Module:
    if name == "acn":
        return AtomCloudNet()
    if name == "acn-small":
        return AtomCloudNet(hidden_channels=32, num_layers=2, radial_hidden=32)
    if name == "acn-large":
        return AtomCloudNet(hidden_channels=128, num_layers=4, radial_hidden=128)
    if name == "acn-equivariant":  # carries l = 1, 2 features between layers
        return AtomCloudNet(hidden_irreps="64x0e+16x1o+16x2e")
    if name == "acn-products":  # and the products of each layer's cloud with itself
        return AtomCloudNet(hidden_irreps="64x0e+16x1o+16x2e", product_channels=16)
    from acn_pyg.train.baselines import DIMENET_PP_QM9, DIMENET_QM9, DimeNetWithGraph, SchNetGraph
    from torch_geometric.nn.models import DimeNet, DimeNetPlusPlus, SchNet
    if name == "schnet":  # PyG's defaults: cutoff 10, 32 neighbours, 6 interactions
        return SchNet(interaction_graph=SchNetGraph(10.0, 32))
    if name == "dimenet++":
        return DimeNetWithGraph(DimeNetPlusPlus(out_channels=1, **DIMENET_PP_QM9))
    if name == "dimenet":
        return DimeNetWithGraph(DimeNet(out_channels=1, **DIMENET_QM9))
    raise ValueError(name)


def step_fns(model, data):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.zeros(data.num_graphs, 1, device=data.pos.device)

    def forward_backward():
        loss = (model(data.z, data.pos, data.batch) - target).pow(2).mean()
        loss.backward()

    def train():
        optimizer.zero_grad()
        forward_backward()
        optimizer.step()

    train.forward_backward = forward_backward

    @torch.no_grad()
    def infer():
        model(data.z, data.pos, data.batch)

    def train_forces():
        # An energy-and-forces step: forces by autograd, then a double backward.
        optimizer.zero_grad()
        pos = data.pos.detach().requires_grad_(True)
        energy = model(data.z, pos, data.batch)
        forces, = torch.autograd.grad(energy.sum(), pos, create_graph=True)
        ((energy - target).pow(2).mean() + forces.pow(2).mean()).backward()
        optimizer.step()

    train.forces = train_forces
    return train, infer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="batch 32 only, 2 rounds, no memory: under a minute on CPU")
    p.add_argument("--batch-sizes", default="32,128", help="comma-separated (default: 32,128)")
    p.add_argument("--models",
                   default="acn,acn-small,acn-large,acn-equivariant,acn-products,schnet,dimenet++,"
                           "dimenet",
                   help="comma-separated models (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default: 5)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="device (default: cpu)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--compile", action="store_true",
                   help="also time every model through torch.compile(dynamic=True), as "
                        "'<model>+compile' rows, compared with compiled baselines")
    p.add_argument("--subset", default=None,
                   help="QM9 subset file (benchmarks/qm9_subset.py) instead of ROOT")
    p.add_argument("--out", default=None,
                   help="output stem (default: benchmarks/results/speed_<device>)")
    p.add_argument("--forces", action="store_true",
                   help="also time a step on energies and forces (forces by autograd, a "
                        "double backward), and its cost against an energy step")
    p.add_argument("--reuse-freed-memory", action="store_true",
                   help="CPU: glibc keeps freed memory for reuse (acn_pyg.utils."
                        "reuse_freed_memory, as the training loop does) for every model alike")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.reuse_freed_memory:
        from acn_pyg.utils import reuse_freed_memory
        reuse_freed_memory()
    sizes = [32] if args.quick else [int(s) for s in args.batch_sizes.split(",")]
    repeats = 2 if args.quick else args.repeats
    names = args.models.split(",")
    if args.quick:
        names = [n for n in names if n not in ("dimenet", "acn-equivariant", "acn-products")]
    rows = []
    for size in sizes:
        data = qm9_batch(size, args.root, device=args.device, subset=args.subset)
        skipped = [n for n in names if size > MAX_BATCH[args.device].get(n, size)]
        if skipped:
            print(f"batch {size}: skipping {', '.join(skipped)} (see MAX_BATCH: out of memory)")
        models = {n: build(n).to(args.device) for n in names if n not in skipped}
        if args.compile:  # compiled twins share the eager models' parameters
            for n in list(models):
                if n.startswith("dimenet") and HAS_TORCH_SPARSE:
                    # PyG's triplets call torch_sparse ops, which torch.compile cannot trace.
                    print(f"{n}: not compiled (torch_sparse ops have no fake kernels)")
                    continue
                models[f"{n}+compile"] = torch.compile(models[n], dynamic=True)
        fns = {}
        for n, m in models.items():
            fns[f"{n}/train"], fns[f"{n}/infer"] = step_fns(m, data)
            if args.forces and not n.endswith("+compile"):
                fns[f"{n}/forces"] = fns[f"{n}/train"].forces
        times = time_alternating(fns, repeats, warmup=1, device=args.device)
        for n in models:
            row = {"model": n, "batch_size": size,
                   "parameters": sum(q.numel() for q in models[n].parameters()),
                   "train_mol_per_s": size / median(times[f"{n}/train"]),
                   "infer_mol_per_s": size / median(times[f"{n}/infer"])}
            if f"{n}/forces" in times:
                row["train_forces_mol_per_s"] = size / median(times[f"{n}/forces"])
                row["forces_step_cost"] = median(times[f"{n}/forces"]) / median(times[f"{n}/train"])
            if not args.quick:
                row["peak_memory_mb"] = peak_memory_mb(fns[f"{n}/train"], args.device)
            if not n.endswith("+compile"):
                # Kernels of one forward+backward (the optimizer's depend on the
                # device): what bounds a GPU step at these sizes.
                counted = count_ops(fns[f"{n}/train"].forward_backward)
                row["ops_forward_backward"] = counted["ops"]
                row["host_syncs_forward_backward"] = counted["syncs"]
            rows.append(row)

    def find(model, size):
        return next((r for r in rows if r["model"] == model and r["batch_size"] == size), None)

    checks = []
    for size in sizes:
        for suffix in ("", "+compile"):  # eager against eager, compiled against compiled
            acn = find("acn" + suffix, size)
            for base, need in TARGETS[args.device].items():
                other = find(base + suffix, size)
                if acn is None or other is None:
                    continue
                ratio = acn["train_mol_per_s"] / other["train_mol_per_s"]
                acn[f"train_ratio_vs_{base}"] = ratio
                acn[f"infer_ratio_vs_{base}"] = acn["infer_mol_per_s"] / other["infer_mol_per_s"]
                if size == max(sizes):
                    checks.append({"model": "acn" + suffix, "baseline": base + suffix,
                                   "batch_size": size, "ratio": ratio, "target": need,
                                   "met": ratio >= need})

    header = (f"QM9 batches, float32, {args.device} ({machine()['processor']}, "
              f"{args.threads} threads), median of {repeats} alternating rounds")
    lines = [header, "",
             "| model | batch | params | train mol/s | infer mol/s | peak MB | "
             "train x SchNet | train x DimeNet++ | ops fwd+bwd | syncs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['parameters']:,} | "
            f"{r['train_mol_per_s']:.1f} | {r['infer_mol_per_s']:.1f} | "
            f"{r.get('peak_memory_mb', float('nan')):.0f} | "
            f"{r.get('train_ratio_vs_schnet', float('nan')):.2f} | "
            f"{r.get('train_ratio_vs_dimenet++', float('nan')):.2f} | "
            f"{r.get('ops_forward_backward', '-')} | {r.get('host_syncs_forward_backward', '-')} |")
    lines.append("")
    for r in rows:
        if "forces_step_cost" in r:
            lines.append(f"{r['model']}, batch {r['batch_size']}: energy-and-forces step "
                         f"{r['train_forces_mol_per_s']:.1f} mol/s, {r['forces_step_cost']:.2f}x "
                         f"the time of an energy step")
    for c in checks:
        lines.append(f"target: {c['model']} train step >= {c['target']}x {c['baseline']} "
                     f"(batch {c['batch_size']}): {c['ratio']:.2f}x -> "
                     f"{'MET' if c['met'] else 'MISSED'}")
    text = "\n".join(lines)
    print(text)
    suffix = "_quick" if args.quick else ""
    stem = args.out or os.path.join(RESULTS, f"speed_{args.device}{suffix}")
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump({"machine": machine(), "device": args.device, "repeats": repeats,
                   "reuse_freed_memory": args.reuse_freed_memory,
                   "rows": rows, "targets": checks}, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
