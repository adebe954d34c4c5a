"""Using a trained model: self-contained checkpoints (save_model,
load_model, the training program's best.pt), acn-pyg predict / test, and
ensembles."""
import json
import shutil

import ase
import ase.io
import numpy as np
import pytest
import torch

from molecules import random_molecule
from test_train_files import tiny, write_frames

from acn_pyg import AtomCloudNet, load_model, save_model
from acn_pyg.cli import main
from acn_pyg.inference import FORMAT, load_trained
from acn_pyg.inference.predict import predict_structures, read_structures
from acn_pyg.train import run


@pytest.fixture(autouse=True)
def _float32():
    torch.set_default_dtype(torch.float32)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A few epochs on a Lennard-Jones file: its run folder and data file."""
    torch.set_default_dtype(torch.float32)
    tmp = tmp_path_factory.mktemp("trained")
    path = write_frames(tmp / "frames.xyz", count=48)
    torch.manual_seed(0)
    run(tiny(path, tmp))
    return tmp / "run", path


def _model(**kwargs):
    torch.manual_seed(0)
    args = dict(hidden_channels=8, hidden_irreps="8x0e+4x1o", num_layers=2, cutoff=4.0,
                mean=0.5, std=2.0, atomref=torch.linspace(0, 1, 10))
    args.update(kwargs)
    return AtomCloudNet(**args).eval()


def _outputs(model, seed=1):
    z, pos = random_molecule(7, seed=seed, dtype=torch.float32)
    with torch.no_grad():
        return model(z, pos)


def test_a_saved_model_loads_as_plain_data_and_predicts_the_same(tmp_path):
    model = _model()
    path = str(tmp_path / "m.pt")
    save_model(path, model, target="U0", unit="eV", energy=True, elements=[1, 6, 8])
    raw = torch.load(path, weights_only=True)  # never unpickles code
    assert raw["model"]["name"] == "acn" and raw["acn_pyg_checkpoint"] == FORMAT
    trained = load_trained(path)
    assert (trained.target, trained.unit, trained.energy, trained.elements) == (
        "U0", "eV", True, (1, 6, 8))
    assert not trained.model.training
    torch.testing.assert_close(_outputs(trained.model), _outputs(model), rtol=0, atol=0)
    # The class method reads the same file.
    model.save(str(tmp_path / "again.pt"))
    torch.testing.assert_close(_outputs(AtomCloudNet.load(str(tmp_path / "again.pt"))),
                               _outputs(model), rtol=0, atol=0)


def test_a_model_with_a_custom_graph_cannot_be_saved(tmp_path):
    from acn_pyg import RadiusGraph
    model = AtomCloudNet(hidden_channels=8, num_layers=1, interaction_graph=RadiusGraph(3.0))
    with pytest.raises(ValueError, match="interaction_graph"):
        save_model(str(tmp_path / "m.pt"), model)


def test_newer_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    model = _model()
    path = tmp_path / "m.pt"
    save_model(str(path), model)
    ckpt = torch.load(path, weights_only=True)
    newer = dict(ckpt, acn_pyg_checkpoint=FORMAT + 1)
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match="newer than this acn_pyg reads"):
        load_model(str(tmp_path / "newer.pt"))
    # A module of a newer layout inside a current checkpoint.
    state = ckpt["state_dict"]
    state._metadata["convs.0.linear"]["version"] = 99
    torch.save(ckpt, tmp_path / "layout.pt")
    with pytest.raises(ValueError, match="layout version 99"):
        load_model(str(tmp_path / "layout.pt"))
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.pt is not a readable checkpoint"):
        load_model(str(tmp_path / "cut.pt"))
    torch.save({"epoch": 3, "model": {}}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="not a model checkpoint"):
        load_model(str(tmp_path / "last.pt"))
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path / "missing.pt"))


def test_the_training_programs_best_pt_is_self_contained(trained_run, tmp_path):
    run_dir, path = trained_run
    alone = tmp_path / "alone.pt"
    shutil.copy(run_dir / "best.pt", alone)  # no metrics.json, no data beside it
    trained = load_trained(str(alone))
    numbers = sorted({int(v) for a in ase.io.read(path, index=":") for v in a.numbers})
    assert trained.target == "energy" and trained.energy and list(trained.elements) == numbers
    assert trained.config["data"] == path
    # `acn-pyg test` recomputes the run's test errors from the checkpoint alone.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    from acn_pyg.inference.evaluation import test_checkpoint
    again = test_checkpoint(trained)
    for key in ("test_energy_mae", "test_forces_mae", "test_forces_rmse"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-6)


def test_predict_writes_csv_json_and_extxyz_that_agree(trained_run, tmp_path, capsys):
    run_dir, path = trained_run
    frames = ase.io.read(path, index=":6")
    ase.io.write(tmp_path / "in.xyz", frames)
    assert main(["predict", str(run_dir), str(tmp_path / "in.xyz"), "--quiet"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].split(",") == ["file", "frame", "formula", "num_atoms", "energy"]
    assert len(rows) == 7
    out_json, out_xyz = tmp_path / "p.json", tmp_path / "p.xyz"
    for out in (out_json, out_xyz):
        assert main(["predict", str(run_dir / "best.pt"), str(tmp_path / "in.xyz"),
                     "--forces", "--out", str(out), "--quiet"]) == 0
    pred = json.loads(out_json.read_text())
    assert pred["unit"] == "eV" and pred["forces_unit"] == "eV/A"
    back = ase.io.read(out_xyz, index=":")
    for row, atoms, frame in zip(pred["structures"], back, frames):
        assert float(rows[1 + row["frame"]].split(",")[-1]) == pytest.approx(row["energy"])
        assert atoms.get_potential_energy() == pytest.approx(row["energy"], rel=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), row["forces"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(atoms.positions, frame.positions)
    # The forces are minus the gradient of the predicted energy.
    model = load_model(str(run_dir))
    z = torch.tensor(frames[0].numbers)
    pos = torch.tensor(frames[0].positions, dtype=torch.float32, requires_grad=True)
    grad, = torch.autograd.grad(model(z, pos).sum(), pos)
    np.testing.assert_allclose(pred["structures"][0]["forces"], -grad.numpy(), rtol=1e-5,
                               atol=1e-6)


def test_an_ensemble_gives_the_mean_and_spread_of_its_members(trained_run, tmp_path):
    run_dir, path = trained_run
    first = load_trained(str(run_dir))
    other = tmp_path / "other.pt"
    with torch.no_grad():  # a second member with other weights
        model = load_model(str(run_dir))
        model.output_mlp[-1].bias.add_(0.01)
        model.convs[0].radial.lin1.weight.mul_(1.1)
    save_model(str(other), model, target=first.target, unit=first.unit, energy=True,
               elements=first.elements)
    second = load_trained(str(other))
    structures = read_structures([path], index=":4")
    both = predict_structures([first, second], structures, forces=True)
    single = [predict_structures([m], structures, forces=True) for m in (first, second)]
    stacked = torch.stack([s["y"] for s in single], -1)
    torch.testing.assert_close(both["y"], stacked.mean(-1))
    torch.testing.assert_close(both["y_std"], stacked.std(-1, unbiased=False))
    assert bool((both["y_std"] > 0).all())
    forces = torch.stack([s["forces"][0] for s in single], -1)
    torch.testing.assert_close(both["forces_std"][0], forces.std(-1, unbiased=False))


def test_predict_refuses_what_it_cannot_predict(trained_run, tmp_path, capsys):
    run_dir, path = trained_run
    chlorine = ase.Atoms("CCl4", positions=np.random.default_rng(0).normal(size=(5, 3)) * 1.5)
    ase.io.write(tmp_path / "f.xyz", chlorine)
    assert main(["predict", str(run_dir), str(tmp_path / "f.xyz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Cl (Z=17)" in err and "f.xyz, frame 0" in err and "never saw" in err
    periodic = ase.Atoms("CH4", positions=np.random.default_rng(1).normal(size=(5, 3)),
                         cell=[5, 5, 5], pbc=True)
    ase.io.write(tmp_path / "pbc.xyz", periodic)
    assert main(["predict", str(run_dir), str(tmp_path / "pbc.xyz"), "--quiet"]) == 2
    assert "periodic" in capsys.readouterr().err
    assert main(["predict", str(run_dir), path, "--forces", "--quiet"]) == 2
    assert ".json or FILE.xyz" in capsys.readouterr().err
    assert main(["predict", path, str(run_dir), "--quiet"]) == 2
    assert "must be a checkpoint" in capsys.readouterr().err
    assert main(["predict", str(run_dir), path, "--out", str(tmp_path / "p.txt")]) == 2
    assert "extension" in capsys.readouterr().err
    # A property model has no forces.
    prop = tmp_path / "gap.pt"
    save_model(str(prop), _model(), target="gap", unit="eV", energy=False)
    assert main(["predict", str(prop), path, "--forces", "--out", str(tmp_path / "g.json"),
                 "--quiet"]) == 2
    assert "not an energy" in capsys.readouterr().err


def test_acn_pyg_test_reports_the_runs_errors(trained_run, capsys):
    run_dir, _ = trained_run
    assert main(["test", str(run_dir), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key, value in result["reported"].items():
        assert result[key] == pytest.approx(value, rel=1e-6)
    assert "test_forces_mae" in result["reported"]


@pytest.mark.parametrize("name", ["in.pdb", "in.db", "in.traj"])
def test_predict_reads_other_formats_that_ase_reads(trained_run, tmp_path, name):
    run_dir, path = trained_run
    frames = ase.io.read(path, index=":6:2")  # one molecule (ASE's PDB writer needs that)
    ase.io.write(tmp_path / "ref.xyz", frames)
    ase.io.write(tmp_path / name, frames)
    model = load_trained(str(run_dir))
    expected = predict_structures([model], read_structures([str(tmp_path / "ref.xyz")]))["y"]
    got = predict_structures([model], read_structures([str(tmp_path / name)]))["y"]
    # pdb keeps 3 decimals of the positions
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3 if name.endswith("pdb") else 1e-6)


@pytest.mark.parametrize("output, target", [("charges", "charges"), ("dipole", "mu"),
                                            ("tensor", "polarizability")])
def test_predict_writes_what_a_head_predicts(tmp_path, capsys, output, target):
    ckpt = str(tmp_path / "m.pt")
    save_model(ckpt, _model(output=output, hidden_irreps=None, mean=None, std=None,
                            atomref=None), target=target, unit="x")
    frames = [ase.Atoms(numbers=z.numpy(), positions=pos.numpy())
              for z, pos in (random_molecule(n, seed=n, dtype=torch.float32) for n in (4, 6))]
    frames[1].info["charge"] = 1.0  # a cation: its charges sum to 1
    ase.io.write(tmp_path / "in.xyz", frames)
    out = tmp_path / "p.json"
    assert main(["predict", ckpt, str(tmp_path / "in.xyz"), "--out", str(out), "--quiet"]) == 0
    rows = json.loads(out.read_text())["structures"]
    model = load_model(ckpt)
    for row, atoms in zip(rows, frames):
        extra = ({"total_charge": torch.tensor([atoms.info.get("charge", 0.0)])}
                 if output != "tensor" else {})
        with torch.no_grad():
            expected = model(torch.tensor(atoms.numbers),
                             torch.tensor(atoms.positions, dtype=torch.float32), **extra)
        np.testing.assert_allclose(np.array(row[target]), expected.squeeze(0).view(
            -1 if output == "charges" else expected.shape[1:]).numpy(), rtol=1e-5, atol=1e-6)
    if output == "charges":
        assert abs(sum(rows[0]["charges"])) < 1e-5 and abs(sum(rows[1]["charges"]) - 1) < 1e-5
    # One row a structure cannot hold them.
    assert main(["predict", ckpt, str(tmp_path / "in.xyz"), "--quiet"]) == 2
    assert "not one number a structure" in capsys.readouterr().err
