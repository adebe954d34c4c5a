"""Scale of AtomCloudNet's signals at initialisation: per layer, the RMS of
the cloud A, the power spectrum, the products B (``--product-channels``), the
layer's input x and its output, and of the model's output (in units of the
target's standard deviation), on real QM9 molecules, for a grid of
``radial_gain`` and ``product_channels`` over several init seeds.

Why: with a radial gain of 1 the cloud starts ~50x smaller than the
self-interaction (the first epochs learn without geometry); the default
gain of 10 starts it about 5x smaller. The products are quadratic in the
cloud, so a large gain makes them blow up in the last layers.

    python research/init_scale.py --gains 1,10,30 --products 0,16
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finished_runs import machine, qm9_batch  # noqa: E402

from acn_pyg.models import AtomCloudNet  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def rms(t: torch.Tensor) -> float:
    return t.pow(2).mean().sqrt().item() if t.numel() else 0.0


def layer_scales(model: AtomCloudNet, batch) -> dict:
    """RMS of every part of every layer's output linear, from a hook."""
    layers = []

    def hook(conv):
        def record(module, inputs, output):
            parts = conv.linear_input_parts(inputs[0])
            layers.append({
                "cloud": rms(torch.cat(parts["cloud"], dim=-1)),
                "spectrum": (rms(torch.cat(parts["spectrum"], dim=-1))
                             if parts["spectrum"] else None),
                "products": rms(parts["products"][0]) if parts["products"] else None,
                "input": rms(parts["input"][0]), "output": rms(output)})
        return record

    handles = [conv.linear.register_forward_hook(hook(conv)) for conv in model.convs]
    with torch.no_grad():
        y = model(batch.z, batch.pos, batch.batch)
    for h in handles:
        h.remove()
    return {"layers": layers, "model_output": rms(y)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gains", default="1,10,30", help="radial gains (default: 1,10,30)")
    p.add_argument("--products", default="0,16", help="product channels (default: 0,16)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="init seeds (default: 0,1,2,3,4)")
    p.add_argument("--hidden-irreps", default="64x0e+16x1o+16x2e",
                   help="hidden irreps (default: 64x0e+16x1o+16x2e)")
    p.add_argument("--molecules", type=int, default=64, help="QM9 molecules (default: 64)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--out", default=os.path.join(RESULTS, "init_scale"),
                   help="output stem (default: research/results/init_scale)")
    args = p.parse_args(argv)
    batch = qm9_batch(args.molecules, args.root)
    rows = []
    for products in [int(v) for v in args.products.split(",")]:
        for gain in [float(v) for v in args.gains.split(",")]:
            for seed in [int(v) for v in args.seeds.split(",")]:
                torch.manual_seed(seed)
                model = AtomCloudNet(hidden_irreps=args.hidden_irreps,
                                     product_channels=products, radial_gain=gain)
                rows.append({"product_channels": products, "radial_gain": gain, "seed": seed,
                             **layer_scales(model, batch)})

    def fmt(v):
        return "-" if v is None else f"{v:.3g}"

    num_layers = len(rows[0]["layers"])
    lines = ["| products | gain | seed | " + " | ".join(
        f"L{t} cloud / self / B / out" for t in range(num_layers)) + " | model output |",
        "| --- " * (4 + num_layers) + "|"]
    for r in rows:
        lines.append(f"| {r['product_channels']} | {r['radial_gain']:g} | {r['seed']} | "
                     + " | ".join(f"{fmt(lay['cloud'])} / {fmt(lay['input'])} / "
                                  f"{fmt(lay['products'])} / {fmt(lay['output'])}"
                                  for lay in r["layers"])
                     + f" | {fmt(r['model_output'])} |")
    text = (f"RMS at initialisation, {args.molecules} QM9 molecules, hidden irreps "
            f"{args.hidden_irreps}; model output with mean 0, std 1 and no atomref: in "
            f"units of the standard deviation the training loop gives it\n\n"
            + "\n".join(lines) + "\n")
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
