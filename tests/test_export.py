"""acn-pyg export: a torch.export program that runs without acn_pyg's
classes, equal to the eager model for any number of atoms and edges."""
import json

import pytest
import torch

from molecules import random_molecule

from acn_pyg import AtomCloudNet, radius_graph, save_model
from acn_pyg.cli import main
from acn_pyg.inference.export import read_export_info


@pytest.fixture(autouse=True)
def _float32():
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("kwargs", [
    {},
    dict(product_channels=2, product_correlation=3, element_dependent=True,
         scalar_activation=False),
    dict(product_channels=2, product_basis=True, scalar_activation=False),
])
def test_the_exported_program_equals_the_model(kwargs, tmp_path, capsys):
    torch.manual_seed(0)
    model = AtomCloudNet(hidden_channels=8, hidden_irreps="8x0e+4x1o", num_layers=2,
                         cutoff=3.5, std=2.0, atomref=torch.linspace(-1, 1, 10),
                         **kwargs).eval()
    with torch.no_grad():  # element-dependent factors away from one
        for conv in model.convs:
            for lin in (conv.self_weights, conv.product and conv.product.element_weights):
                if lin is not None:
                    lin.weight.normal_(std=0.3)
    ckpt, out = str(tmp_path / "m.pt"), str(tmp_path / "m.pt2")
    save_model(ckpt, model, target="energy", unit="eV", energy=True, elements=[1, 6, 7, 8, 9])
    assert main(["export", ckpt, out]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] < 1e-5 and report["max_abs_diff_forces"] < 1e-5
    info = read_export_info(out)
    assert info["cutoff"] == 3.5 and info["unit"] == "eV" and info["elements"] == [1, 6, 7, 8, 9]

    program = torch.export.load(out).module()  # a GraphModule: no acn_pyg class
    assert not any(type(m).__module__.startswith("acn_pyg") for m in program.modules())
    for n, seed in ((6, 1), (23, 2)):
        z, pos = random_molecule(n, seed=seed, dtype=torch.float32)
        # Pairs beyond the cutoff may be given: they contribute nothing.
        edge_index = radius_graph(pos, 6.0)
        pos.requires_grad_(True)
        energy = program(z, pos, edge_index)
        forces = -torch.autograd.grad(energy.sum(), pos)[0]
        p = pos.detach().clone().requires_grad_(True)
        expected = model(z, p).view(-1)
        expected_forces = -torch.autograd.grad(expected.sum(), p)[0]
        torch.testing.assert_close(energy, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(forces, expected_forces, rtol=1e-4, atol=1e-5)


def test_a_given_edge_index_beyond_the_cutoff_changes_nothing():
    torch.manual_seed(0)
    model = AtomCloudNet(hidden_channels=8, num_layers=2, cutoff=3.0).eval()
    z, pos = random_molecule(15, seed=4, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(model(z, pos, edge_index=radius_graph(pos, 8.0)),
                                   model(z, pos), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="edge_index"):
        model(z, pos, edge_index=torch.tensor([[0, 1], [1, 99]]))


def test_export_refuses_a_baseline_model(tmp_path, capsys):
    from acn_pyg.train.baselines import build_baseline
    ckpt = str(tmp_path / "s.pt")
    save_model(ckpt, build_baseline("schnet", True),
               spec={"name": "schnet", "kwargs": {"extensive": True}})
    assert main(["export", ckpt, str(tmp_path / "s.pt2")]) == 2
    assert "AtomCloudNet" in capsys.readouterr().err
