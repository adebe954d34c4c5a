"""Molecular-dynamics data in the manner of rMD17, made offline: each
molecule (from SMILES, embedded by RDKit) is relaxed and then run by Langevin
dynamics at 500 K (1 fs steps, centre of mass fixed) with GFN2-xTB forces (the tblite package's ASE
calculator); after an equilibration, a frame is kept every --every steps.
Written as extended XYZ (energy in eV, forces in eV/A), one file a molecule,
which ``acn-pyg train --data FILE`` and ``benchmarks/forces.py`` read.

    python benchmarks/md_data.py --out data/md

Needs ``pip install tblite rdkit``.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

MOLECULES = {"ethanol": "CCO", "malonaldehyde": "O=CCC=O",
             "aspirin": "CC(=O)Oc1ccccc1C(=O)O"}


def embed(smiles: str, seed: int):
    """An :class:`ase.Atoms` of :obj:`smiles` with hydrogens, embedded in 3D
    by RDKit's ETKDG."""
    import ase
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise RuntimeError(f"RDKit could not embed {smiles!r}")
    AllChem.MMFFOptimizeMolecule(mol)
    return ase.Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()],
                     positions=mol.GetConformer().GetPositions())


def trajectory(name: str, smiles: str, frames: int, every: int, equilibrate: int,
               temperature: float, timestep_fs: float, seed: int, out: str) -> dict:
    """Runs one molecule and writes ``out/<name>.xyz``; returns what it did."""
    import ase.io
    import numpy as np
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    atoms = embed(smiles, seed)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    start = time.perf_counter()
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=500)
    thermalize_momenta(atoms, temperature, rng=np.random.default_rng(seed))
    atoms.set_constraint(FixCom())  # no drift of the whole molecule
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=0.01,
                   fixcm=False, rng=np.random.default_rng(seed + 1))
    dyn.run(equilibrate)
    kept = []
    for _ in range(frames):
        dyn.run(every)
        frame = atoms.copy()
        frame.set_constraint()
        # The calculator's forces, not FixCom's projection of them: that projection
        # (F_i - m_i lambda) is no gradient of the energy and would put a floor under
        # every model's force error.
        forces = atoms.get_forces(apply_constraint=False)
        net = float(np.abs(forces.sum(axis=0)).max())
        if net > 1e-3:
            raise RuntimeError(f"{name}: net force {net:.2e} eV/A on frame {len(kept)}; "
                               "the forces are not translation invariant")
        frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(),
                                           forces=forces)
        kept.append(frame)
    path = os.path.join(out, f"{name}.xyz")
    ase.io.write(path, kept, format="extxyz")
    forces = np.concatenate([f.get_forces() for f in kept])
    return {"molecule": name, "smiles": smiles, "atoms": len(atoms), "frames": frames,
            "path": path, "steps": equilibrate + frames * every,
            "frame_spacing_fs": every * timestep_fs, "seconds": time.perf_counter() - start,
            "force_rms_eV_A": float(np.sqrt((forces ** 2).mean())),
            "net_force_max_eV_A": float(np.abs(forces.reshape(frames, -1, 3).sum(1)).max()),
            "energy_std_eV": float(np.std([f.get_potential_energy() for f in kept]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecules", default=",".join(MOLECULES),
                   help=f"names among {', '.join(MOLECULES)} (default: all)")
    p.add_argument("--frames", type=int, default=1400, help="frames a molecule (default: 1400)")
    p.add_argument("--every", type=int, default=20,
                   help="MD steps between frames (default: 20, i.e. 20 fs)")
    p.add_argument("--equilibrate", type=int, default=1000,
                   help="MD steps before the first frame (default: 1000, i.e. 1 ps)")
    p.add_argument("--temperature", type=float, default=500.0, help="K (default: 500)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--out", default="data/md", help="output folder (default: data/md)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    runs = []
    for name in args.molecules.split(","):
        if name not in MOLECULES:
            p.error(f"unknown molecule {name!r}: choose among {', '.join(MOLECULES)}")
        runs.append(trajectory(name, MOLECULES[name], args.frames, args.every,
                               args.equilibrate, args.temperature, args.timestep, args.seed,
                               args.out))
        r = runs[-1]
        print(f"{name}: {r['atoms']} atoms, {r['frames']} frames every {r['frame_spacing_fs']:g} "
              f"fs, force RMS {r['force_rms_eV_A']:.3f} eV/A, energy std "
              f"{r['energy_std_eV']:.3f} eV, {r['seconds'] / 60:.1f} min -> {r['path']}",
              flush=True)
    with open(os.path.join(args.out, "md_data.json"), "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "method": "GFN2-xTB (tblite)",
                   "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
