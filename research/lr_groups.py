"""Which part of AtomCloudNet limits it at a small learning rate in the plain
loop of benchmarks/lr_robustness.py: the same runs (Adam, batch 32, L1 on the
standardised target, ReduceLROnPlateau, 4 minutes on one CPU thread, two runs
at once), with the learning rate of one parameter group multiplied
(embedding, radial MLPs, the layers' linears, the readout MLPs), or one
initialisation changed (``zero_out``: the last output weight starts at zero,
so the model starts at the linear baseline), ``weight_norm`` (every weight
matrix weight-normalised through torch's parametrisation, its direction
scaled by ``--wn-scale``) or ``native`` (AtomCloudNet's own ``weight_norm``,
its direction scale ``--direction-scale``);
the other variants start from the model with ``weight_norm=False``.

    python research/lr_groups.py --target gap --lr 3e-4 --seeds 0,1 \
        --variants none,embedding,radial,linear,readout,zero_out
"""
import argparse
import itertools
import json
import os
import sys

from pool_runs import run_and_append

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = {"embedding": ("embedding.",), "radial": (".radial.",), "linear": (".linear.",),
          "readout": ("atom_mlp.", "output_mlp.")}


def _weight_norm(model, scale: float) -> None:
    """Every weight matrix (linear layers, the layers' IrrepsLinear, the
    embedding) as g v / |v| per output (torch's weight_norm), with v scaled by
    ``scale`` (the forward pass unchanged): v is scale-invariant, so Adam
    turns it by about lr sqrt(n) / |v| a step, which is large while |v| is
    small and falls as Adam's steps grow |v|."""
    import torch
    from torch.nn.utils.parametrizations import weight_norm

    from acn_pyg.nn import IrrepsLinear

    targets = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            targets.append((module, "weight", 0))
        elif isinstance(module, IrrepsLinear):
            targets += [(module.weights, str(k), 1) for k in range(len(module.weights))]
    for module, name, dim in targets:
        weight_norm(module, name, dim=dim)
        with torch.no_grad():
            module.parametrizations[name].original1.mul_(scale)


def one_run(job: dict) -> dict:
    import torch

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import common
    from acn_pyg.train import Config, build_model, prepare

    torch.set_num_threads(1)
    # The plain model (weight_norm=False) but for the variant "native", the
    # model's own weight normalisation.
    cfg = Config(target=job["target"], model="acn", train_size=1000, val_size=500,
                 test_size=1000, root=job["root"], weight_norm=job["variant"] == "native")
    prep = prepare(cfg)
    if job.get("direction_scale") is not None:
        import acn_pyg.nn.normalized
        acn_pyg.nn.normalized.DIRECTION_SCALE = job["direction_scale"]
    torch.manual_seed(job["seed"])
    model = build_model(cfg, prep.extensive, prep.mean, prep.std, prep.atomref)
    variant, factor = job["variant"], job["factor"]
    if variant == "weight_norm":
        _weight_norm(model, job["wn_scale"])
    if variant == "zero_out":
        with torch.no_grad():
            model.output_mlp[-1].weight.zero_()
    if variant in GROUPS:
        plain_adam = torch.optim.Adam

        def grouped(params, lr):
            inside = [p for n, p in model.named_parameters()
                      if any(key in n for key in GROUPS[variant])]
            ids = {id(p) for p in inside}
            rest = [p for p in model.parameters() if id(p) not in ids]
            return plain_adam([{"params": rest}, {"params": inside, "lr": lr * factor}], lr=lr)
        common.torch.optim.Adam = grouped
    test, best, epochs = common.plain_loop(model, prep, job["lr"], 32, job["minutes"],
                                           job["seed"])
    row = {**job, "test_mae": test, "best_val_mae": best, "epochs": epochs}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="gap")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--factor", type=float, default=10.0)
    p.add_argument("--wn-scale", type=float, default=0.1)
    p.add_argument("--direction-scale", type=float, default=None,
                   help="acn_pyg.nn.normalized.DIRECTION_SCALE for the variant native "
                        "(default: the package's)")
    p.add_argument("--lrs", default=None, help="several learning rates (default: --lr)")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--variants", default="none,embedding,radial,linear,readout,zero_out")
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--root", default="data/QM9")
    p.add_argument("--out", default="research/results/lr_groups.json")
    args = p.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")] if args.lrs else [args.lr]
    jobs = [dict(target=args.target, lr=lr, factor=args.factor, wn_scale=args.wn_scale,
                 direction_scale=args.direction_scale,
                 variant=v, seed=int(s), minutes=args.minutes, root=args.root)
            for lr, v, s in itertools.product(lrs, args.variants.split(","),
                                              args.seeds.split(","))]
    run_and_append(one_run, jobs, args.out)


if __name__ == "__main__":
    main()
