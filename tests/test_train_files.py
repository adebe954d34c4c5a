"""Training on a structure file: energies and forces, through the same loop
as QM9 (acn_pyg.train with --data PATH, and the acn-pyg train command)."""
import json

import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator

from molecules import random_molecule

from acn_pyg import AtomCloudNet
from acn_pyg.train import Config, check_config, run
from acn_pyg.train.cli import main
from acn_pyg.train.tasks import EnergyForcesTask


@pytest.fixture(autouse=True)
def _float32():
    torch.set_default_dtype(torch.float32)


def write_frames(path, count=48, seed=0, numbers=None):
    """Displaced geometries of two small molecules with Lennard-Jones
    energies and forces (consistent: the forces are minus the gradient)."""
    rng = np.random.default_rng(seed)
    bases = [random_molecule(n, seed=s, min_dist=1.1) for s, n in ((0, 5), (1, 7))]
    frames = []
    for i in range(count):
        z, pos = bases[i % 2]
        atoms = ase.Atoms(numbers=z.numpy() if numbers is None else numbers[:len(z)],
                          positions=pos.numpy() + rng.normal(scale=0.05, size=pos.shape))
        atoms.calc = LennardJones(sigma=1.0, epsilon=0.05, rc=5.0, smooth=True)
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy + 0.3 * len(atoms),
                                           forces=forces)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def tiny(path, tmp_path, **kwargs):
    values = dict(data=path, train_size=32, val_size=8, test_size=8, epochs=2, batch_size=8,
                  hidden_channels=8, num_layers=1, time_budget=60.0, ema=0.0, device="cpu",
                  out=str(tmp_path / "run"), plot=False)
    values.update(kwargs)
    return Config(**values)


def test_the_force_loss_has_the_gradient_of_its_value():
    """The loss goes through a double backward: its parameter gradient
    matches finite differences."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = AtomCloudNet(hidden_channels=4, num_layers=1, cutoff=3.0)
    z, pos = random_molecule(5, seed=3)
    from torch_geometric.data import Batch, Data
    data = Batch.from_data_list([Data(z=z, pos=pos, energy=torch.tensor([[0.3]]),
                                      forces=torch.randn(5, 3, dtype=torch.float64))])
    task = EnergyForcesTask(1.0, 10.0, scale=0.5)
    weight = model.convs[0].radial.lin1.weight
    loss = task.loss(model, data)
    grad, = torch.autograd.grad(loss, weight)
    eps = 1e-6
    for index in [(0, 0), (3, 2)]:
        values = []
        for step in (eps, -2 * eps):
            with torch.no_grad():
                weight[index] += step
            values.append(task.loss(model, data).item())
        with torch.no_grad():
            weight[index] += eps
        up, down = values
        assert grad[index].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)


def test_training_on_forces_lowers_the_force_error(tmp_path):
    path = write_frames(tmp_path / "lj.xyz")
    before = run(tiny(path, tmp_path, epochs=1, lr=1e-6, out=str(tmp_path / "before")))
    after = run(tiny(path, tmp_path, epochs=40, lr=3e-3))
    assert after["test_forces_mae"] < 0.6 * before["test_forces_mae"]
    # The energy's error is reported; with the forces weighted 100 to 1 and
    # 160 steps it may end above the untrained model's, depending on the seed.
    assert np.isfinite(after["test_energy_mae"])
    assert {"test_energy_rmse", "test_forces_rmse", "train_forces_mae",
            "baseline_test_energy_mae"} <= set(after)
    history = after["history"][-1]
    assert history["val_mae"] == history["val_forces_mae"]  # selected on forces


@pytest.mark.parametrize("weights, present, absent", [
    ({"forces_weight": 0.0}, "test_energy_mae", "test_forces_mae"),
    ({"energy_weight": 0.0}, "test_forces_mae", "test_energy_mae"),
])
def test_energies_alone_and_forces_alone(tmp_path, weights, present, absent):
    path = write_frames(tmp_path / "lj.xyz")
    metrics = run(tiny(path, tmp_path, **weights))
    assert present in metrics and absent not in metrics
    assert np.isfinite(metrics[present])


@pytest.mark.parametrize("model", ["schnet", "dimenet++"])
def test_the_baselines_train_on_forces_through_the_same_loop(tmp_path, model):
    path = write_frames(tmp_path / "lj.xyz")
    metrics = run(tiny(path, tmp_path, model=model, epochs=1))
    assert np.isfinite(metrics["test_forces_mae"]) and metrics["model"] == model


def test_the_command_line_trains_on_a_file(tmp_path, capsys):
    path = write_frames(tmp_path / "lj.xyz")
    out = tmp_path / "cli"
    assert main(["train", "--data", path, "--train-size", "32", "--val-size", "8",
                 "--test-size", "8", "--epochs", "1", "--batch-size", "8",
                 "--hidden-channels", "8", "--num-layers", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "test forces (acn): MAE" in printed and "per-element linear baseline" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["data"] == path
    assert (out / "forces_parity.png").exists() and (out / "best.pt").exists()


def test_bad_file_runs_are_refused_naming_the_problem(tmp_path):
    path = write_frames(tmp_path / "lj.xyz")
    with pytest.raises(ValueError, match="no file at"):
        check_config(tiny(str(tmp_path / "missing.xyz"), tmp_path))
    with pytest.raises(ValueError, match="both 0"):
        check_config(tiny(path, tmp_path, energy_weight=0.0, forces_weight=0.0))
    with pytest.raises(ValueError, match="--compile"):
        check_config(tiny(path, tmp_path, compile=True))
    with pytest.raises(ValueError, match=r"frame \d+ has no 'dft_forces'"):
        run(tiny(path, tmp_path, forces_key="dft_forces"))
    # A test structure with an element that no training structure holds.
    odd = write_frames(tmp_path / "odd.xyz", count=48)
    frames = ase.io.read(odd, index=":")
    from acn_pyg.train import split_indices
    frames[int(split_indices(48, 32, 8, 8, seed=0)["test"][0])].numbers[0] = 17
    ase.io.write(odd, frames, format="extxyz")
    with pytest.raises(ValueError, match="atomic number 17, which no training structure"):
        run(tiny(odd, tmp_path, train_size=32, val_size=8, test_size=8, seed=0))


def test_reference_energies_given_or_fitted(tmp_path):
    from acn_pyg.train import prepare
    path = write_frames(tmp_path / "lj.xyz")
    fitted = prepare(tiny(path, tmp_path))
    # The frames' energies are the LJ energy plus 0.3 eV an atom: the fit finds it.
    assert fitted.atomref[fitted.baseline.elements[0]].item() == pytest.approx(0.3, abs=0.05)
    elements = fitted.baseline.elements
    text = ",".join(f"{z}:{-1.5 * z}" for z in elements)
    given = prepare(tiny(path, tmp_path, reference_energies=text))
    for z in elements:
        assert given.atomref[z].item() == -1.5 * z
    with pytest.raises(ValueError, match="lacks the elements"):
        prepare(tiny(path, tmp_path, reference_energies=f"{elements[0]}:-1.0"))
    with pytest.raises(ValueError, match="is not ELEMENT:ENERGY"):
        prepare(tiny(path, tmp_path, reference_energies="Xx:-1.0"))


def test_a_file_run_killed_and_resumed_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    import acn_pyg.train.loop as loop
    path = write_frames(tmp_path / "lj.xyz")
    whole = run(tiny(path, tmp_path, epochs=3, out=str(tmp_path / "whole")))
    real_save_last, saved = loop.save_last, []

    def save_then_die(*a, **k):
        real_save_last(*a, **k)
        saved.append(a[0])
        raise KeyboardInterrupt  # after the first epoch's checkpoint

    monkeypatch.setattr(loop, "save_last", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tiny(path, tmp_path, epochs=3, out=str(tmp_path / "cut")))
    monkeypatch.setattr(loop, "save_last", real_save_last)
    resumed = run(tiny(path, tmp_path, epochs=3, out=str(tmp_path / "cut"), resume=True))
    for key in ("epoch", "train_loss", "val_forces_mae"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in whole["history"]]
    assert resumed["test_forces_mae"] == whole["test_forces_mae"]


def test_an_on_disk_store_trains_the_same_run(tmp_path, monkeypatch):
    """--on-disk reads the structures lazily from a store: the same run as
    in memory; the statistics over chunks of structures equal one chunk's."""
    import acn_pyg.train.data as data
    from acn_pyg.train import prepare

    path = write_frames(tmp_path / "lj.xyz")
    memory = run(tiny(path, tmp_path, out=str(tmp_path / "memory")))
    disk = run(tiny(path, tmp_path, out=str(tmp_path / "disk"), on_disk=True))
    for key in ("test_energy_mae", "test_forces_mae", "train_forces_mae", "best_val_mae"):
        assert disk[key] == memory[key]
    assert [h["val_mae"] for h in disk["history"]] == [h["val_mae"] for h in memory["history"]]

    whole = prepare(tiny(path, tmp_path, energy_weight=1.0, forces_weight=0.0))
    chunks = data._chunks
    monkeypatch.setattr(data, "_chunks", lambda indices: chunks(indices, 5))
    chunked = prepare(tiny(path, tmp_path, energy_weight=1.0, forces_weight=0.0))
    torch.testing.assert_close(chunked.atomref, whole.atomref, rtol=1e-9, atol=1e-9)
    assert chunked.std == pytest.approx(whole.std, rel=1e-9)
    forces = [prepare(tiny(path, tmp_path)).std]
    monkeypatch.setattr(data, "_chunks", chunks)
    forces.append(prepare(tiny(path, tmp_path)).std)
    assert forces[0] == pytest.approx(forces[1], rel=1e-12)
    # Against a direct least-squares fit of all training structures at once.
    z, batch, energy = data.molecule_arrays(whole.dataset, whole.split["train"], "energy")
    counts = data.element_counts(z, batch, whole.split["train"].numel(), whole.elements)
    direct = data.LinearBaseline(True, whole.elements).fit(counts, energy)
    torch.testing.assert_close(whole.baseline.coef, direct.coef, rtol=1e-7, atol=1e-9)
    residual = energy - direct.predict(counts)
    assert whole.std == pytest.approx(float(residual.std()), rel=1e-6)
