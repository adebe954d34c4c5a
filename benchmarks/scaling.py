"""Time and memory of radius-graph construction and of one AtomCloudConv
forward + backward against the number of atoms, 100 to 100,000 atoms at
liquid-water density (0.1 atoms per cubic Angstrom, random positions in a
cube), for the torch_cluster and the pure-PyTorch graph builders.

Freed memory is kept in the heap for reuse (acn_pyg.utils.reuse_freed_memory)
unless --system-malloc is given; compare the two in separate processes (the
heap a process has grown changes later timings within it):
``python benchmarks/scaling.py --system-malloc --out benchmarks/results/scaling_cpu_system_malloc``.

Target: linear growth. The script fits log(time) = a + b log(N) over the larger
systems and reports the exponent b (1 is linear), and saves a log-log plot.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, peak_memory_mb, sync  # noqa: E402

from acn_pyg import AtomCloudConv, radius_graph  # noqa: E402
from acn_pyg.graph import HAS_TORCH_CLUSTER  # noqa: E402
from acn_pyg.utils import reuse_freed_memory  # noqa: E402

WATER_DENSITY = 0.1  # atoms per cubic Angstrom
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def water_box(num_atoms: int, seed: int = 0, device="cpu") -> torch.Tensor:
    side = (num_atoms / WATER_DENSITY) ** (1.0 / 3.0)
    g = torch.Generator().manual_seed(seed)
    return (side * torch.rand(num_atoms, 3, generator=g)).to(device)


def best_of(fn, repeats: int, device) -> float:
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def fit_exponent(ns, ts):
    xs, ys = [math.log(n) for n in ns], [math.log(t) for t in ts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,300,1000,3000,10000,30000,100000",
                   help="numbers of atoms (default: 100 ... 100000)")
    p.add_argument("--cutoff", type=float, default=5.0, help="cutoff in Angstrom (default: 5)")
    p.add_argument("--channels", type=int, default=16,
                   help="scalar channels of the convolution (default: 16)")
    p.add_argument("--repeats", type=int, default=3, help="best of N (default: 3)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="(default: cpu)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    p.add_argument("--system-malloc", action="store_true",
                   help="keep glibc's default malloc settings throughout")
    p.add_argument("--out", default=None,
                   help="output stem (default: benchmarks/results/scaling_<device>)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = ["torch_cluster", "torch"] if HAS_TORCH_CLUSTER else ["torch"]
    conv = AtomCloudConv(args.channels, args.channels, cutoff=args.cutoff).to(args.device)
    reuse = not args.system_malloc and reuse_freed_memory()
    print(f"freed memory kept for reuse: {reuse}")

    rows = []
    for n in sizes:
        pos = water_box(n, device=args.device)
        x = torch.randn(n, args.channels, device=args.device)
        row = {"atoms": n}
        for backend in backends:
            row[f"graph_{backend}_s"] = best_of(
                lambda: radius_graph(pos, args.cutoff, backend=backend), args.repeats,
                args.device)
        edge_index = radius_graph(pos, args.cutoff)
        row["edges"] = edge_index.size(1)
        row["edges_per_atom"] = edge_index.size(1) / n

        def conv_step():
            p_ = pos.clone().requires_grad_(True)
            out = conv(x, p_, edge_index=edge_index)
            out.square().sum().backward()

        row["conv_fwd_bwd_s"] = best_of(conv_step, args.repeats, args.device)
        row["conv_us_per_edge"] = 1e6 * row["conv_fwd_bwd_s"] / max(row["edges"], 1)
        row["conv_peak_mb"] = peak_memory_mb(conv_step, args.device)
        rows.append(row)
        print(f"{n:>7} atoms, {row['edges']:>9} edges: "
              + ", ".join(f"graph[{b}] {1e3 * row[f'graph_{b}_s']:.1f} ms" for b in backends)
              + f", conv fwd+bwd {1e3 * row['conv_fwd_bwd_s']:.1f} ms "
              f"({row['conv_us_per_edge']:.2f} us/edge), "
              f"peak +{row['conv_peak_mb']:.0f} MB", flush=True)

    # Fitted where the working set no longer fits in the CPU caches, so the
    # exponent measures the algorithm rather than the cache transition.
    large = [r for r in rows if r["atoms"] >= 10000] or rows
    exponents = {key: fit_exponent([r["atoms"] for r in large], [r[key] for r in large])
                 for key in [f"graph_{b}_s" for b in backends] + ["conv_fwd_bwd_s"]}
    for key, b in exponents.items():
        verdict = "linear" if b < 1.15 else "super-linear"
        print(f"time ~ N^{b:.2f} for {key} (N >= {large[0]['atoms']}): {verdict}")
    linear = all(b < 1.15 for b in exponents.values())
    print(f"target: linear growth -> {'MET' if linear else 'MISSED'}")

    stem = args.out or os.path.join(RESULTS, f"scaling_{args.device}")
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "rows": rows,
                   "exponents": exponents, "linear": linear,
                   "reuse_freed_memory": reuse}, f, indent=2)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ns = [r["atoms"] for r in rows]
    for key in exponents:
        ax.loglog(ns, [r[key] for r in rows], "o-", label=f"{key[:-2]} (N^{exponents[key]:.2f})")
    ref = rows[-1]["conv_fwd_bwd_s"] / ns[-1]
    ax.loglog(ns, [ref * n for n in ns], "k:", lw=0.8, label="linear")
    ax.set_xlabel("atoms (liquid-water density)")
    ax.set_ylabel("seconds")
    ax.set_title(f"cutoff {args.cutoff} A, {args.device}, {args.threads} threads, "
                 f"{'freed memory reused' if reuse else 'glibc malloc defaults'}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=120)
    print(f"wrote {stem}.json and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
