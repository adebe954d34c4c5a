"""AtomCloudCalculator: a trained model as an ASE calculator. Its forces are
the energy's gradient, geometry optimisation converges, and molecular
dynamics conserves the total energy."""
import ase
import numpy as np
import pytest
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from molecules import random_molecule

from acn_pyg import AtomCloudNet, save_model
from acn_pyg.ase import AtomCloudCalculator

ETHANOL = np.array([[-0.048, 0.577, 0.0], [-1.216, -0.376, 0.0], [1.136, -0.207, 0.0],
                    [-0.003, 1.225, 0.888], [-0.003, 1.225, -0.888],
                    [-2.165, 0.166, 0.0], [-1.173, -1.017, 0.883], [-1.173, -1.017, -0.883],
                    [1.862, 0.423, 0.0]])


def _checkpoint(tmp_path, name="m.pt", seed=0, energy=True, std=None):
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(seed)
    model = AtomCloudNet(hidden_channels=16, num_layers=2, cutoff=4.0, std=std)
    path = str(tmp_path / name)
    save_model(path, model, target="energy", unit="eV", energy=energy, elements=[1, 6, 8])
    return path


def _ethanol():
    return ase.Atoms("CCOHHHHHH", positions=ETHANOL)


def test_forces_are_minus_the_finite_difference_gradient(tmp_path):
    atoms = _ethanol()
    atoms.calc = AtomCloudCalculator(_checkpoint(tmp_path), device="cpu", dtype=torch.float64)
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-3  # not trivially zero
    h = 1e-5
    for i, k in [(0, 0), (3, 2), (8, 1)]:
        energies = []
        for step in (h, -h):
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.positions[i, k] += step
            energies.append(moved.get_potential_energy())
        assert forces[i, k] == pytest.approx(-(energies[0] - energies[1]) / (2 * h),
                                             rel=1e-6, abs=1e-9)


def test_the_calculator_is_rotation_and_translation_consistent(tmp_path):
    atoms = _ethanol()
    atoms.calc = AtomCloudCalculator(_checkpoint(tmp_path), device="cpu", dtype=torch.float64)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    turned = atoms.copy()
    turned.calc = atoms.calc
    turned.rotate(70, "z", center="COM")
    turned.rotate(20, "x")
    turned.translate([3.0, -1.0, 2.0])
    rot = np.linalg.lstsq(atoms.positions - atoms.positions.mean(0),
                          turned.positions - turned.positions.mean(0), rcond=None)[0]
    assert turned.get_potential_energy() == pytest.approx(energy, rel=1e-10)
    np.testing.assert_allclose(turned.get_forces(), forces @ rot, atol=1e-9)


def test_bfgs_converges(tmp_path):
    atoms = _ethanol()
    atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
    atoms.calc = AtomCloudCalculator(_checkpoint(tmp_path), device="cpu", dtype=torch.float64)
    start = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=0.01, steps=500)
    assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.01
    assert atoms.get_potential_energy() < start


def test_nve_dynamics_conserves_the_total_energy(tmp_path):
    atoms = _ethanol()
    # A steep energy surface (std), so that the atoms trade kinetic and potential energy.
    atoms.calc = AtomCloudCalculator(_checkpoint(tmp_path, std=30.0), device="cpu",
                                     dtype=torch.float64)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 0.25 * units.fs)
    total, kinetic = [], []
    for _ in range(100):
        dyn.run(2)
        total.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())
    assert np.ptp(kinetic) > 0.01  # the atoms move and exchange energy
    assert np.ptp(total) < 0.02 * np.ptp(kinetic)


def test_an_ensemble_reports_its_spread(tmp_path):
    paths = [_checkpoint(tmp_path, f"m{s}.pt", seed=s) for s in range(3)]
    atoms = _ethanol()
    calc = AtomCloudCalculator(paths, device="cpu")
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    members = []
    for p in paths:
        single = _ethanol()
        single.calc = AtomCloudCalculator(p, device="cpu")
        members.append(single.get_potential_energy())
    assert energy == pytest.approx(np.mean(members), rel=1e-6)
    assert calc.get_property("energy_std", atoms) == pytest.approx(np.std(members), rel=1e-4)
    assert calc.get_property("forces_std", atoms).shape == (9, 3)


def test_the_calculator_refuses_what_it_cannot_compute(tmp_path):
    with pytest.raises(ValueError, match="not a potential energy"):
        AtomCloudCalculator(_checkpoint(tmp_path, energy=False), device="cpu")
    calc = AtomCloudCalculator(_checkpoint(tmp_path), device="cpu")
    fluorine = ase.Atoms("CF4", positions=random_molecule(5, seed=0)[1].numpy())
    fluorine.calc = calc
    with pytest.raises(ValueError, match="F \\(Z=9\\)"):
        fluorine.get_potential_energy()
    periodic = _ethanol()
    periodic.set_cell([10, 10, 10])
    periodic.pbc = True
    periodic.calc = calc
    with pytest.raises(ValueError, match="periodic"):
        periodic.get_potential_energy()
