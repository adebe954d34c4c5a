"""AtomsDataset: structures and their properties from files ASE reads."""
import os

import numpy as np
import pytest
import torch

import ase
import ase.io
from ase.calculators.singlepoint import SinglePointCalculator
from molecules import random_molecule
from torch_geometric.loader import DataLoader

from acn_pyg.datasets import AtomsDataset


def frames(count=4, sizes=(3, 5, 4, 6), pbc=False):
    """Molecules with an energy and forces (calculator results), per-atom
    charges (arrays), a dipole and a polarizability (info)."""
    out = []
    for i in range(count):
        z, pos = random_molecule(sizes[i % len(sizes)], seed=i)
        atoms = ase.Atoms(numbers=z.numpy(), positions=pos.numpy(), pbc=pbc)
        rng = np.random.default_rng(i)
        atoms.arrays["charges_ref"] = rng.normal(size=len(atoms))
        atoms.info["dipole_ref"] = rng.normal(size=3)
        atoms.info["polar_ref"] = rng.normal(size=(3, 3))
        atoms.calc = SinglePointCalculator(atoms, energy=-100.0 * (i + 1) + 1e-6,
                                           forces=rng.normal(size=(len(atoms), 3)))
        out.append(atoms)
    return out


def test_extended_xyz_round_trip(tmp_path):
    written = frames()
    path = tmp_path / "train.xyz"
    ase.io.write(path, written, format="extxyz")
    data = AtomsDataset(tmp_path / "root", str(path),
                        properties={"energy": "energy", "forces": "forces",
                                    "charges": "charges_ref", "dipole": "dipole_ref",
                                    "polarizability": "polar_ref"})
    assert len(data) == 4
    for i, (atoms, d) in enumerate(zip(written, data)):
        assert d.idx.item() == i
        assert torch.equal(d.z, torch.from_numpy(atoms.numbers))
        torch.testing.assert_close(d.pos, torch.from_numpy(atoms.positions).float())
        assert d.energy.shape == (1, 1) and d.energy.dtype == torch.float64
        assert d.energy.item() == atoms.get_potential_energy()  # float64 kept exactly
        torch.testing.assert_close(d.forces, torch.from_numpy(atoms.get_forces()))
        assert d.charges.shape == (len(atoms), 1)
        torch.testing.assert_close(d.dipole, torch.from_numpy(atoms.info["dipole_ref"])[None])
        torch.testing.assert_close(d.polarizability,
                                   torch.from_numpy(atoms.info["polar_ref"])[None])
    batch = next(iter(DataLoader(data, batch_size=4)))
    n = sum(len(a) for a in written)
    assert batch.energy.shape == (4, 1) and batch.forces.shape == (n, 3)
    assert batch.charges.shape == (n, 1) and batch.dipole.shape == (4, 3)
    assert batch.polarizability.shape == (4, 3, 3) and batch.pos.shape == (n, 3)


def test_an_ase_database_reads_the_same(tmp_path):
    written = frames(3)
    ase.io.write(tmp_path / "train.xyz", written, format="extxyz")
    ase.io.write(tmp_path / "train.db", written)
    a = AtomsDataset(tmp_path / "root", str(tmp_path / "train.xyz"))
    b = AtomsDataset(tmp_path / "root", str(tmp_path / "train.db"))
    for x, y in zip(a, b):
        torch.testing.assert_close(x.energy, y.energy)
        torch.testing.assert_close(x.forces, y.forces)


def test_the_cache_is_reused_and_rebuilt_when_the_file_changes(tmp_path):
    path = tmp_path / "train.xyz"
    ase.io.write(path, frames(3), format="extxyz")
    first = AtomsDataset(tmp_path / "root", str(path))
    cache = first.processed_paths[0]
    os.utime(cache, ns=(1, 1))  # a rewrite would set the current time
    again = AtomsDataset(tmp_path / "root", str(path))
    assert again.processed_paths[0] == cache and len(again) == 3
    assert os.stat(cache).st_mtime_ns == 1
    ase.io.write(path, frames(4), format="extxyz")
    with pytest.warns(UserWarning, match="stale or corrupt.*source_sha256"):
        changed = AtomsDataset(tmp_path / "root", str(path))
    assert len(changed) == 4


@pytest.mark.parametrize("edit, match", [
    (lambda f: f[2].calc.results.pop("forces"), r"frame 2 has no 'forces'.*it has: .*energy"),
    (lambda f: f[1].calc.results.update(energy=float("nan")), r"frame 1: 'energy' holds NaN"),
    (lambda f: f[3].calc.results["forces"].__setitem__((0, 1), np.inf),
     r"frame 3: 'forces' holds NaN or infinite"),
])
def test_bad_frames_are_named(tmp_path, edit, match):
    written = frames()
    edit(written)
    path = tmp_path / "bad.xyz"
    ase.io.write(path, written, format="extxyz")
    with pytest.raises(ValueError, match=match):
        AtomsDataset(tmp_path / "root", str(path))


def test_periodic_frames_are_refused(tmp_path):
    written = frames(2)
    written[1].pbc = True
    written[1].cell = np.eye(3) * 20.0
    path = tmp_path / "cell.xyz"
    ase.io.write(path, written, format="extxyz")
    with pytest.raises(ValueError, match=r"frame 1 is periodic.*not supported"):
        AtomsDataset(tmp_path / "root", str(path))


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="no structure file"):
        AtomsDataset(tmp_path / "root", str(tmp_path / "missing.xyz"))
    path = tmp_path / "train.xyz"
    ase.io.write(path, frames(2), format="extxyz")
    with pytest.raises(ValueError, match="reserved"):
        AtomsDataset(tmp_path / "root", str(path), properties={"pos": "forces"})
    with pytest.raises(ValueError, match="frame 0 has no 'dipole'"):
        AtomsDataset(tmp_path / "root", str(path), properties=["energy", "dipole"])


PROPERTIES = {"energy": "energy", "forces": "forces", "charges": "charges_ref",
              "dipole": "dipole_ref", "polarizability": "polar_ref"}


def test_an_on_disk_store_reads_what_memory_holds(tmp_path):
    import pickle

    path = tmp_path / "train.xyz"
    ase.io.write(path, frames(9), format="extxyz")
    memory = AtomsDataset(tmp_path / "root", str(path), properties=PROPERTIES)
    disk = AtomsDataset(tmp_path / "root", str(path), properties=PROPERTIES, on_disk=True)
    assert disk.processed_paths[0] != memory.processed_paths[0] and len(disk) == 9

    def same(a, b):
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    for a, b in zip(memory, disk):
        same(a, b)
    assert disk._data_list is None  # nothing read is kept
    # A subset pickles without its data (as DataLoader workers get it) and reopens the store.
    subset = disk[torch.tensor([7, 2, 5])]
    copy = pickle.loads(pickle.dumps(subset))
    assert len(pickle.dumps(subset)) < 2000
    for i, j in enumerate([7, 2, 5]):
        same(copy[i], memory[j])
    batches = [list(DataLoader(d, batch_size=4, num_workers=w)) for d, w in
               ((memory, 0), (disk, 2))]
    for a, b in zip(*batches):
        same(a, b)


def test_the_store_is_checked_and_rebuilt(tmp_path):
    path = tmp_path / "train.xyz"
    ase.io.write(path, frames(5), format="extxyz")
    disk = AtomsDataset(tmp_path / "root", str(path), on_disk=True)
    expected = disk[3].forces.clone()
    with open(os.path.join(disk.store, "forces.bin"), "r+b") as f:  # one byte changed
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.warns(UserWarning, match="stale or corrupt: the files of 'forces' do not match"):
        again = AtomsDataset(tmp_path / "root", str(path), on_disk=True)
    assert torch.equal(again[3].forces, expected)
    ase.io.write(path, frames(6), format="extxyz")
    with pytest.warns(UserWarning, match="differs in: source_sha256"):
        assert len(AtomsDataset(tmp_path / "root", str(path), on_disk=True)) == 6


def test_the_store_refuses_what_it_cannot_hold(tmp_path):
    def with_bonds(data):
        n = data.num_nodes
        data.edge_index = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n),
                                                     indexing="ij")).reshape(2, -1)
        return data

    path = tmp_path / "train.xyz"
    ase.io.write(path, frames(3), format="extxyz")
    with pytest.raises(ValueError, match=r"frame 0: attribute 'edge_index' is not concatenated"):
        AtomsDataset(tmp_path / "root", str(path), pre_transform=with_bonds, on_disk=True)
    with pytest.raises(ValueError, match=r"frame 1 has no 'forces'"):
        written = frames(3)
        written[1].calc.results.pop("forces")
        ase.io.write(path, written, format="extxyz")
        AtomsDataset(tmp_path / "root2", str(path), on_disk=True)
    assert not any(name.endswith(".part") for name in os.listdir(tmp_path / "root2" / "processed"))
