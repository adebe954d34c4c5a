import os
import warnings

import pytest
import torch
from torch_geometric.loader import DataLoader

from acn_pyg import AtomCloudNet
from acn_pyg.datasets import QM9, TARGETS, QM9Subset, save_qm9_subset, target_index
from acn_pyg.datasets.qm9 import content_sha256
from acn_pyg.transforms import ManyBodyFeatures

from molecules import QM9_SUBSET_SIZE as NUM_MOLECULES

HA_TO_EV = 27.211386246  # independent of acn_pyg.units on purpose


@pytest.fixture
def dataset(source_dir, tmp_path):
    return QM9(str(tmp_path / "qm9"), source_dir=source_dir)


def test_layout_and_known_values(dataset):
    assert len(dataset) == NUM_MOLECULES
    methane = dataset[0]
    assert methane.name == "gdb_1" and methane.smiles == "C" and int(methane.idx) == 0
    assert methane.z.tolist() == [6, 1, 1, 1, 1]
    assert methane.pos.shape == (5, 3) and methane.y.shape == (1, 19)
    torch.testing.assert_close(
        methane.pos[1], torch.tensor([0.002150416, -0.0060313176, 0.0019761204]).float())
    # Original units from the QM9 file dsgdb9nsd_000001.xyz (Hartree, Debye, a0^3, GHz).
    u0_ha, homo_ha, gap_ha = -40.47893, -0.3877, 0.5048
    u0_atoms_ha = -37.846772 + 4 * -0.500273
    expected = {"mu": 0.0, "alpha": 13.21, "homo": homo_ha * HA_TO_EV, "gap": gap_ha * HA_TO_EV,
                "U0": u0_ha * HA_TO_EV, "U0_atom": (u0_ha - u0_atoms_ha) * HA_TO_EV,
                "cv": 6.469, "A": 157.7118}
    for name, value in expected.items():
        assert methane.y[0, TARGETS.index(name)].item() == pytest.approx(value, rel=1e-6, abs=1e-5)
    # U0_atom of methane is about -392 kcal/mol (-17.17 eV).
    assert methane.y[0, 12].item() == pytest.approx(-17.172, abs=2e-3)
    water = dataset[2]
    assert water.z.tolist() == [8, 1, 1]
    torch.testing.assert_close(water.charges,
                               torch.tensor([-0.589706, 0.294853, 0.294853]).float())
    torch.testing.assert_close(water.polarizability, torch.tensor(
        [[[4.492, 0.0, 0.0], [0.0, 8.049, 0.0], [0.0, 0.0, 6.398]]], dtype=torch.float))
    assert water.frequencies.tolist() == pytest.approx([1671.4222, 3803.6305, 3907.698])


def test_atomref_like_pyg():
    ref = QM9.atomref("U0")
    assert ref.shape == (100, 1)
    assert ref[6, 0].item() == pytest.approx(-1029.86312267, rel=1e-7)
    assert QM9.atomref(7).equal(ref)
    assert QM9.atomref("gap") is None
    assert target_index("u0_atom") == 12 and target_index("3") == 3
    with pytest.raises(ValueError, match="unknown QM9 target"):
        target_index("energy")


def test_cache_is_reused_and_stale_or_corrupt_cache_rebuilt(dataset, source_dir):
    path = dataset.processed_paths[0]
    before = os.path.getmtime(path)
    again = QM9(dataset.root, source_dir=source_dir)
    assert os.path.getmtime(path) == before and len(again) == NUM_MOLECULES
    with open(path, "wb") as f:
        f.write(b"not a torch file")
    with pytest.warns(UserWarning, match="stale or corrupt"):
        rebuilt = QM9(dataset.root, source_dir=source_dir)
    assert torch.equal(rebuilt[5].pos, dataset[5].pos)
    with pytest.warns(UserWarning, match="stale or corrupt.*differs in: pre_transform\\)"):
        with_features = QM9(dataset.root, source_dir=source_dir, pre_transform=ManyBodyFeatures())
    assert with_features[3].many_body.shape == (with_features[3].z.numel(), 3)


def patch_in_place(path, tensor, index, value):
    """Overwrites, inside the file :obj:`path`, the bytes of element
    :obj:`index` of :obj:`tensor` (whose bytes the file holds once) with
    :obj:`value`, leaving every other byte as it was."""
    with open(path, "rb") as f:
        raw = f.read()
    array = tensor.numpy()
    start = raw.find(array.tobytes())
    assert start >= 0 and raw.find(array.tobytes(), start + 1) < 0
    changed = array.copy()
    changed.flat[index] = value
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(changed.tobytes())


@pytest.mark.parametrize("field, index, value", [("z", 7, 42), ("pos", 10, 123.0)])
def test_cache_with_a_changed_byte_is_rebuilt(dataset, source_dir, field, index, value):
    path = dataset.processed_paths[0]
    patch_in_place(path, dataset._data[field], index, value)
    with pytest.warns(UserWarning, match=f"QM9 cache {path} is stale or corrupt: .*SHA-256"):
        rebuilt = QM9(dataset.root, source_dir=source_dir)
    for key in ("z", "pos", "y", "charges", "frequencies"):
        assert torch.equal(rebuilt._data[key], dataset._data[key])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache loads without a warning
        QM9(dataset.root, source_dir=source_dir)


def test_cache_with_an_element_qm9_cannot_hold_is_rebuilt(dataset, source_dir):
    # A cache whose checksum matches a z of 42 (written by other code).
    path = dataset.processed_paths[0]
    blob = torch.load(path, weights_only=True)
    blob["data"]["z"][3] = 42
    blob["sha256"] = content_sha256({"data": blob["data"], "slices": blob["slices"]})
    torch.save(blob, path)
    with pytest.warns(UserWarning, match="other than those of H, C, N, O, F \\(42 at atom 3\\)"):
        rebuilt = QM9(dataset.root, source_dir=source_dir)
    assert torch.equal(rebuilt._data["z"], dataset._data["z"])


def test_subset_file_with_a_changed_byte_is_refused(dataset, tmp_path):
    path = str(tmp_path / "subset.pt")
    save_qm9_subset(dataset, [0, 2, 5, 7], path)
    subset = QM9Subset(path)
    assert len(subset) == 4 and torch.equal(subset[1].pos, dataset[2].pos)
    patch_in_place(path, subset._data["pos"], 4, 123.0)
    with pytest.raises(ValueError, match=f"QM9 subset file {path} is corrupt: .*SHA-256"):
        QM9Subset(path)
    blob = torch.load(path, weights_only=True)
    blob["z"][0] = 42
    blob["sha256"] = content_sha256({k: blob[k] for k in blob if k not in ("format", "sha256")})
    torch.save(blob, path)
    with pytest.raises(ValueError, match="other than those of H, C, N, O, F"):
        QM9Subset(path)
    blob["format"] = "acn_pyg.qm9_subset.v1"
    del blob["sha256"]
    torch.save(blob, path)
    with pytest.raises(ValueError, match="without the checksum.*write it again"):
        QM9Subset(path)
    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match=f"QM9 subset file {path} cannot be read"):
        QM9Subset(path)


def test_cache_write_cut_short_leaves_the_old_cache_whole(dataset, monkeypatch):
    path = dataset.processed_paths[0]
    with open(path, "rb") as f:
        before = f.read()

    def cut_short(obj, f):
        f.write(b"half a cache")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", cut_short)
    with pytest.raises(KeyboardInterrupt):
        dataset.process()
    with open(path, "rb") as f:
        assert f.read() == before
    assert not [name for name in os.listdir(os.path.dirname(path)) if ".part" in name]


def test_pre_filter_and_fast_path_agree(dataset, source_dir, tmp_path):
    filtered = QM9(str(tmp_path / "filtered"), source_dir=source_dir,
                   pre_filter=lambda d: d.z.numel() > 4)
    kept = [d for d in dataset if d.z.numel() > 4]
    assert len(filtered) == len(kept)
    for a, b in zip(filtered, kept):
        assert a.name == b.name and torch.equal(a.pos, b.pos) and torch.equal(a.y, b.y)


def test_model_trains_on_loader_batches(dataset):
    loader = DataLoader(dataset, batch_size=8)
    batch = next(iter(loader))
    model = AtomCloudNet(hidden_channels=16, num_layers=1, atomref=QM9.atomref("U0"))
    out = model(batch.z, batch.pos.double(), batch.batch)
    assert out.shape == (8, 1)
