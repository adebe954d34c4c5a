"""The first training steps of per_example.py's plain loop (Adam, batch
32, L1 on the target in units of its std, the same split and batch order),
step by step over at most the first epoch (32 batches): the batch MAE in
units of the target's std before each step and the gradient norm. Shows
whether Adam's first steps throw the prediction far off (the first epoch's
mean training MAE of many runs is several eV).

    python research/first_steps.py --steps 32 --lr 3e-3 \\
        --configs '{"label": "base", "config": {"product_channels": 64}}'
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
import per_example  # noqa: E402
from common import save_results  # noqa: E402


def first_steps(config: dict, lr: float, steps: int, seed: int, root: str) -> list:
    """Per step: {"step", "mae_std", "grad_norm"}, before the step's update."""
    from torch_geometric.loader import DataLoader

    from acn_pyg.train import build_model, prepare

    cfg = per_example.job_config(dict(model="acn", target="U0", size=1000, val_size=500,
                                      test_size=1000, root=root, config=config))
    prep = prepare(cfg)
    torch.manual_seed(seed)
    model = build_model(cfg, prep.extensive, prep.mean, prep.std, prep.atomref)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(prep.dataset[prep.split["train"]], batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    rows = []
    for step, data in enumerate(loader):
        if step >= steps:
            break
        opt.zero_grad()
        error = (model(data.z, data.pos, data.batch).view(-1) - data.y[:, prep.t_index]).abs()
        loss = error.mean() / prep.std
        loss.backward()
        norm = torch.cat([p.grad.reshape(-1) for p in model.parameters()
                          if p.grad is not None]).norm()
        opt.step()
        rows.append({"step": step, "mae_std": loss.item(), "grad_norm": norm.item()})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", required=True,
                   help='JSON objects {"label": ..., "config": {Config fields}}; weight_norm '
                        "defaults to True, as in per_example.py")
    p.add_argument("--lr", type=float, default=3e-3, help="(default: 3e-3)")
    p.add_argument("--steps", type=int, default=32, help="(default: 32, one epoch)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--threads", type=int, default=1, help="(default: 1)")
    p.add_argument("--root", default="data/QM9", help="(default: data/QM9)")
    p.add_argument("--out", required=True, help="output stem: .json and .md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = []
    for c in map(json.loads, args.configs):
        runs.append({"label": c["label"], "config": c.get("config", {}),
                     "steps": first_steps(c.get("config", {}), args.lr, args.steps, args.seed,
                                          args.root)})
    done = min(len(r["steps"]) for r in runs)  # at most one epoch: 32 batches
    shown = [s for s in range(done) if s < 10 or s % 10 == 9 or s == done - 1]
    lines = [f"Batch MAE / std before each Adam step (lr {args.lr:g}, batch 32, seed "
             f"{args.seed}); the largest over the steps and the gradient norm there", "",
             "| configuration | " + " | ".join(f"step {s}" for s in shown)
             + " | largest | grad norm there |",
             "| --- " * (len(shown) + 3) + "|"]
    for r in runs:
        worst = max(r["steps"], key=lambda s: s["mae_std"])
        lines.append(f"| {r['label']} | " + " | ".join(
            f"{r['steps'][s]['mae_std']:.2f}" for s in shown)
            + f" | {worst['mae_std']:.2f} (step {worst['step']}) | {worst['grad_norm']:.1f} |")
    save_results(args.out, args, runs, lines, key="runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
