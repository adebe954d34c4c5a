import pytest
import torch

from acn_pyg import AtomCloudNet
from acn_pyg.models import grown_state_dict

DT = torch.float64
SMALL = dict(hidden_channels=16, cutoff=3.0, radial_hidden=16)
VARIANTS = {
    "scalars": dict(SMALL),
    "vectors": dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e"),
    "products": dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e", product_channels=2),
}


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
                if ".linear." in key:
                    assert not value.any(), key
                else:
                    assert torch.equal(value, fresh[key]), key
    # Training can use the new layers: the gradient reaches their W at once.
    deep(z, pos.detach(), batch).pow(2).sum().backward()
    for t in range(have - 1, want - 1):
        assert deep.convs[t].linear.weights[0].grad.abs().sum() > 0


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
