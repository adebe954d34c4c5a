"""Weight normalisation: the same function as plain weights at initialisation
and after loading plain weights, scale invariance of the directions, and
Adam's step on a short direction."""
import torch

from acn_pyg import AtomCloudNet
from acn_pyg.nn import AtomCloudConv, IrrepsLinear, NormalizedEmbedding, NormalizedLinear
from acn_pyg.nn.normalized import DIRECTION_SCALE

from molecules import random_molecule


def _batch(seed=0):
    z1, p1 = random_molecule(6, seed=seed)
    z2, p2 = random_molecule(4, seed=seed + 1)
    return (torch.cat([z1, z2]), torch.cat([p1, p2 + 20.0]),
            torch.tensor([0] * 6 + [1] * 4))


def test_model_with_weight_norm_starts_as_the_plain_model():
    torch.set_default_dtype(torch.float64)
    z, pos, batch = _batch()
    for kwargs in ({}, {"hidden_irreps": "8x0e+2x1o+2x2e", "product_channels": 2}):
        torch.manual_seed(3)
        plain = AtomCloudNet(hidden_channels=8, weight_norm=False, mean=0.3, std=2.0, **kwargs)
        torch.manual_seed(3)
        normed = AtomCloudNet(hidden_channels=8, mean=0.3, std=2.0, **kwargs)
        assert normed.weight_norm and not plain.weight_norm
        torch.testing.assert_close(normed(z, pos, batch), plain(z, pos, batch), rtol=1e-10,
                                   atol=1e-10)


def test_plain_state_dict_loads_as_the_same_function():
    torch.set_default_dtype(torch.float64)
    z, pos, batch = _batch(1)
    torch.manual_seed(0)
    plain = AtomCloudNet(hidden_channels=8, hidden_irreps="8x0e+2x1o", weight_norm=False)
    with torch.no_grad():  # not the initial weights
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
    normed = AtomCloudNet(hidden_channels=8, hidden_irreps="8x0e+2x1o")
    normed.load_state_dict(plain.state_dict())
    torch.testing.assert_close(normed(z, pos, batch), plain(z, pos, batch), rtol=1e-10,
                               atol=1e-10)
    # and its own state dict round-trips
    again = AtomCloudNet(hidden_channels=8, hidden_irreps="8x0e+2x1o")
    again.load_state_dict(normed.state_dict())
    torch.testing.assert_close(again(z, pos, batch), normed(z, pos, batch), rtol=0, atol=0)


def test_output_heads_are_weight_normalised_and_load_plain_weights():
    torch.set_default_dtype(torch.float64)
    z, pos, batch = _batch(2)
    for output in ("charges", "dipole", "tensor"):
        kwargs = dict(hidden_channels=8, lmax=2, output=output, std=1.5,
                      atomref=torch.rand(10))
        torch.manual_seed(1)
        plain = AtomCloudNet(weight_norm=False, **kwargs)
        torch.manual_seed(1)
        normed = AtomCloudNet(**kwargs)
        # no plain weight matrix is left, the heads' included
        assert not any(type(m) is torch.nn.Linear for m in normed.modules()), output
        assert all(m.weight_norm for m in normed.head.modules() if isinstance(m, IrrepsLinear))
        torch.testing.assert_close(normed(z, pos, batch), plain(z, pos, batch), rtol=1e-10,
                                   atol=1e-10)
        with torch.no_grad():
            for p in plain.parameters():
                p.add_(0.05 * torch.randn_like(p))
        normed.load_state_dict(plain.state_dict())
        torch.testing.assert_close(normed(z, pos, batch), plain(z, pos, batch), rtol=1e-10,
                                   atol=1e-10)


def test_directions_are_scale_invariant_and_start_short():
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    lin = NormalizedLinear(5, 3)
    emb = NormalizedEmbedding(10, 4)
    irreps = IrrepsLinear(["4x0e + 2x1o", "3x0e"], "2x0e + 1x1o", weight_norm=True)
    x = torch.randn(7, 5)
    index = torch.tensor([1, 4, 4, 9])
    xi = [torch.randn(7, 10), torch.randn(7, 3)]
    before = lin(x), emb(index), irreps(xi)
    # each direction starts at DIRECTION_SCALE of the weight it stands for
    torch.testing.assert_close(lin.weight.norm(dim=1), DIRECTION_SCALE * lin.gain)
    torch.testing.assert_close(emb.weight.norm(dim=1), DIRECTION_SCALE * emb.gain)
    for w, g in zip(irreps.weights, irreps.gains):
        torch.testing.assert_close(w.norm(dim=0), DIRECTION_SCALE * g)
    with torch.no_grad():
        lin.weight.mul_(7.0)
        emb.weight.mul_(0.3)
        irreps.weights[0].mul_(5.0)
    for a, b in zip(before, (lin(x), emb(index), irreps(xi))):
        torch.testing.assert_close(a, b)
    # the gradient of a direction is orthogonal to it (row by row)
    lin(x).pow(2).sum().backward()
    torch.testing.assert_close((lin.weight.grad * lin.weight).sum(dim=1),
                               torch.zeros(3), atol=1e-12, rtol=0)


def test_adam_turns_a_short_direction_faster_at_a_small_learning_rate():
    """One Adam step at lr 3e-4 turns a weight-normalised layer's weight by
    about 1 / DIRECTION_SCALE times as much as a plain layer's."""
    torch.set_default_dtype(torch.float64)

    def turn(module, weight):
        x = torch.randn(64, 32, generator=torch.Generator().manual_seed(1))
        w0 = weight().detach().clone()
        opt = torch.optim.Adam(module.parameters(), lr=3e-4)
        module(x).pow(2).sum().backward()
        opt.step()
        w1 = weight().detach()
        return float(torch.nn.functional.cosine_similarity(w0, w1, dim=1).clamp(max=1).acos()
                     .mean())

    torch.manual_seed(0)
    plain = torch.nn.Linear(32, 16)
    torch.manual_seed(0)
    normed = NormalizedLinear(32, 16)
    torch.testing.assert_close(normed.effective_weight(), plain.weight)
    ratio = turn(normed, normed.effective_weight) / turn(plain, lambda: plain.weight)
    assert 0.5 / DIRECTION_SCALE < ratio < 2.0 / DIRECTION_SCALE


def test_layer_without_weight_norm_keeps_plain_parameters():
    conv = AtomCloudConv(4, "4x0e", weight_norm=False)
    assert isinstance(conv.radial.lin1, torch.nn.Linear) and len(conv.linear.gains) == 0
    conv = AtomCloudConv(4, "4x0e")
    assert isinstance(conv.radial.lin1, NormalizedLinear) and len(conv.linear.gains) == 1
