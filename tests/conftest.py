import pytest
import torch

import molecules


@pytest.fixture
def molecule():
    return molecules.random_molecule(12, seed=0)


@pytest.fixture
def batch_of_molecules():
    return molecules.batch_of_molecules()


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Modules are built in float64 so that Clebsch-Gordan buffers are exact
    and symmetry tests can use tight tolerances (e3nn's test convention)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(12345)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="package")
def source_dir(tmp_path_factory):
    """The first molecules of the real qm9pack CSVs, split over two part files."""
    return molecules.write_qm9_source(tmp_path_factory.mktemp("qm9src"))
