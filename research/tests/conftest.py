"""Fixtures of the research tests: the research modules importable by name
(as the research scripts import them), random molecules, a few QM9
molecules on disk and tiny finished training runs."""
import dataclasses
import pathlib
import sys

import pytest
import torch

RESEARCH = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(RESEARCH))
sys.path.insert(0, str(RESEARCH.parent / "tests"))  # the shared test data: molecules.py
import molecules  # noqa: E402


@pytest.fixture
def batch_of_molecules():
    return molecules.batch_of_molecules()


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
    return molecules.write_qm9_source(tmp_path_factory.mktemp("qm9src"))


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
