"""Fixtures of the research tests: the research modules importable by name
(as the research scripts import them), random molecules, a few QM9
molecules on disk and tiny finished training runs."""
import dataclasses
import os
import pathlib
import sys

import pytest
import torch

RESEARCH = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(RESEARCH))

ELEMENTS = torch.tensor([1, 6, 7, 8, 9])
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


@pytest.fixture
def batch_of_molecules():
    mols = [random_molecule(n, seed=s) for s, n in enumerate([5, 9, 7])]
    z = torch.cat([m[0] for m in mols])
    pos = torch.cat([m[1] for m in mols])
    batch = torch.cat([torch.full((m[0].numel(),), i) for i, m in enumerate(mols)])
    return mols, z, pos, batch


@pytest.fixture(autouse=True)
def _float32():
    """Training runs in float32, as the training program does; the tests that
    need float64 ask for it themselves."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def tiny_config(source_dir, tmp_path_factory):
    """The config of a tiny run on :func:`source_dir`'s molecules (U0, 16
    training, 8 validation and 8 test molecules, 2 epochs, one 8-channel
    layer, no plot), with :obj:`out` and any other field given. Its time
    budget (an hour) never binds, so the learning-rate schedule follows the
    steps and two runs that should train the same model do."""
    from acn_pyg.train import Config

    root = str(tmp_path_factory.mktemp("qm9"))
    base = Config(train_size=16, val_size=8, test_size=8, epochs=2, batch_size=8,
                  hidden_channels=8, num_layers=1, time_budget=60.0, root=root,
                  data_source=source_dir, plot=False)

    def make(out, **fields):
        return dataclasses.replace(base, out=str(out), **fields)
    return make


@pytest.fixture
def two_seeded_runs(tiny_config, tmp_path):
    """Two finished tiny runs on one split, init seeds 0 and 7: their folders."""
    from acn_pyg.train import run

    runs = [str(tmp_path / f"run{seed}") for seed in (0, 7)]
    for seed, out in zip((0, 7), runs):
        run(tiny_config(out, init_seed=seed))
    return runs
