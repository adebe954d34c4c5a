"""Where a train step's time goes: ``torch.profiler`` over a few train steps
(forward, backward, Adam) of each model on the same real QM9 batch.

For each model it prints and saves (``OUT.json`` and ``OUT_<model>.txt``):

* wall time per step (synchronised), host (CPU) time per step, and the time
  the device spent in kernels per step: a step whose kernel time is far below
  its wall time is bound by launch and Python overhead, not by arithmetic;
* the number of kernels launched per step;
* the profiler's table of ops, sorted by GPU time (CUDA) or CPU time.

    python benchmarks/profile_step.py --device cuda --subset data/qm9_subset.pt
"""
import argparse
import json
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, qm9_batch, sync  # noqa: E402
from speed import RESULTS, build, step_fns  # noqa: E402


def profile_model(name: str, data, device: str, steps: int, warmup: int = 5):
    model = build(name).to(device)
    train, _ = step_fns(model, data)
    for _ in range(warmup):
        train()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        train()
    sync(device)
    wall = (time.perf_counter() - start) / steps
    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            train()
        sync(device)
    events = prof.key_averages()
    # Kernels are the profiler's device events (the ops' GPU times would count
    # them twice), less annotated spans such as the optimizer step's.
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and not getattr(e, "is_user_annotation", False)]
    device_us = sum(e.self_device_time_total for e in kernels)
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    table = events.table(sort_by=sort, row_limit=40)
    if device == "cuda":  # where the host's time goes (launch-bound steps)
        table += "\n\n" + events.table(sort_by="self_cpu_time_total", row_limit=40)
    return {"model": name, "batch_size": data.num_graphs,
            "wall_ms_per_step": 1e3 * wall,
            "device_kernel_ms_per_step": device_us / 1e3 / steps,
            "kernels_per_step": len(kernels) / steps}, table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="acn,schnet", help="comma-separated (default: acn,schnet)")
    p.add_argument("--batch-size", type=int, default=128, help="molecules (default: 128)")
    p.add_argument("--steps", type=int, default=10, help="profiled steps (default: 10)")
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--subset", default=None, help="QM9 subset file instead of ROOT")
    p.add_argument("--out", default=None, help="output stem (default: results/profile_<device>)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or os.path.join(RESULTS, f"profile_{args.device}")
    data = qm9_batch(args.batch_size, args.root, device=args.device, subset=args.subset)
    rows = []
    for name in args.models.split(","):
        row, table = profile_model(name, data, args.device, args.steps)
        rows.append(row)
        print(f"{name}: {row['wall_ms_per_step']:.2f} ms/step wall, "
              f"{row['device_kernel_ms_per_step']:.2f} ms/step in kernels, "
              f"{row['kernels_per_step']:.0f} kernels/step")
        with open(f"{out}_{name}.txt", "w") as f:
            f.write(table)
    with open(f"{out}.json", "w") as f:
        json.dump({"machine": machine(), "threads": args.threads, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
