import os

import pytest
import torch
from e3nn import o3

ELEMENTS = torch.tensor([1, 6, 7, 8, 9])


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


@pytest.fixture
def molecule():
    return random_molecule(12, seed=0)


@pytest.fixture
def batch_of_molecules():
    mols = [random_molecule(n, seed=s) for s, n in enumerate([5, 9, 7])]
    z = torch.cat([m[0] for m in mols])
    pos = torch.cat([m[1] for m in mols])
    batch = torch.cat([torch.full((m[0].numel(),), i) for i, m in enumerate(mols)])
    return mols, z, pos, batch


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Modules are built in float64 so that Clebsch-Gordan buffers are exact
    and symmetry tests can use tight tolerances (e3nn's test convention)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(12345)
    yield
    torch.set_default_dtype(old)


QM9_SUBSET_SIZE = 40


@pytest.fixture(scope="package")
def source_dir(tmp_path_factory):
    """The first molecules of the real qm9pack CSVs, split over two part files."""
    from acn_pyg.datasets.qm9 import qm9pack_data_dir

    src = qm9pack_data_dir()
    out = tmp_path_factory.mktemp("qm9src")
    with open(os.path.join(src, "qm9_part1.csv")) as f:
        lines = [next(f) for _ in range(QM9_SUBSET_SIZE + 1)]
    (out / "qm9_part1.csv").write_text("".join(lines[:25]))
    (out / "qm9_part2.csv").write_text(lines[0] + "".join(lines[25:]))
    with open(os.path.join(src, "qm9_polarizability.csv")) as f:
        (out / "qm9_polarizability.csv").write_text("".join(next(f) for _ in range(200)))
    return str(out)
