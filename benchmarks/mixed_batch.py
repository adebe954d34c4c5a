"""One dense molecule among many small ones: the train-step time and peak
memory of AtomCloudNet (default model, float32) on a batch of a dense cluster
(random atoms in a sphere at liquid density, no two closer than 0.9 Angstrom)
and many small molecules (four atoms each), against the cluster alone and the
small molecules alone.

Each case runs in a fresh subprocess, so that its peak resident memory
(``getrusage``'s maximum RSS) is its own; the cases alternate over the rounds,
so that a noisy machine slows all of them alike. A step is the radius
graph, forward, backward and Adam; its time is the median over the
steps of a process, then over the rounds. ``step MB`` is the resident memory
one step adds to the process (``common.peak_memory_mb``); the maximum RSS also
holds the interpreter and the libraries, once in every process, so it is
shown but not compared.

Target: the mixed batch within 1.5x of the two parts run apart (their sum),
in time and in step memory.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, median, peak_memory_mb  # noqa: E402
from speed import RESULTS, step_fns  # noqa: E402

from acn_pyg import AtomCloudNet, radius_graph  # noqa: E402

CASES = ("mixed", "cluster", "small")
TARGET = 1.5
MIN_DISTANCE = 0.9  # Angstrom, closest approach of two atoms
ELEMENTS = (1, 6, 7, 8)


def random_points(num_atoms: int, radius: float, generator: torch.Generator) -> torch.Tensor:
    """Random points in a sphere, no two closer than MIN_DISTANCE (random
    sequential addition)."""
    points = []
    while len(points) < num_atoms:
        p = radius * (2 * torch.rand(3, generator=generator, dtype=torch.float64) - 1)
        if p.norm() > radius:
            continue
        if all((p - q).norm() >= MIN_DISTANCE for q in points):
            points.append(p)
    return torch.stack(points).float()


def build_batch(case: str, cluster_atoms: int, molecules: int, molecule_atoms: int,
                density: float, seed: int = 0):
    """The batch of a case: ``cluster`` (one dense cluster), ``small`` (the
    small molecules) or ``mixed`` (both: the cluster first)."""
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(seed)
    cluster_radius = (3 * cluster_atoms / (4 * math.pi * density)) ** (1 / 3)
    cluster = Data(z=torch.tensor(ELEMENTS)[torch.randint(len(ELEMENTS), (cluster_atoms,),
                                                          generator=g)],
                   pos=random_points(cluster_atoms, cluster_radius, g))
    small = [Data(z=torch.tensor(ELEMENTS)[torch.randint(len(ELEMENTS), (molecule_atoms,),
                                                         generator=g)],
                  pos=random_points(molecule_atoms, 1.5, g)) for _ in range(molecules)]
    parts = {"cluster": [cluster], "small": small, "mixed": [cluster] + small}[case]
    return Batch.from_data_list(parts)


def run_case(args) -> dict:
    """One case in this process: the graph's size, the step's time and memory."""
    data = build_batch(args.case, args.cluster_atoms, args.molecules, args.molecule_atoms,
                       args.density)
    torch.manual_seed(0)
    model = AtomCloudNet()
    train, _ = step_fns(model, data)
    count = torch.bincount(radius_graph(data.pos, model.cutoff, data.batch)[1],
                           minlength=data.num_nodes)
    train()  # warm-up
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        train()
        times.append(time.perf_counter() - start)
    step_mb = peak_memory_mb(train)
    return {"case": args.case, "atoms": data.num_nodes, "molecules": data.num_graphs,
            "edges": int(count.sum()), "max_neighbors": int(count.max()),
            "step_s": median(times), "step_mb": step_mb,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster-atoms", type=int, default=300,
                   help="atoms in the dense cluster (default: 300)")
    p.add_argument("--molecules", type=int, default=2000,
                   help="small molecules in the batch (default: 2000)")
    p.add_argument("--molecule-atoms", type=int, default=4,
                   help="atoms per small molecule (default: 4)")
    p.add_argument("--density", type=float, default=0.1,
                   help="atoms per cubic Angstrom in the cluster (default: 0.1, liquid water)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds over the three cases, one fresh process each (default: 3)")
    p.add_argument("--steps", type=int, default=3,
                   help="timed train steps per process, after one warm-up (default: 3)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    p.add_argument("--out", default=os.path.join(RESULTS, "mixed_batch"),
                   help="output stem: writes STEM.json and STEM.md "
                        "(default: benchmarks/results/mixed_batch)")
    p.add_argument("--case", choices=CASES, default=None,
                   help="run this one case in this process and print its JSON (what the "
                        "script runs in each fresh subprocess)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.case is not None:
        print(json.dumps(run_case(args)))
        return 0

    flags = [f"--cluster-atoms={args.cluster_atoms}", f"--molecules={args.molecules}",
             f"--molecule-atoms={args.molecule_atoms}", f"--density={args.density}",
             f"--steps={args.steps}", f"--threads={args.threads}"]
    runs = {case: [] for case in CASES}
    with tqdm(total=args.rounds * len(CASES), desc="processes") as bar:
        for _ in range(args.rounds):
            for case in CASES:
                out = subprocess.run([sys.executable, os.path.abspath(__file__),
                                      f"--case={case}"] + flags,
                                     check=True, capture_output=True, text=True).stdout
                runs[case].append(json.loads(out.strip().splitlines()[-1]))
                bar.update()
    rows = {}
    for case, results in runs.items():
        rows[case] = dict(results[0], **{key: median([r[key] for r in results])
                                         for key in ("step_s", "step_mb", "max_rss_mb")})
    ratios = {key: rows["mixed"][key] / (rows["cluster"][key] + rows["small"][key])
              for key in ("step_s", "step_mb")}

    lines = [f"AtomCloudNet train step, float32, CPU, {args.threads} threads, median of "
             f"{args.rounds} fresh processes x {args.steps} steps", "",
             "| batch | atoms | edges | largest neighbour count | step (s) | step MB | "
             "max RSS (MB) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    names = {"mixed": "cluster + small molecules", "cluster": "cluster alone",
             "small": "small molecules alone"}
    for case in CASES:
        r = rows[case]
        lines.append(f"| {names[case]} | {r['atoms']:,} | {r['edges']:,} | "
                     f"{r['max_neighbors']} | {r['step_s']:.3f} | {r['step_mb']:.0f} | "
                     f"{r['max_rss_mb']:.0f} |")
    lines.append("")
    for key, what in (("step_s", "time"), ("step_mb", "step memory")):
        met = "MET" if ratios[key] <= TARGET else "MISSED"
        lines.append(f"target: mixed {what} <= {TARGET}x the parts' sum: "
                     f"{ratios[key]:.2f}x -> {met}")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "settings": vars(args), "rows": rows,
                   "runs": runs, "ratio_to_parts": ratios, "target": TARGET}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
