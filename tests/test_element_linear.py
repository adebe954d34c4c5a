import pytest
import torch
from e3nn.util.test import assert_equivariant

from acn_pyg.nn import AtomCloudConv, ElementLinear, IrrepsLinear

DT = torch.float64


def test_is_equivariant_and_starts_at_zero():
    torch.manual_seed(0)
    layer = ElementLinear(3, 2, "4x0e+2x1o", "3x0e+2x1o+1x2e").to(DT)
    x, attrs = layer.irreps_in.randn(6, -1, dtype=DT), torch.randn(6, 3, dtype=DT)
    assert torch.equal(layer(x, attrs), torch.zeros(6, layer.irreps_out.dim, dtype=DT))
    with torch.no_grad():
        layer.coefficients.weight.normal_()
    assert layer(x, attrs).abs().max() > 0
    assert_equivariant(layer, args_in=[x, attrs], irreps_in=[layer.irreps_in, "3x0e"],
                       irreps_out=layer.irreps_out)


def test_gives_every_element_its_own_matrix():
    """With one-hot attributes and P the identity, atom i gets W_{z_i} x_i:
    the rank-r map holds r separate equivariant linear maps."""
    torch.manual_seed(0)
    layer = ElementLinear(3, 3, "4x0e+2x1o", "3x0e+2x1o").to(DT)
    with torch.no_grad():
        layer.coefficients.weight.copy_(torch.eye(3, dtype=DT))
    x = layer.irreps_in.randn(5, -1, dtype=DT)
    element = torch.tensor([0, 2, 1, 2, 0])
    out = layer(x, torch.nn.functional.one_hot(element, 3).to(DT))
    for k in range(3):
        single = IrrepsLinear("4x0e+2x1o", "3x0e+2x1o", bias=False).to(DT)
        with torch.no_grad():  # the k-th of the r maps laid side by side
            for w, w_all in zip(single.weights, layer.linear.weights[2 * k:2 * k + 2]):
                w.copy_(w_all)
        mask = element == k
        torch.testing.assert_close(out[mask], single(x[mask]))


def test_conv_self_interaction_depends_on_the_attributes():
    torch.manual_seed(0)
    conv = AtomCloudConv(4, "4x0e+2x1o", cutoff=3.0, attr_channels=3,
                         self_interaction_rank=2).to(DT)
    x, pos, attrs = torch.randn(5, 4, dtype=DT), torch.randn(5, 3, dtype=DT), torch.randn(
        5, 3, dtype=DT)
    before = conv(x, pos, attrs=attrs)
    with torch.no_grad():
        conv.self_mix.coefficients.weight.normal_()
    after = conv(x, pos, attrs=attrs)
    torch.testing.assert_close(after - before, conv.self_mix(x, attrs))
    assert (after - before).abs().max() > 0
    assert repr(conv).endswith("self_interaction_rank=2)")


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        ElementLinear(3, 0, "2x0e", "2x0e")
    with pytest.raises(ValueError, match="attr_channels"):
        ElementLinear(0, 2, "2x0e", "2x0e")
    with pytest.raises(ValueError, match="needs the atom attributes"):
        AtomCloudConv(4, 4, self_interaction_rank=2)
    with pytest.raises(ValueError, match="self_interaction_rank"):
        AtomCloudConv(4, 4, attr_channels=2, self_interaction_rank=-1)
    from acn_pyg import AtomCloudNet
    with pytest.raises(ValueError, match="element_dependent=True"):
        AtomCloudNet(hidden_channels=8, self_interaction_rank=2)
