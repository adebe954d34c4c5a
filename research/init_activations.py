"""The size of each stage of AtomCloudNet and of MACE at initialisation, on
one batch of 32 training molecules of benchmarks/per_example.py's split (U0,
seed 0): the root mean square of the embedding, the radial MLP's output, the
atom basis A (the cloud projected per channel), the products B and the new
atom features of every layer, and the batch MAE of the untrained model.
MACE runs in its own environment (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1).

    python research/init_activations.py --model acn --out research/results/x/acn \\
        --config '{"product_channels": 64, "product_basis": true, "weight_norm": false}'
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 .venv-mace/bin/python research/init_activations.py \\
        --model mace --out research/results/x/mace --mace '{"correlation": 2, "max_ell": 2}'
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
import per_example  # noqa: E402


def hooks(model, name: str, stages: list) -> None:
    """Registers forward hooks that append (stage, shape, rms) to
    :obj:`stages`."""
    import torch

    def record(stage):
        def hook(module, inputs, output):
            t = output[0] if isinstance(output, tuple) else output
            stages.append((stage, list(t.shape), float(t.detach().pow(2).mean().sqrt())))
        return hook

    if name == "mace":
        m = model.mace
        m.node_embedding.register_forward_hook(record("embedding"))
        for t, (block, product) in enumerate(zip(m.interactions, m.products)):
            block.conv_tp_weights.register_forward_hook(record(f"layer {t}: radial MLP"))
            block.register_forward_hook(record(f"layer {t}: A (projected cloud)"))
            product.symmetric_contractions.register_forward_hook(record(f"layer {t}: B"))
            product.register_forward_hook(record(f"layer {t}: new features"))
        return
    model.embedding.register_forward_hook(record("embedding"))
    for t, conv in enumerate(model.convs):
        conv.radial.register_forward_hook(record(f"layer {t}: radial MLP"))
        if conv.product is not None:
            conv.product.projection.register_forward_hook(record(f"layer {t}: A (projected cloud)"))
            conv.product.register_forward_hook(record(f"layer {t}: B"))
        # the layer's output (before the residual): what its gate returns
        model.gates[t].register_forward_hook(record(f"layer {t}: new features"))
    if not isinstance(model.atom_mlp, torch.nn.Identity):
        model.atom_mlp.register_forward_hook(record("atom MLP"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("acn", "mace"), required=True)
    p.add_argument("--config", default="{}", help="AtomCloudNet Config fields (JSON)")
    p.add_argument("--mace", default="{}", help="MACE options (JSON), per_example.MACE_OPTIONS")
    p.add_argument("--root", default="data/QM9", help="(default: data/QM9)")
    p.add_argument("--out", required=True, help="output stem: .json and .md")
    args = p.parse_args(argv)
    import torch
    from torch_geometric.loader import DataLoader

    from acn_pyg.graph import radius_graph
    from acn_pyg.train import build_model, prepare

    torch.set_num_threads(1)
    job = dict(model="acn", size=1000, seed=0, target="U0", val_size=500, test_size=1000,
               root=os.path.abspath(args.root), config=json.loads(args.config))
    cfg = per_example.job_config(job)
    prep = prepare(cfg)
    torch.manual_seed(0)
    if args.model == "mace":
        train = prep.dataset[prep.split["train"]]
        counts = [radius_graph(d.pos, 5.0).size(1) / d.num_nodes for d in train]
        model = per_example.mace_model(prep, sum(counts) / len(counts), **json.loads(args.mace))
    else:
        model = build_model(cfg, prep.extensive, prep.mean, prep.std, prep.atomref)
    stages = []
    hooks(model, args.model, stages)
    data = next(iter(DataLoader(prep.dataset[prep.split["train"]], batch_size=32)))
    with torch.no_grad():
        y = model(data.z, data.pos, data.batch).view(-1)
    mae = float((y - data.y[:, prep.t_index]).abs().mean() / prep.std)
    lines = [f"{args.model} {args.mace if args.model == 'mace' else args.config}", "",
             "| stage | shape | rms |", "| --- | --- | --- |"]
    lines += [f"| {s} | {shape} | {rms:.4f} |" for s, shape, rms in stages]
    lines += ["", f"Batch MAE of the untrained model: {mae:.3f} target std."]
    print("\n".join(lines))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"args": vars(args), "stages": stages, "batch_mae_std": mae}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
