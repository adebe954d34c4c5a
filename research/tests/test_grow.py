"""Growing a trained AtomCloudNet deeper (grow.py): the deeper model computes
the same function, and a run warm-started from the grown weights starts
where the shallower run ended."""
import json

import pytest
import torch

from acn_pyg import AtomCloudNet
from acn_pyg.train import run

import grow
from grow import grown_state_dict

DT = torch.float64
SMALL = dict(hidden_channels=16, cutoff=3.0, radial_hidden=16)
VARIANTS = {
    "scalars": dict(SMALL),
    "vectors": dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e"),
    "products": dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e", product_channels=2),
}


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Modules built in float64, so that Clebsch-Gordan buffers are exact
    and the tolerances tight (e3nn's test convention)."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(12345)


def trained_like(seed, **kwargs):
    """A model whose every weight is random (none left at a zero init)."""
    torch.manual_seed(seed)
    net = AtomCloudNet(**kwargs).to(DT)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("have,want", [(2, 3), (2, 5), (3, 4), (3, 3)])
def test_grown_model_computes_the_same_function(variant, have, want, batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    small = trained_like(0, num_layers=have, **VARIANTS[variant])
    torch.manual_seed(1)
    deep = AtomCloudNet(num_layers=want, **VARIANTS[variant]).to(DT)
    fresh = {k: v.clone() for k, v in deep.state_dict().items()}
    deep.load_state_dict(grown_state_dict(deep, small.state_dict()))
    pos = pos.clone().requires_grad_()
    y_small = small(z, pos, batch)
    forces_small, = torch.autograd.grad(y_small.sum(), pos)
    y_deep = deep(z, pos, batch)
    forces_deep, = torch.autograd.grad(y_deep.sum(), pos, create_graph=True)
    assert torch.allclose(y_deep, y_small, atol=1e-12, rtol=1e-10)
    assert torch.allclose(forces_deep, forces_small, atol=1e-12, rtol=1e-10)
    # The old layers are where the docstring says, the new ones fresh but for W.
    state = deep.state_dict()
    for key, value in small.state_dict().items():
        t = key.split(".")[1] if key.startswith("convs.") else None
        moved = key if t is None or int(t) < have - 1 else key.replace(
            f"convs.{t}.", f"convs.{want - 1}.", 1)
        assert torch.equal(state[moved], value), key
    for t in range(have - 1, want - 1):
        for key, value in state.items():
            if key.startswith(f"convs.{t}."):
                if ".linear.gains." in key or ".linear.biases." in key:
                    assert not value.any(), key
                elif ".linear.weights." in key:  # the directions stay
                    assert torch.equal(value, fresh[key]), key
                else:
                    assert torch.equal(value, fresh[key]), key
    # Training can use the new layers: the gradient reaches their W's gains at once.
    deep(z, pos.detach(), batch).pow(2).sum().backward()
    for t in range(have - 1, want - 1):
        assert deep.convs[t].linear.gains[0].grad.abs().sum() > 0


def test_grow_refuses_what_it_cannot_grow():
    small = AtomCloudNet(num_layers=3, **SMALL)
    with pytest.raises(ValueError, match="only grown deeper"):
        grown_state_dict(AtomCloudNet(num_layers=2, **SMALL), small.state_dict())
    with pytest.raises(ValueError, match="at least 2 layers"):
        grown_state_dict(small, AtomCloudNet(num_layers=1, **SMALL).state_dict())
    with pytest.raises(ValueError, match="at least 2 layers"):
        grown_state_dict(small, {"embedding.weight": torch.zeros(101, 16)})
    prod = AtomCloudNet(num_layers=2, product_channels=2, **VARIANTS["vectors"])
    with pytest.raises(ValueError, match="product.*differ in more than their number of layers"):
        grown_state_dict(AtomCloudNet(num_layers=3, **VARIANTS["vectors"]), prod.state_dict())
    wide = AtomCloudNet(num_layers=2, **dict(SMALL, hidden_channels=32))
    deep = AtomCloudNet(num_layers=3, **SMALL)
    with pytest.raises(RuntimeError, match="size mismatch"):
        deep.load_state_dict(grown_state_dict(deep, wide.state_dict()))


def test_grow_script_starts_a_deeper_run_from_a_shallower_one(tiny_config, tmp_path, capsys):
    torch.set_default_dtype(torch.float32)  # as the training program runs
    first = run(tiny_config(tmp_path / "run", num_layers=2))
    grown = str(tmp_path / "grown.pt")
    deeper = tiny_config(tmp_path / "deep", num_layers=4, init_from=grown, lr=1e-30, epochs=1)
    # Not without growing: the shallower weights do not fit the deeper model.
    with pytest.raises(ValueError, match="another model"):
        run(tiny_config(tmp_path / "deep", num_layers=4, lr=1e-30, epochs=1,
                        init_from=str(tmp_path / "run" / "best.pt")))
    assert grow.main([str(tmp_path / "run"), "--num-layers", "4", "--out", grown]) == 0
    assert "grown from 2 to 4 layers" in capsys.readouterr().out
    deep = run(deeper)
    assert deep["parameters"] > first["parameters"]
    # With a learning rate of ~0 the deeper model keeps the grown weights: the
    # shallower model's function, so its errors.
    assert deep["history"][0]["val_mae"] == pytest.approx(first["best_val_mae"], rel=1e-5)
    assert deep["test_mae"] == pytest.approx(first["test_mae"], rel=1e-5)
    # Only an AtomCloudNet grows, and only deeper.
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics["config"]["model"] = "schnet"
    (tmp_path / "schnet").mkdir()
    (tmp_path / "schnet" / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit, match="only an AtomCloudNet is grown"):
        grow.main([str(tmp_path / "schnet"), "--num-layers", "4", "--out", grown])
    with pytest.raises(SystemExit, match="only grown deeper"):
        grow.main([str(tmp_path / "deep"), "--num-layers", "3", "--out", grown])
    assert json.loads((tmp_path / "deep" / "metrics.json").read_text())["config"][
        "init_from"] == grown
