"""Test data shared by the test suites: random molecules, random rotations
and a few real QM9 molecules written in qm9pack's format. A module of its
own name, not conftest, so that test files of several folders import it
unambiguously."""
import os

import torch
from e3nn import o3

ELEMENTS = torch.tensor([1, 6, 7, 8, 9])
#: Molecules in :func:`write_qm9_source`'s files.
QM9_SUBSET_SIZE = 40


def random_molecule(num_atoms: int, seed: int, dtype=torch.float64, spread: float = 1.6,
                    min_dist: float = 0.9):
    """Random atoms with no two closer than ``min_dist`` Angstrom."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.empty(0, 3, dtype=dtype)
    while pos.size(0) < num_atoms:
        cand = spread * torch.randn(1, 3, generator=g, dtype=dtype)
        if pos.size(0) == 0 or torch.cdist(cand, pos).min() > min_dist:
            pos = torch.cat([pos, cand])
    z = ELEMENTS[torch.randint(len(ELEMENTS), (num_atoms,), generator=g)]
    return z, pos


def random_orthogonal(seed: int, reflect: bool, dtype=torch.float64):
    torch.manual_seed(seed)
    rot = o3.rand_matrix(dtype=dtype)
    return -rot if reflect else rot


def batch_of_molecules():
    """Three random molecules (5, 9 and 7 atoms), and their atoms batched:
    ``(molecules, z, pos, batch)``."""
    mols = [random_molecule(n, seed=s) for s, n in enumerate([5, 9, 7])]
    z = torch.cat([m[0] for m in mols])
    pos = torch.cat([m[1] for m in mols])
    batch = torch.cat([torch.full((m[0].numel(),), i) for i, m in enumerate(mols)])
    return mols, z, pos, batch


def write_qm9_source(out) -> str:
    """Writes the first :data:`QM9_SUBSET_SIZE` molecules of the installed
    qm9pack's CSVs to the folder :obj:`out`, split over two part files, and
    returns it as a string."""
    from acn_pyg.datasets.qm9 import qm9pack_data_dir

    src = qm9pack_data_dir()
    with open(os.path.join(src, "qm9_part1.csv")) as f:
        lines = [next(f) for _ in range(QM9_SUBSET_SIZE + 1)]
    (out / "qm9_part1.csv").write_text("".join(lines[:25]))
    (out / "qm9_part2.csv").write_text(lines[0] + "".join(lines[25:]))
    with open(os.path.join(src, "qm9_polarizability.csv")) as f:
        (out / "qm9_polarizability.csv").write_text("".join(next(f) for _ in range(200)))
    return str(out)
