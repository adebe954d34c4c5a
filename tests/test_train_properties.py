"""Training on QM9's per-atom charges, polarizability tensor and dipole
moment through AtomCloudNet's output heads (acn-pyg train --target charges |
polarizability | mu)."""
import json

import pytest
import torch

from test_qm9_example import tiny_args

from acn_pyg import load_model
from acn_pyg.cli import main
from acn_pyg.train import Config, check_config, prepare, run_config
from acn_pyg.train.config import ANISOTROPIC_GRADIENT
from acn_pyg.train.experiment import build_model


@pytest.fixture(autouse=True)
def _float32():
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("target, output, unit", [("charges", "charges", "e"),
                                                  ("polarizability", "tensor", "a0^3"),
                                                  ("mu", "dipole", "D")])
def test_a_run_trains_tests_and_reloads_a_head(source_dir, tmp_path, capsys, target, output,
                                               unit):
    args = ["train", *tiny_args(source_dir, tmp_path, "--no-plot", "--epochs", "16"),
            "--target", target, "--lr", "3e-3"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["target"], metrics["unit"], metrics["output"]) == (target, unit, output)
    history = [h["train_loss"] for h in metrics["history"] if h["train_loss"] is not None]
    assert history[-1] < history[0]  # it learns
    if target == "polarizability":
        assert 0 < metrics["test_isotropic_mae"] <= metrics["test_mae"] + 1e-9
        # the kept checkpoint is the epoch of the lowest validation loss
        kept = min(metrics["history"], key=lambda h: h["val_objective"])
        assert metrics["best_val_mae"] == kept["val_mae"]
    model = load_model(str(tmp_path / "run"))
    assert model.output == output
    if target == "polarizability":  # the program's damping is saved with the model
        assert model.head.anisotropic_gradient == ANISOTROPIC_GRADIENT
    # The test error again, from the checkpoint alone.
    capsys.readouterr()
    assert main(["test", str(tmp_path / "run"), "--device", "cpu"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_mae"] == pytest.approx(metrics["test_mae"], rel=1e-6)


def test_the_references_of_charges_and_tensors_come_from_the_training_molecules(
        source_dir, tmp_path):
    base = dict(train_size=16, val_size=8, test_size=8, root=str(tmp_path / "qm9"),
                data_source=source_dir)
    prep = prepare(Config(target="charges", **base))
    z = torch.cat([prep.dataset[int(i)].z for i in prep.split["train"]])
    q = torch.cat([prep.dataset[int(i)].charges for i in prep.split["train"]]).double()
    for element in prep.elements:
        assert float(prep.atomref[element]) == pytest.approx(float(q[z == element].mean()))
    assert prep.std == pytest.approx(float((q - prep.atomref[z]).std()))
    prep = prepare(Config(target="polarizability", **base))
    assert prep.output == "tensor" and prep.unit == "a0^3"
    assert prepare(Config(target="mu", **base)).output == "dipole"
    assert prepare(Config(target="mu", output="scalar", **base)).output == "scalar"


@pytest.mark.parametrize("kwargs, message", [
    (dict(target="charges", model="schnet"), "needs an output head of AtomCloudNet"),
    (dict(target="gap", output="dipole"), "--output dipole"),
    (dict(target="polarizability", output="scalar"), "not one number a molecule"),
    (dict(output="vector"), "--output must be one of"),
    (dict(target="alpha", anisotropic_gradient=0.1), "has no traceless part"),
    (dict(target="polarizability", anisotropic_gradient=1.5), r"a factor in \[0, 1\]"),
])
def test_impossible_heads_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_config(Config(**kwargs))


@pytest.mark.parametrize("given, used", [(None, ANISOTROPIC_GRADIENT), (1.0, 1.0), (0.0, 0.0)])
def test_the_program_damps_the_traceless_pull_unless_told(given, used):
    cfg = Config(target="polarizability", anisotropic_gradient=given)
    check_config(cfg)
    model = build_model(cfg, False, 0.0, 1.0, None, "tensor")
    assert 0 < ANISOTROPIC_GRADIENT < 1 and model.head.anisotropic_gradient == used


def test_runs_from_before_the_heads_keep_their_scalar_output():
    cfg = run_config({"config": {"target": "mu", "model": "acn"}})
    assert cfg.output == "scalar"


def test_the_tensor_loss_does_not_depend_on_the_frame_of_the_reference():
    """QM9's tensors are in another frame than its positions: the loss
    compares principal values, the same whatever the reference's frame."""
    from e3nn import o3
    from torch_geometric.data import Batch, Data

    from acn_pyg import AtomCloudNet
    from acn_pyg.train.tasks import TensorTask
    from molecules import random_molecule
    torch.manual_seed(0)
    model = AtomCloudNet(hidden_channels=8, num_layers=1, output="tensor")
    z, pos = random_molecule(6, seed=0, dtype=torch.float32)
    a = torch.randn(3, 3)
    a = a + a.T
    rot = o3.rand_matrix()
    task = TensorTask(2.0)
    losses = [task.loss(model, Batch.from_data_list([Data(z=z, pos=pos, polarizability=t[None])]))
              for t in (a, rot @ a @ rot.T)]
    torch.testing.assert_close(losses[0], losses[1])
    losses[0].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _property_frames(path, count=40):
    """Small molecules whose charges, dipole and polarizability are smooth
    equivariant functions of the geometry (so a model can learn them), in
    the frame of the positions."""
    import ase
    import ase.io
    import numpy as np

    from molecules import random_molecule
    rng = np.random.default_rng(0)
    frames = []
    for k in range(count):
        z, pos = random_molecule(4 + k % 3, seed=k % 3, dtype=torch.float64, min_dist=1.1)
        pos = pos.numpy() + rng.normal(scale=0.1, size=pos.shape)
        q = 0.1 * (z.numpy() - z.numpy().mean())
        centred = pos - pos.mean(0)
        atoms = ase.Atoms(numbers=z.numpy(), positions=pos)
        atoms.arrays["charges"] = q
        atoms.info["dipole"] = (q[:, None] * centred).sum(0)
        atoms.info["polarizability"] = (np.eye(3) * len(z) + centred.T @ centred).reshape(-1)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return str(path)


@pytest.mark.parametrize("target", ["charges", "dipole", "polarizability"])
def test_a_structure_file_trains_a_head(tmp_path, capsys, target):
    from e3nn import o3

    from molecules import random_molecule
    path = _property_frames(tmp_path / "props.xyz")
    out = tmp_path / "run"
    assert main(["train", "--data", path, "--target", target, "--train-size", "24",
                 "--val-size", "8", "--test-size", "8", "--epochs", "6", "--batch-size", "8",
                 "--hidden-channels", "8", "--num-layers", "1", "--lr", "3e-3",
                 "--time-budget", "60", "--out", str(out), "--no-plot"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["target"] == target and metrics["data"] == path
    history = [h["train_loss"] for h in metrics["history"] if h["train_loss"] is not None]
    assert history[-1] < history[0]
    capsys.readouterr()
    assert main(["test", str(out), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["test_mae"] == pytest.approx(
        metrics["test_mae"], rel=1e-6)
    # The trained model's output turns with the molecule (files keep one frame).
    model = load_model(str(out))
    z, pos = random_molecule(5, seed=1, dtype=torch.float32)
    rot = o3.rand_matrix()
    with torch.no_grad():
        y, turned = model(z, pos), model(z, pos @ rot.T)
    expected = {"charges": lambda: y, "dipole": lambda: y @ rot.T,
                "polarizability": lambda: rot @ y @ rot.T}[target]()
    torch.testing.assert_close(turned, expected, rtol=1e-4, atol=1e-4)


def test_qm9_has_no_dipole_vectors():
    with pytest.raises(ValueError, match="--target mu"):
        check_config(Config(target="dipole"))


def test_a_files_charge_scale_is_that_of_its_per_atom_residuals(tmp_path):
    path = _property_frames(tmp_path / "props.xyz")
    prep = prepare(Config(data=path, target="charges", train_size=24, val_size=8, test_size=8))
    z = torch.cat([prep.dataset[int(i)].z for i in prep.split["train"]])
    q = torch.cat([prep.dataset[int(i)].charges.view(-1) for i in prep.split["train"]])
    assert prep.std == pytest.approx(float((q - prep.atomref[z]).std()))
    prep = prepare(Config(data=path, target="dipole", train_size=24, val_size=8, test_size=8))
    mu = torch.cat([prep.dataset[int(i)].dipole for i in prep.split["train"]])
    assert prep.std == pytest.approx(float(mu.pow(2).mean().sqrt()))


def test_the_tensor_validation_objective_is_the_loss_on_the_validation_set():
    from torch_geometric.data import Batch, Data

    from acn_pyg import AtomCloudNet
    from acn_pyg.train.tasks import TensorTask
    from molecules import random_molecule
    torch.manual_seed(0)
    model = AtomCloudNet(hidden_channels=8, num_layers=1, output="tensor").eval()
    data = []
    for seed, n in enumerate((5, 7, 4)):
        z, pos = random_molecule(n, seed=seed, dtype=torch.float32)
        a = torch.randn(3, 3)
        data.append(Data(z=z, pos=pos, polarizability=(a + a.T)[None]))
    batch = Batch.from_data_list(data)
    for frame_free in (True, False):
        task = TensorTask(2.0, anisotropic_std=5.0, frame_free=frame_free,
                          anisotropic_weight=0.7, shape_weight=1.5)
        scores = task.validate(model, [batch], "cpu")
        with torch.no_grad():
            loss = float(task.loss(model, batch))
        assert scores["val_objective"] == pytest.approx(loss, rel=1e-5)
        assert task.select in scores


def _tensor_loss_on_the_line_through_zero(task, reference, scales):
    """The task's loss for predictions s B + I tr(A)/3 (B the traceless part
    of the reference A, on its principal values) at each scale s."""
    class Fixed(torch.nn.Module):
        def __init__(self, tensor):
            super().__init__()
            self.tensor = tensor

        def forward(self, z, pos, batch):
            return self.tensor[None]

    from torch_geometric.data import Data
    iso = torch.eye(3, dtype=torch.float64) * reference.diagonal().mean()
    data = Data(z=torch.ones(1, dtype=torch.long), pos=torch.zeros(1, 3),
                batch=torch.zeros(1, dtype=torch.long), polarizability=reference[None])
    return torch.stack([task.loss(Fixed(iso + s * (reference - iso)), data) for s in scales])


@pytest.mark.parametrize("principal", [(-1.0, -1.0, 2.0), (-2.0, 1.0, 1.0), (-1.0, -0.5, 1.5)])
def test_the_shape_term_leaves_no_wrong_shape_minimum_on_the_line_through_zero(principal):
    """On sorted principal values, the negative of a prolate or oblate
    tensor at half its size fits better than zero, a local minimum; with
    the shape term the loss falls all the way from -B to B, and the
    minimum stays at the reference (shape and eigenvalue errors zero)."""
    from e3nn import o3

    from acn_pyg.train.tasks import TensorTask
    rot = o3.rand_matrix(dtype=torch.float64)
    reference = 10.0 * torch.eye(3, dtype=torch.float64) + rot @ torch.diag(
        torch.tensor(principal, dtype=torch.float64)) @ rot.T
    scales = torch.linspace(-1.5, 1.0, 251, dtype=torch.float64)
    plain = _tensor_loss_on_the_line_through_zero(TensorTask(1.0, shape_weight=0.0),
                                                  reference, scales)
    rises = (plain[1:] - plain[:-1] > 1e-9).any()
    assert rises, "without the shape term the loss rises somewhere on the way to B"
    shaped = _tensor_loss_on_the_line_through_zero(TensorTask(1.0, shape_weight=2.0),
                                                   reference, scales)
    assert (shaped[1:] - shaped[:-1] < 1e-9).all()
    assert float(shaped[-1]) == pytest.approx(0.0, abs=1e-9)
    # c(sB) = s c(B): odd in the sign, linear in the scale
    rest = torch.tensor(principal, dtype=torch.float64)
    rest = rest - rest.mean()
    for s in (-2.0, -0.5, 0.3, 3.0):
        torch.testing.assert_close(TensorTask.shape(s * rest[None]),
                                   s * TensorTask.shape(rest[None]))


def test_every_model_and_head_trained_at_one_seed_sees_the_same_batches(source_dir, tmp_path):
    """The training batches follow the seed, not the random numbers that
    building the model drew: a tensor head, a scalar model and SchNet at one
    seed are trained on the same batches, and another seed shuffles anew."""
    from acn_pyg.train.data import make_loaders
    from acn_pyg.train.experiment import _setup, _trainer

    def first_epoch(**kwargs):
        cfg = Config(train_size=16, val_size=8, test_size=8, batch_size=4,
                     hidden_channels=8, num_layers=1, root=str(tmp_path / "qm9"),
                     data_source=source_dir, **kwargs)
        device = _setup(cfg, torch.device("cpu"))
        prep = prepare(cfg)
        _trainer(cfg, prep, device)
        loaders, _ = make_loaders(cfg, prep, device)
        return [data.idx.tolist() for data in loaders["train"]]

    tensor = first_epoch(target="polarizability")
    assert len(tensor) == 4 and sorted(sum(tensor, [])) != sum(tensor, [])  # shuffled
    assert first_epoch(target="alpha") == tensor
    assert first_epoch(target="alpha", model="schnet") == tensor
    assert first_epoch(target="alpha", init_seed=1) != tensor
