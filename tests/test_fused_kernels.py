"""The fused code paths (fewer kernels per step) give the numbers of the
plain ones, and the model keeps its host syncs few."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import acn_pyg.models.atom_cloud_net as atom_cloud_net
from acn_pyg import AtomCloudNet
from acn_pyg.graph import RadiusGraph, radius_graph
from acn_pyg.nn import IrrepsLinear, RadialMLP, stacked_radial_weights
from acn_pyg.nn.embedding import PolynomialCutoff


def test_irreps_linear_groups_equal_sum_of_separate_linears():
    torch.manual_seed(0)
    a, b, out = "8x0e + 4x1o + 2x2e", "3x0e + 5x1o", "6x0e + 3x1o + 2x2e"
    fused = IrrepsLinear([a, b], out)
    lin_a, lin_b = IrrepsLinear(a, out), IrrepsLinear(b, out, bias=False)
    with torch.no_grad():  # fused weight of each output irrep = [W_a; W_b]
        k_a = k_b = 0
        for k, (_, ir) in enumerate(fused.irreps_out):
            rows = []
            if any(i == ir for _, i in lin_a.irreps_in):
                rows.append(lin_a.weights[k_a])
                k_a += 1
            if any(i == ir for _, i in lin_b.irreps_in):
                rows.append(lin_b.weights[k_b])
                k_b += 1
            if rows:
                fused.weights[k].copy_(torch.cat(rows))
        lin_a.biases[0].normal_()
        fused.biases[0].copy_(lin_a.biases[0])
    xa = torch.randn(5, lin_a.irreps_in.dim, dtype=torch.float64)
    xb = torch.randn(5, lin_b.irreps_in.dim, dtype=torch.float64)
    fused, lin_a, lin_b = fused.double(), lin_a.double(), lin_b.double()
    expected = lin_a(xa) + lin_b(xb)
    assert torch.allclose(fused([xa, xb]), expected, atol=1e-12)
    assert torch.allclose(fused(torch.cat([xa, xb], dim=-1)), expected, atol=1e-12)


def test_irreps_linear_fan_in_groups_normalise_together():
    torch.manual_seed(0)
    split = IrrepsLinear(["4x0e", "12x0e"], "3x0e", fan_in_groups=[0, 0])
    whole = IrrepsLinear("16x0e", "3x0e")
    whole.load_state_dict(split.state_dict())
    x = torch.randn(7, 16)
    assert torch.allclose(split([x[:, :4], x[:, 4:]]), whole(x), atol=1e-6)


def test_irreps_linear_bad_inputs():
    lin = IrrepsLinear(["4x0e", "2x1o"], "3x0e")
    with pytest.raises(ValueError, match="takes 2 inputs"):
        lin([torch.randn(3, 4)])
    with pytest.raises(ValueError, match="input 1 must have shape"):
        lin([torch.randn(3, 4), torch.randn(3, 5)])
    with pytest.raises(ValueError, match="fan_in_groups"):
        IrrepsLinear(["4x0e", "2x1o"], "3x0e", fan_in_groups=[0])


def test_stacked_radial_weights_equal_each_mlp():
    torch.manual_seed(0)
    mlps = [RadialMLP(8, 16, 24).double() for _ in range(3)]
    basis = torch.randn(40, 8, dtype=torch.float64)
    for mlp, w in zip(mlps, stacked_radial_weights(mlps, basis)):
        assert torch.allclose(w, mlp(basis), atol=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        stacked_radial_weights([mlps[0], RadialMLP(8, 16, 12)], basis)


def test_stacked_radial_weights_gradients_and_double_backward():
    """The stacked layers' hand-written backward (weight gradients as one
    matrix product per layer) against finite differences, first and second
    order (second order: training on forces differentiates it again)."""
    from acn_pyg.nn.radial_mlp import _BatchedLinear

    torch.manual_seed(0)
    h = torch.randn(3, 11, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 1, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_BatchedLinear.apply, (h, w, b))
    assert torch.autograd.gradgradcheck(_BatchedLinear.apply, (h, w, b))
    # A transposed (non-contiguous) input, as stacked_radial_weights passes it.
    ht = torch.randn(11, 3, 5, dtype=torch.float64).transpose(0, 1).requires_grad_()
    assert torch.autograd.gradcheck(_BatchedLinear.apply, (ht, w, b))

    # Through stacked_radial_weights: the same gradients as each MLP alone.
    mlps = [RadialMLP(8, 16, 24).double() for _ in range(3)]
    basis = torch.randn(40, 8, dtype=torch.float64, requires_grad=True)
    probes = [torch.randn(40, 24, dtype=torch.float64) for _ in mlps]
    params = [basis] + [q for mlp in mlps for q in mlp.parameters()]
    stacked = sum((w * c).sum() for w, c in zip(stacked_radial_weights(mlps, basis), probes))
    per_layer = sum((mlp(basis) * c).sum() for mlp, c in zip(mlps, probes))
    for g, g_ref in zip(torch.autograd.grad(stacked, params),
                        torch.autograd.grad(per_layer, params)):
        assert torch.allclose(g, g_ref, atol=1e-12)


@pytest.mark.parametrize("hidden_irreps", [None, "16x0e + 4x1o + 4x2e"])
def test_model_with_stacked_radials_equals_per_layer(hidden_irreps, batch_of_molecules,
                                                     monkeypatch):
    _, z, pos, batch = batch_of_molecules
    torch.manual_seed(0)
    model = AtomCloudNet(hidden_channels=16, hidden_irreps=hidden_irreps, num_layers=3,
                         radial_hidden=16).double()
    assert model._radial_groups  # some layers share a radial shape
    pos = pos.clone().requires_grad_()
    y = model(z, pos, batch)
    (f,) = torch.autograd.grad(y.sum(), pos)
    monkeypatch.setattr(atom_cloud_net, "STACK_RADIAL_ON_CPU", True)
    y2 = model(z, pos, batch)
    (f2,) = torch.autograd.grad(y2.sum(), pos)
    assert torch.allclose(y, y2, atol=1e-10)
    assert torch.allclose(f, f2, atol=1e-10)


def test_envelope_is_zero_with_zero_slope_from_the_cutoff_on():
    env = PolynomialCutoff(2.0)
    r = torch.tensor([0.0, 1.0, 1.999, 2.0, 2.5, 7.0], dtype=torch.float64, requires_grad=True)
    f = env(r).squeeze(-1)
    (df,) = torch.autograd.grad(f.sum(), r)
    x = r.detach() / 2.0
    expected = torch.where(x < 1, 1 - 28 * x ** 6 + 48 * x ** 7 - 21 * x ** 8, 0.0)
    assert torch.allclose(f.detach(), expected, atol=1e-12)
    assert f[0] == 1 and (f[3:] == 0).all() and (df[3:] == 0).all()
    assert abs(float(df[2])) < 1e-4  # f' ~ (1 - x)^2 near the cutoff


class CountSyncs(TorchDispatchMode):
    """Counts the ops that copy a value to the host (a sync on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in ("_local_scalar_dense", "nonzero", "item"):
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_model_forward_has_two_host_syncs_besides_the_graph(batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    edge_index = radius_graph(pos, 5.0, batch)
    model = AtomCloudNet(hidden_channels=8, num_layers=2, radial_hidden=8,
                         interaction_graph=lambda p, b: edge_index).double()
    with CountSyncs() as counter:  # no graph work counted: the edges are given
        model(z, pos, batch)
    # One for every input check and the graph count, one for the padding
    # (the buckets and their widths) and the zero-length check of the edges.
    assert counter.count <= 2


def test_radius_graph_batch_size_and_unchecked_give_the_same_edges(batch_of_molecules):
    _, _, pos, batch = batch_of_molecules
    expected = radius_graph(pos, 3.0, batch, backend="torch")
    got = radius_graph(pos, 3.0, batch, backend="torch", batch_size=3, check_inputs=False)
    assert torch.equal(expected, got)
    graph = RadiusGraph(3.0, check_inputs=False)
    assert torch.equal(graph(pos, batch, batch_size=3), expected)
