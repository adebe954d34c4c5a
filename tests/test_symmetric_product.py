import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant

from acn_pyg.nn import AtomCloudConv, SymmetricProduct

DT = torch.float64


@pytest.mark.parametrize("irreps_in, filter_ir_out", [
    ("5x0e+3x1o+2x2e", None),
    ("4x0e+3x1o+2x1e+2x2e+1x2o", ["0e", "1o", "2e"]),
])
def test_equivariance(irreps_in, filter_ir_out):
    product = SymmetricProduct(irreps_in, 3, filter_ir_out=filter_ir_out).to(DT)
    x = product.irreps_in.randn(7, -1, dtype=DT)
    assert_equivariant(product, args_in=[x], irreps_in=[product.irreps_in],
                       irreps_out=product.irreps_out)


@pytest.mark.parametrize("irreps_in, filter_ir_out", [
    ("5x0e+3x1o+2x2e", None),
    ("4x0e+3x1o+2x1e+2x2e+1x2o", ["0e", "1o", "2e"]),
])
def test_triples_and_element_weights_are_equivariant(irreps_in, filter_ir_out):
    product = SymmetricProduct(irreps_in, 3, filter_ir_out=filter_ir_out, correlation=3,
                               attr_channels=4).to(DT)
    with torch.no_grad():
        product.element_weights.weight.normal_()
    x = product.irreps_in.randn(7, -1, dtype=DT)
    attrs = torch.randn(7, 4, dtype=DT)
    assert_equivariant(product, args_in=[x, attrs], irreps_in=[product.irreps_in, "4x0e"],
                       irreps_out=product.irreps_out)


def test_triples_equal_e3nn_products_of_the_pairs_with_the_cloud():
    """B3 = (B2 x A) channel-wise, for every pair whose l3 the cloud holds
    and every output irrep: checked against e3nn's own tensor products."""
    ir_out = [o3.Irrep(x) for x in ("0e", "1o")]
    pairs = SymmetricProduct("4x0e+3x1o+2x2e", 3, correlation=2).to(DT)  # every pair
    triples = SymmetricProduct("4x0e+3x1o+2x2e", 3, filter_ir_out=ir_out, correlation=3)
    triples = triples.to(DT)
    triples.projection.load_state_dict(pairs.projection.state_dict())
    x = triples.irreps_in.randn(6, -1, dtype=DT)
    a = triples.projection(x)
    mid = triples.irreps_mid
    b2 = pairs(x)
    keep = [k for k, (_, ir) in enumerate(pairs.irreps_out) if ir in [ir for _, ir in mid]]
    b2_irreps = o3.Irreps([pairs.irreps_out[k] for k in keep])
    b2_mid = torch.cat([b2[:, pairs.irreps_out.slices()[k]] for k in keep], dim=-1)
    instructions, out = [], []
    for i1, (_, ir1) in enumerate(b2_irreps):
        for i2, (_, ir2) in enumerate(mid):
            for ir in ir1 * ir2:
                if ir in ir_out:
                    instructions.append((i1, i2, len(out), "uuu", False))
                    out.append((3, ir))
    reference = o3.TensorProduct(b2_irreps, mid, out, instructions,
                                 irrep_normalization="component", path_normalization="none")
    got = triples(x)
    num_pairs = sum(1 for _, ir in pairs.irreps_out if ir in ir_out)
    split = sum(3 * ir.dim for _, ir in triples.irreps_out[:num_pairs])
    slices = zip(pairs.irreps_out.slices(), pairs.irreps_out)
    b2_out = torch.cat([b2[:, sl] for sl, (_, ir) in slices if ir in ir_out], dim=-1)
    torch.testing.assert_close(got[:, :split], b2_out)
    torch.testing.assert_close(got[:, split:], reference.to(DT)(b2_mid, a))


def test_pairs_are_quadratic_and_triples_cubic_in_the_cloud():
    product = SymmetricProduct("3x0e+2x1o+2x2e", 2, filter_ir_out=["0e"], correlation=3)
    product = product.to(DT)
    x = product.irreps_in.randn(5, -1, dtype=DT)
    # the pairs come first: as many as the same product without triples has
    n2 = SymmetricProduct("3x0e+2x1o+2x2e", 2, filter_ir_out=["0e"]).irreps_out.num_irreps // 2
    assert 0 < n2 < product.irreps_out.num_irreps // 2
    y, y2 = product(x), product(2 * x)
    torch.testing.assert_close(y2[:, :2 * n2], 4 * y[:, :2 * n2])
    torch.testing.assert_close(y2[:, 2 * n2:], 8 * y[:, 2 * n2:])


def test_element_weights_scale_each_path_per_atom():
    product = SymmetricProduct("3x0e+2x1o", 2, filter_ir_out=["0e"], attr_channels=3)
    product = product.to(DT)
    x = product.irreps_in.randn(4, -1, dtype=DT)
    attrs = torch.randn(4, 3, dtype=DT)
    plain = product(x, attrs)  # the weights start at zero: factors of one
    with torch.no_grad():
        product.element_weights.weight.normal_()
    # [atoms, channels x paths], channel-major; the output's scalars are path-major
    v = attrs @ product.element_weights.weight.T  # V s
    factor = 1 + v.view(4, 2, -1).transpose(1, 2).reshape(4, -1)
    torch.testing.assert_close(product(x, attrs), plain * factor)
    with pytest.raises(ValueError, match="attrs"):
        product(x)


def test_equals_e3nn_channelwise_tensor_product():
    product = SymmetricProduct("4x0e+3x1o+2x1e+2x2e+1x2o", 3, filter_ir_out=["0e", "1o", "2e"])
    product = product.to(DT)
    mid = product.irreps_mid
    instructions = [(i1, i2, k, "uuu", False) for k, (i1, i2) in enumerate(
        (i1, i2) for i1, (_, ir1) in enumerate(mid) for i2, (_, ir2) in enumerate(mid)
        if i2 >= i1 for ir3 in ir1 * ir2 if ir3 in [o3.Irrep(x) for x in ("0e", "1o", "2e")]
        and not (i1 == i2 and (2 * ir1.l - ir3.l) % 2))]
    reference = o3.TensorProduct(mid, mid, product.irreps_out, instructions,
                                 irrep_normalization="component", path_normalization="none")
    x = product.irreps_in.randn(6, -1, dtype=DT)
    a = product.projection(x)
    torch.testing.assert_close(product(x), reference.to(DT)(a, a))


def test_paths_are_the_symmetric_products_and_nothing_else():
    product = SymmetricProduct("2x1o", 1)
    # 1o x 1o = 0e + 1e + 2e; the 1e part of a vector with itself (the cross
    # product) vanishes and is left out.
    assert product.irreps_out == o3.Irreps("1x0e+1x2e")
    product = SymmetricProduct("2x0e+2x1o", 1, filter_ir_out=["1o"])
    assert product.irreps_out == o3.Irreps("1x1o")  # 0e x 1o only


def test_scalar_of_a_vector_with_itself_is_its_squared_norm():
    product = SymmetricProduct("1x1o", 1, filter_ir_out=["0e"]).to(DT)
    with torch.no_grad():
        product.projection.weights[0].fill_(1.0)
    v = torch.randn(5, 3, dtype=DT)
    # component normalisation: sqrt(2 l3 + 1) C^0_{11} (v x v) = |v|^2 / sqrt(3)
    torch.testing.assert_close(product(v), v.pow(2).sum(-1, keepdim=True) / 3 ** 0.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        SymmetricProduct("2x0e", 0)
    with pytest.raises(ValueError, match="no product"):
        SymmetricProduct("2x0e", 2, filter_ir_out=["1o"])
    with pytest.raises(ValueError, match="correlation"):
        SymmetricProduct("2x0e", 2, correlation=4)
    with pytest.raises(ValueError, match="attr_channels"):
        SymmetricProduct("2x0e", 2, attr_channels=-1)


def test_conv_repr_names_the_products():
    conv = AtomCloudConv("6x0e+4x1o", "5x0e+3x1o", product_channels=3)
    assert repr(conv).endswith("product_channels=3)")


def test_conv_products_see_angles_without_the_power_spectrum():
    """A bent and a straight triatomic differ only by an angle: with neither
    the power spectrum nor the products a scalar layer cannot tell them apart."""
    x = torch.ones(3, 4, dtype=DT)
    straight = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [-1.2, 0, 0]], dtype=DT)
    bent = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [0, 1.2, 0]], dtype=DT)
    torch.manual_seed(0)
    conv = AtomCloudConv(4, 4, cutoff=3.0, power_spectrum=False, product_channels=2).to(DT)
    assert not torch.allclose(conv(x, straight)[0], conv(x, bent)[0])
    with pytest.raises(ValueError, match="product_channels"):
        AtomCloudConv(4, 4, product_channels=-1)


def test_conv_element_dependent_needs_its_attributes():
    conv = AtomCloudConv(4, 4, cutoff=3.0, product_channels=2, attr_channels=3).to(DT)
    x, pos = torch.randn(5, 4, dtype=DT), torch.randn(5, 3, dtype=DT)
    with pytest.raises(ValueError, match=r"'attrs' of shape \[5, 3\] is required"):
        conv(x, pos)
    with pytest.raises(ValueError, match=r"'attrs' must have shape \[5, 3\]"):
        conv(x, pos, attrs=torch.randn(5, 2, dtype=DT))
    with pytest.raises(ValueError, match="attr_channels=0"):
        AtomCloudConv(4, 4, cutoff=3.0).to(DT)(x, pos, attrs=torch.randn(5, 3, dtype=DT))
    attrs = torch.randn(5, 3, dtype=DT)
    before = conv(x, pos, attrs=attrs)
    with torch.no_grad():
        conv.self_weights.weight.normal_()
    assert not torch.allclose(conv(x, pos, attrs=attrs), before)


@pytest.mark.parametrize("correlation, attr_channels", [(2, 0), (3, 4)])
def test_contraction_is_equivariant(correlation, attr_channels):
    product = SymmetricProduct("4x0e+3x1o+2x2e", 3, filter_ir_out=["0e", "1o", "2e"],
                               correlation=correlation, attr_channels=attr_channels,
                               contract=True).to(DT)
    assert product.irreps_out == o3.Irreps("3x0e+3x1o+3x2e")
    args, irreps_in = [product.irreps_in.randn(7, -1, dtype=DT)], [product.irreps_in]
    if attr_channels:
        with torch.no_grad():
            product.element_weights.weight.normal_()
        args.append(torch.randn(7, attr_channels, dtype=DT))
        irreps_in.append(f"{attr_channels}x0e")
    assert_equivariant(product, args_in=args, irreps_in=irreps_in,
                       irreps_out=product.irreps_out)


@pytest.mark.parametrize("wanted", [["0e", "1o"], ["0e"], ["1o"]])
def test_contraction_is_the_weighted_sum_of_the_paths_and_the_cloud(wanted):
    """B_bar^(L)_u = sum over paths p -> L of w_pu B^(p)_u, the projected
    cloud's own L among the paths, each times its element factor: checked
    against the uncontracted paths, for several output irreps and for one
    (scalars alone, vectors alone)."""
    torch.manual_seed(0)
    irreps, wanted = "4x0e+3x1o+2x2e", [o3.Irrep(ir) for ir in wanted]
    paths = SymmetricProduct(irreps, 3, filter_ir_out=wanted, correlation=3).to(DT)
    contracted = SymmetricProduct(irreps, 3, filter_ir_out=wanted, correlation=3,
                                  attr_channels=2, contract=True).to(DT)
    contracted.projection.load_state_dict(paths.projection.state_dict())
    with torch.no_grad():
        contracted.element_weights.weight.normal_()
    x, attrs = paths.irreps_in.randn(5, -1, dtype=DT), torch.randn(5, 2, dtype=DT)
    a = paths.projection(x)
    # [atoms, channels, 2l + 1] per path: the cloud's 0e and 1o, then the products
    terms = [a[:, s].view(5, 3, -1) for s, (_, ir) in zip(paths.irreps_mid.slices(),
                                                          paths.irreps_mid) if ir in wanted]
    b = paths(x)
    terms += [b[:, s].view(5, 3, -1) for s in paths.irreps_out.slices()]
    out_of = [ir for _, ir in paths.irreps_mid if ir in wanted]
    out_of += [ir for _, ir in paths.irreps_out]
    w = contracted.path_weight  # [paths, channels]
    assert w.shape == (len(terms), 3)
    # times each atom's element factors 1 + V s_i, [atoms, channels, paths]
    f = 1 + (attrs @ contracted.element_weights.weight.t()).view(5, 3, -1)
    expected = [sum(w[p].view(1, 3, 1) * f[:, :, p, None] * terms[p]
                    for p in range(len(terms)) if out_of[p] == ir) for ir in wanted]
    expected = torch.cat([e.reshape(5, -1) for e in expected], dim=-1)
    torch.testing.assert_close(contracted(x, attrs), expected)


def test_product_basis_layer():
    """MACE's form: the layer's output depends on the cloud only through the
    contracted products (no spectrum, no raw cloud), stays invariant and sees
    angles; without products it cannot be built."""
    torch.manual_seed(0)
    conv = AtomCloudConv(4, "4x0e+2x1o", cutoff=3.0, product_channels=2,
                         product_basis=True).to(DT)
    assert not conv.power_spectrum
    assert conv.linear.irreps_in == conv.product.irreps_out + conv.in_irreps
    assert repr(conv).endswith("product_channels=2, product_basis=True)")
    x = torch.ones(3, 4, dtype=DT)
    straight = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [-1.2, 0, 0]], dtype=DT)
    bent = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [0, 1.2, 0]], dtype=DT)
    assert not torch.allclose(conv(x, straight)[0, :4], conv(x, bent)[0, :4])
    assert_equivariant(lambda pos: conv(torch.ones(6, 4, dtype=DT), pos),
                       args_in=[torch.randn(6, 3, dtype=DT)], irreps_in=["1o"],
                       irreps_out=conv.out_irreps)
    with pytest.raises(ValueError, match="product_basis=True' needs the products"):
        AtomCloudConv(4, 4, product_basis=True)
