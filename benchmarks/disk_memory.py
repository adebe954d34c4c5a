"""Memory of training on structure files that grow 10x and 100x: the
on-disk store (``AtomsDataset(on_disk=True)``, ``acn-pyg train --on-disk``)
against the in-memory dataset.

For each size, synthetic frames (9-atom molecules of C, H and O around two
geometries, with energies and forces; the numbers are noise, which is all
memory depends on) are written to an extended-XYZ file. A fresh process
then (1) processes the file into the dataset (where the training program
looks for it) and (2) opens it and trains the default
AtomCloudNet on energies and forces with the training program's data
preparation and loop for a fixed time, while a thread samples
``/proc/self/status``. Reported per phase: the peak private memory
(``RssAnon``: what the process owns) and the peak resident set
(``VmRSS``, which also counts the store's file pages the process has
touched: page cache, given back under memory pressure).
"""
import argparse
import json
import multiprocessing
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save_results  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_frames(path: str, num: int, seed: int = 0, chunk: int = 10000) -> None:
    """Writes :obj:`num` synthetic frames to :obj:`path` in chunks (the
    writer holds one chunk at a time)."""
    import ase
    import ase.io
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    bases = [("C2H6O", rng.normal(size=(9, 3)) * 1.2), ("C3H6", rng.normal(size=(9, 3)) * 1.2)]
    part = path + ".part"
    with open(part, "w") as f:
        for start in range(0, num, chunk):
            frames = []
            for i in range(start, min(num, start + chunk)):
                formula, pos = bases[i % 2]
                atoms = ase.Atoms(formula, positions=pos + rng.normal(scale=0.05, size=(9, 3)))
                atoms.calc = SinglePointCalculator(
                    atoms, energy=-100.0 - 10.0 * (i % 2) + 0.1 * rng.normal(),
                    forces=rng.normal(size=(9, 3)))
                frames.append(atoms)
            ase.io.write(f, frames, format="extxyz")
    os.replace(part, path)


class Sampler:
    """Samples this process's memory (MiB) from ``/proc/self/status``."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self._stop = every, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> dict:
        values = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    values[key] = int(rest.split()[0]) / 1024
        return values

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, value in self.now().items():
                self.peak[key] = max(self.peak.get(key, 0.0), value)
            time.sleep(self.every)

    def __enter__(self) -> "Sampler":
        self.peak = {}
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for key, value in self.now().items():
            self.peak[key] = max(self.peak.get(key, 0.0), value)


def measure(job: dict) -> dict:
    """Processes and trains one size in this (fresh) process."""
    import torch

    import acn_pyg.train.loop
    from acn_pyg.datasets import AtomsDataset
    from acn_pyg.train import Config, TrainState, prepare, train
    from acn_pyg.train.data import make_loaders
    from acn_pyg.train.experiment import _setup, _trainer

    torch.set_num_threads(job["threads"])
    bar = acn_pyg.train.loop.tqdm
    acn_pyg.train.loop.tqdm = lambda *a, **k: bar(*a, **{**k, "disable": True})  # no bar
    row = {k: job[k] for k in ("frames", "on_disk")}
    row["start_mb"] = Sampler.now()
    root = os.path.dirname(os.path.abspath(job["path"]))  # where the training program looks
    with Sampler() as s:
        t = time.perf_counter()
        AtomsDataset(root, job["path"], on_disk=job["on_disk"], force_reload=True)
        row["process_s"] = time.perf_counter() - t
    row["process_mb"] = s.peak
    val = job["val_size"]
    cfg = Config(data=job["path"], on_disk=job["on_disk"], train_size=job["frames"] - 2 * val,
                 val_size=val, test_size=val, time_budget=job["minutes"], batch_size=32,
                 ema=0.99, device="cpu", out=os.path.join(job["work"], "run"), plot=False)
    os.makedirs(cfg.out, exist_ok=True)
    with Sampler() as s:
        t = time.perf_counter()
        device = _setup(cfg)
        prep = prepare(cfg)
        row["prepare_s"] = time.perf_counter() - t
        tr = _trainer(cfg, prep, device)
        loaders, rng = make_loaders(cfg, prep, device)
        state = TrainState()
        train(tr, loaders, device, state, cfg, rng)
    row["train_mb"] = s.peak
    row["steps"] = state.steps
    row["val_forces_mae"] = state.history[-1]["val_forces_mae"]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000",
                   help="frames per file (default: 10000,100000,1000000)")
    p.add_argument("--memory-sizes", default="10000,100000",
                   help="sizes also run with the in-memory dataset (default: 10000,100000)")
    p.add_argument("--minutes", type=float, default=1.0,
                   help="training minutes per size (default: 1)")
    p.add_argument("--val-size", type=int, default=500,
                   help="validation and test frames (default: 500)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    p.add_argument("--work", default="/tmp/acn_disk_memory",
                   help="folder of the frame files and stores (default: /tmp/acn_disk_memory)")
    p.add_argument("--out", default=os.path.join(RESULTS, "disk_memory"),
                   help="output stem: .json and .md (default: benchmarks/results/disk_memory)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    in_memory = {int(x) for x in args.memory_sizes.split(",") if x}
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for n in sizes:
        path = os.path.join(args.work, f"frames_{n}.xyz")
        if not os.path.exists(path):
            t = time.perf_counter()
            write_frames(path, n)
            print(f"wrote {n} frames in {time.perf_counter() - t:.0f} s", flush=True)
        for on_disk in (True, False):
            if not on_disk and n not in in_memory:
                continue
            job = dict(frames=n, on_disk=on_disk, path=path, minutes=args.minutes,
                       val_size=args.val_size, threads=args.threads,
                       work=os.path.join(args.work, f"{n}_{'disk' if on_disk else 'memory'}"))
            with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process
                row = pool.apply(measure, (job,))
            row["file_mb"] = os.path.getsize(path) / 2 ** 20
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [f"Synthetic 9-atom frames with energies and forces; default AtomCloudNet trained "
             f"on both for {args.minutes:g} min after processing, {args.threads} CPU threads, "
             "batch 32. Peak memory of the process in MiB: private (RssAnon) / resident "
             "(VmRSS, with the store's touched file pages).", "",
             "| frames | dataset | file (MiB) | processing: private / resident | processing (s) "
             "| data preparation (s) | training: private / resident | steps |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['frames']:,} | {'on disk' if r['on_disk'] else 'in memory'} | "
            f"{r['file_mb']:.0f} | {r['process_mb']['RssAnon']:.0f} / "
            f"{r['process_mb']['VmRSS']:.0f} | {r['process_s']:.0f} | {r['prepare_s']:.1f} | "
            f"{r['train_mb']['RssAnon']:.0f} / {r['train_mb']['VmRSS']:.0f} | {r['steps']} |")
    save_results(args.out, args, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
