import copy
import io
import warnings

import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant

from acn_pyg import AtomCloudConv, AtomCloudNet, radius_graph

from molecules import random_molecule

DT = torch.float64


def make_conv(in_irreps, out_irreps, **kwargs):
    return AtomCloudConv(in_irreps, out_irreps, cutoff=3.0, **kwargs).to(DT)


@pytest.mark.parametrize("in_irreps, out_irreps, kwargs", [
    ("8x0e", "4x0e+3x1o+2x2e", {}),
    ("6x0e+4x1o+2x2e", "5x0e+3x1o+2x2e+2x1e", {}),
    ("4x0e+2x1e", "3x0o+2x2o", {}),
    ("6x0e+4x1o+2x2e", "5x0e+3x1o+2x2e", {"product_channels": 3}),
    ("6x0e+4x1o+2x2e", "5x0e+3x1o+2x2e", {"product_channels": 3, "product_basis": True,
                                          "input_linear": True}),
])
def test_equivariance(in_irreps, out_irreps, kwargs):
    conv = make_conv(in_irreps, out_irreps, **kwargs)
    _, pos = random_molecule(10, seed=1)
    x = torch.randn(10, conv.in_irreps.dim, dtype=DT)
    assert_equivariant(
        lambda x, pos: conv(x, pos), args_in=[x, pos],
        irreps_in=[conv.in_irreps, o3.Irreps("1o")], irreps_out=conv.out_irreps,
        do_translation=True)


def test_int_irreps_mean_scalars_and_are_invariant():
    conv = make_conv(8, 5)
    assert conv.in_irreps == o3.Irreps("8x0e") and conv.out_irreps == o3.Irreps("5x0e")
    _, pos = random_molecule(10, seed=2)
    x = torch.randn(10, 8, dtype=DT)
    rot = -o3.rand_matrix(dtype=DT)
    out = conv(x, pos)
    torch.testing.assert_close(conv(x, pos @ rot.T + 3.0), out, rtol=1e-9, atol=1e-11)
    assert out.shape == (10, 5)


def test_power_spectrum_sees_angles():
    """Scalar in, scalar out: a bent and a straight triatomic differ only by an angle."""
    conv = make_conv(4, 4)
    x = torch.ones(3, 4, dtype=DT)
    straight = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [-1.2, 0, 0]], dtype=DT)
    bent = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [0, 1.2, 0]], dtype=DT)
    assert not torch.allclose(conv(x, straight)[0], conv(x, bent)[0])
    no_spectrum = make_conv(4, 4, power_spectrum=False)
    torch.testing.assert_close(no_spectrum(x, straight)[0], no_spectrum(x, bent)[0])


def test_given_edge_index_equals_built_graph():
    conv = make_conv(6, "4x0e+2x1o")
    _, pos = random_molecule(12, seed=3)
    x = torch.randn(12, 6, dtype=DT)
    edge_index = radius_graph(pos, 3.0)
    torch.testing.assert_close(conv(x, pos, edge_index=edge_index), conv(x, pos))


def test_continuous_as_an_atom_crosses_the_cutoff():
    conv = make_conv(4, "4x0e+2x1o")
    x = torch.randn(2, 4, dtype=DT)
    eps = 1e-6
    outs = []
    for d in (3.0 - eps, 3.0 + eps):
        pos = torch.tensor([[0.0, 0, 0], [d, 0, 0]], dtype=DT)
        outs.append(conv(x, pos))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-9, rtol=0)


def test_isolated_atom_and_empty_input():
    conv = make_conv(4, "4x0e+2x1o")
    out = conv(torch.randn(1, 4, dtype=DT), torch.zeros(1, 3, dtype=DT))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    assert conv(torch.zeros(0, 4, dtype=DT), torch.zeros(0, 3, dtype=DT)).shape == (0, 10)


def test_unreachable_output_irreps_is_an_error():
    with pytest.raises(ValueError, match="out_irreps.*3o"):
        AtomCloudConv(4, "2x3o", lmax=2)


@pytest.mark.parametrize("make_args, match", [
    (lambda x, pos: (x[:, :3], pos), "'x'"),
    (lambda x, pos: (x, pos[:, :2]), "'pos'"),
    (lambda x, pos: (x, pos.masked_fill(pos > 1, float("inf"))), "NaN or infinite"),
    (lambda x, pos: (x, pos, torch.zeros(3, dtype=torch.long)), "'batch'"),
    (lambda x, pos: (x, pos, None, torch.tensor([[0, 1], [1, 99]])), "edge_index"),
    (lambda x, pos: (x, torch.zeros_like(pos)), "same position"),
    (lambda x, pos: (x, pos, None, torch.tensor([[1], [1]])), "self-loop"),
    (lambda x, pos: (x.float(), pos),
     "'x' is torch.float32 but the AtomCloudConv's parameters are torch.float64"),
    (lambda x, pos: (x.to("meta"), pos.to("meta")),
     "'x' is on meta but the AtomCloudConv's parameters are on cpu"),
])
def test_bad_input(make_args, match):
    conv = make_conv(4, 4)
    _, pos = random_molecule(6, seed=4)
    with pytest.raises(ValueError, match=match):
        conv(*make_args(torch.randn(6, 4, dtype=DT), pos))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="in_irreps"):
        AtomCloudConv("banana", 4)
    with pytest.raises(ValueError, match="cutoff"):
        AtomCloudConv(4, 4, cutoff=0.0)


def test_repr_and_reset_parameters():
    conv = AtomCloudConv(8, "4x0e+2x1o")
    assert repr(conv) == "AtomCloudConv(8x0e, 4x0e+2x1o, cutoff=5.0, lmax=2)"
    before = [p.clone() for p in conv.parameters()]
    conv.reset_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, conv.parameters()) if a.dim() == 2)


def test_compiled_convolution_has_no_graph_breaks_and_equals_eager():
    conv = make_conv("8x0e+4x1o", "6x0e+3x1o+2x2e")
    _, pos = random_molecule(10, seed=6)
    x = torch.randn(10, conv.in_irreps.dim, dtype=DT)
    edge_index = radius_graph(pos, 3.0)
    edge_features = conv.edge_embedding(pos, edge_index)
    compiled = torch.compile(conv.convolve, fullgraph=True)
    torch.testing.assert_close(compiled(x, edge_index, edge_features),
                               conv.convolve(x, edge_index, edge_features), rtol=1e-9, atol=1e-9)


def test_state_dict_of_the_old_layout_is_refused_with_a_clear_error():
    conv = AtomCloudConv(4, 4)
    state = conv.state_dict()
    state["self_interaction.weights.0"] = torch.zeros(4, 4)
    with pytest.raises(ValueError, match="acn_pyg 0.1"):
        conv.load_state_dict(state)


def test_state_dict_layout_version_is_saved_and_checked():
    model = AtomCloudNet(hidden_channels=8, num_layers=2)
    state = model.state_dict()
    assert state._metadata["convs.0"]["version"] == AtomCloudConv._version == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AtomCloudNet(hidden_channels=8, num_layers=2).load_state_dict(state)  # no warning
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded._metadata["convs.1"]["version"] == 2  # survives a file

    older = copy.copy(state)
    older._metadata = copy.deepcopy(state._metadata)
    older._metadata["convs.1"]["version"] = 1
    with pytest.warns(UserWarning, match="convs.1.*saved before acn_pyg 0.2.1"):
        AtomCloudNet(hidden_channels=8, num_layers=2).load_state_dict(older)
    older._metadata["convs.1"]["version"] = 3
    with pytest.raises(ValueError, match="layout version 3, newer"):
        AtomCloudNet(hidden_channels=8, num_layers=2).load_state_dict(older)


def test_radial_gain_scales_the_radial_output_not_its_weights():
    _, pos = random_molecule(10, seed=5)
    torch.manual_seed(0)
    plain = make_conv(6, "6x0e", radial_gain=1.0)
    torch.manual_seed(0)
    gained = make_conv(6, "6x0e", radial_gain=30.0)
    for a, b in zip(plain.radial.parameters(), gained.radial.parameters()):
        torch.testing.assert_close(a, b)
    # The cloud is linear in the radial weights, so it starts 30x larger.
    basis = gained.edge_embedding(pos, radius_graph(pos, 3.0)).basis
    before = gained.radial(basis).detach()
    torch.testing.assert_close(before, 30.0 * plain.radial(basis))
    # One Adam step moves both MLPs' weights alike, so the gained output
    # changes by the same fraction of itself: the gain does not slow it.
    target = torch.randn(before.shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    changes = []
    for conv in (plain, gained):
        opt = torch.optim.Adam(conv.radial.parameters(), lr=1e-2)
        start = conv.radial(basis).detach()
        (conv.radial(basis) * target).sum().backward()
        opt.step()
        changes.append((conv.radial(basis).detach() - start).norm() / start.norm())
    # (to Adam's eps, which weighs the 30x larger gradients a little less)
    torch.testing.assert_close(changes[0], changes[1], rtol=1e-5, atol=0)
    assert changes[1] > 1e-3
    with pytest.raises(ValueError, match="gain"):
        make_conv(6, 6, radial_gain=0.0)


@pytest.mark.parametrize("kwargs, n_products", [({}, 0), ({"product_channels": 3}, 1)])
def test_linear_input_parts_name_what_the_output_linear_gets(kwargs, n_products):
    conv = make_conv("6x0e+4x1o", "5x0e+3x1o", **kwargs)
    _, pos = random_molecule(7, seed=4)
    x = torch.randn(7, conv.in_irreps.dim, dtype=DT)
    seen = []
    handle = conv.linear.register_forward_hook(
        lambda module, inputs, output: seen.append(conv.linear_input_parts(inputs[0])))
    conv(x, pos)
    handle.remove()
    parts = seen[0]
    assert torch.equal(parts["input"][0], x) and len(parts["products"]) == n_products
    cloud = torch.cat(parts["cloud"], dim=1)
    assert cloud.shape == (7, conv.tensor_product.irreps_out.dim)
    # The spectra: mean squares over m of the cloud's non-scalar blocks, in order.
    irreps = conv.tensor_product.irreps_out.simplify()
    expected = [c.reshape(7, mul, ir.dim).pow(2).mean(dim=-1)
                for (mul, ir), c in zip(irreps, parts["cloud"]) if ir != o3.Irrep("0e")]
    assert len(parts["cloud"]) == len(irreps) and len(expected) == len(parts["spectrum"]) > 0
    for got, want in zip(parts["spectrum"], expected):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="pieces"):
        conv.linear_input_parts(list(parts["cloud"]))


def test_input_linear_mixes_the_neighbours_not_the_self_interaction():
    """With W_in the identity the layer is the layer without it; with W_in a
    permutation of the channels its cloud is that of the permuted input,
    while the self-interaction still reads the input as it is."""
    torch.manual_seed(0)
    mixed = make_conv("4x0e+2x1o", "3x0e+2x1o", input_linear=True, weight_norm=False)
    plain = make_conv("4x0e+2x1o", "3x0e+2x1o", weight_norm=False)
    plain.load_state_dict({k: v for k, v in mixed.state_dict().items()
                           if not k.startswith("input_linear.")})
    _, pos = random_molecule(8, seed=2)
    x = torch.randn(8, mixed.in_irreps.dim, dtype=DT)
    with torch.no_grad():
        for w in mixed.input_linear.weights:
            w.copy_(torch.eye(w.size(0), dtype=DT))
    torch.testing.assert_close(mixed(x, pos), plain(x, pos))
    seen = []
    mixed.linear.register_forward_hook(
        lambda module, inputs, output: seen.append(mixed.linear_input_parts(inputs[0])))
    plain.linear.register_forward_hook(
        lambda module, inputs, output: seen.append(plain.linear_input_parts(inputs[0])))
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        mixed.input_linear.weights[0].copy_(torch.eye(4, dtype=DT)[:, perm])
    mixed(x, pos)
    plain(torch.cat([x[:, perm], x[:, 4:]], dim=1), pos)
    torch.testing.assert_close(seen[0]["input"][0], x)
    # the scalar cloud of channel u: sum_j R_u(r) x'_ju, x' the permuted input
    torch.testing.assert_close(seen[0]["cloud"][0][:, :4], seen[1]["cloud"][0][:, :4])
