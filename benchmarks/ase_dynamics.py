"""A trained energy model in ASE's tools (acn_pyg.ase.AtomCloudCalculator):
NVE molecular dynamics (velocity Verlet) from a frame of the data, and the
drift of the total energy over it; a BFGS geometry optimisation from the
same frame and, when tblite is installed, the GFN2-xTB forces at the
model's optimised geometry (how far the model's minimum is from the
reference's).

    python benchmarks/forces.py --data data/md            # trains runs/forces/*_acn
    python benchmarks/ase_dynamics.py --checkpoint runs/forces/ethanol_acn \\
        --structures data/md/ethanol.xyz

The drift is the slope of a straight line fitted to the total energy
against time, per atom; the fluctuation its standard deviation about that
line.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def nve(atoms, calc, timestep_fs: float, picoseconds: float, temperature: float,
        seed: int) -> dict:
    """Velocity-Verlet dynamics; the total energy every 10 steps."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature,
                                 rng=np.random.default_rng(seed))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
    steps = int(round(picoseconds * 1000 / timestep_fs))
    times, total, kinetic = [], [], []
    start = time.perf_counter()
    for k in range(0, steps + 1, 10):
        if k:
            dyn.run(10)
        times.append(k * timestep_fs / 1000)
        total.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())
    seconds = time.perf_counter() - start
    t, e = np.array(times), np.array(total)
    slope, intercept = np.polyfit(t, e, 1)
    n = len(atoms)
    return {"timestep_fs": timestep_fs, "picoseconds": picoseconds, "steps": steps,
            "temperature_K": temperature, "atoms": n,
            "drift_meV_per_atom_ps": 1e3 * slope / n,
            "fluctuation_meV_per_atom": 1e3 * float(np.std(e - (slope * t + intercept))) / n,
            "max_deviation_meV_per_atom": 1e3 * float(np.abs(e - e[0]).max()) / n,
            "mean_temperature_K": float(np.mean(kinetic) / (1.5 * n * units.kB)),
            "steps_per_s": steps / seconds}


def relax(atoms, calc, fmax: float) -> dict:
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calc
    start = time.perf_counter()
    opt = BFGS(atoms, logfile=None)
    converged = opt.run(fmax=fmax, steps=2000)
    out = {"fmax": fmax, "converged": bool(converged), "steps": opt.get_number_of_steps(),
           "seconds": time.perf_counter() - start,
           "model_energy_eV": float(atoms.get_potential_energy())}
    try:
        from tblite.ase import TBLite
    except ImportError:
        return out
    ref = atoms.copy()
    ref.calc = TBLite(method="GFN2-xTB", verbosity=0)
    forces = ref.get_forces()
    out["reference_fmax_at_model_minimum_eV_A"] = float(np.linalg.norm(forces, axis=1).max())
    BFGS(ref, logfile=None).run(fmax=fmax, steps=2000)
    d = ref.positions - atoms.positions
    out["rmsd_to_reference_minimum_A"] = float(np.sqrt((d ** 2).sum(1).mean()))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True,
                   help="run folder or checkpoint of an energy model (repeat for several)")
    p.add_argument("--structures", required=True, help="file of starting structures")
    p.add_argument("--frame", type=int, default=-1, help="which frame (default: the last)")
    p.add_argument("--timestep", type=float, default=0.5, help="fs (default: 0.5)")
    p.add_argument("--picoseconds", type=float, default=5.0, help="(default: 5)")
    p.add_argument("--temperature", type=float, default=300.0,
                   help="initial Maxwell-Boltzmann temperature, K (default: 300)")
    p.add_argument("--fmax", type=float, default=0.01, help="eV/A (default: 0.01)")
    p.add_argument("--threads", type=int, default=1, help="(default: 1)")
    p.add_argument("--out", default=os.path.join(RESULTS, "ase_dynamics"),
                   help="output stem: .json and .md (default: benchmarks/results/ase_dynamics)")
    args = p.parse_args(argv)

    import ase.io
    import torch

    from acn_pyg.ase import AtomCloudCalculator

    torch.set_num_threads(args.threads)
    start = ase.io.read(args.structures, index=args.frame)
    rows, lines = [], []
    for ckpt in args.checkpoint:
        for dtype in (torch.float32, torch.float64):
            calc = AtomCloudCalculator(ckpt, device="cpu", dtype=dtype)
            row = {"checkpoint": ckpt, "dtype": str(dtype).replace("torch.", ""),
                   "nve": nve(start, calc, args.timestep, args.picoseconds, args.temperature,
                              seed=0),
                   "bfgs": relax(start, calc, args.fmax)}
            rows.append(row)
            n, b = row["nve"], row["bfgs"]
            lines.append(
                f"| {os.path.basename(os.path.normpath(ckpt))} | {row['dtype']} | "
                f"{n['drift_meV_per_atom_ps']:+.4f} | {n['fluctuation_meV_per_atom']:.3f} | "
                f"{n['mean_temperature_K']:.0f} | {n['steps_per_s']:.0f} | "
                f"{b['steps']}{'' if b['converged'] else ' (not converged)'} | "
                + (f"{b['reference_fmax_at_model_minimum_eV_A']:.3f} | "
                   f"{b['rmsd_to_reference_minimum_A']:.3f} |"
                   if "rmsd_to_reference_minimum_A" in b else "- | - |"))
            print(lines[-1], flush=True)
    header = [f"NVE (velocity Verlet, {args.timestep:g} fs, {args.picoseconds:g} ps from "
              f"{args.temperature:g} K) and BFGS (fmax {args.fmax:g} eV/A) from frame "
              f"{args.frame} of {os.path.basename(args.structures)}, {args.threads} CPU thread",
              "", "| model | precision | drift (meV/atom/ps) | fluctuation (meV/atom) | "
              "mean T (K) | MD steps/s | BFGS steps | xTB fmax at model minimum (eV/A) | "
              "RMSD to xTB minimum (A) |", "| --- " * 9 + "|"]
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(header + lines) + "\n")
    print("\n".join(header + lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
