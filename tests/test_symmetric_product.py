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
