import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant

from acn_pyg.nn import ChannelwiseTensorProduct


def e3nn_reference(tp):
    instructions = [(i_in, l2, k, "uvu", True) for k, (i_in, l2, _) in enumerate(tp.instructions)]
    return o3.TensorProduct(
        tp.irreps_in, tp.irreps_sh, tp.irreps_out, instructions, shared_weights=False,
        internal_weights=False, irrep_normalization="component", path_normalization="none")


@pytest.mark.parametrize("irreps, lmax", [("5x0e", 2), ("4x0e+3x1o+2x2e", 2), ("2x0o+3x1e", 3),
                                          ("3x0e+2x1o", 1)])
def test_equals_e3nn_tensor_product(irreps, lmax):
    tp = ChannelwiseTensorProduct(irreps, lmax).double()
    ref = e3nn_reference(tp).double()
    assert tp.weight_numel == ref.weight_numel
    x = torch.randn(17, tp.irreps_in.dim, dtype=torch.float64)
    sh = o3.spherical_harmonics(tp.irreps_sh, torch.randn(17, 3, dtype=torch.float64), True,
                                normalization="component")
    w = torch.randn(17, tp.weight_numel, dtype=torch.float64)
    torch.testing.assert_close(tp(x, sh, w), ref(x, sh, w), rtol=1e-10, atol=1e-12)


def test_filter_keeps_only_requested_irreps():
    tp = ChannelwiseTensorProduct("4x0e+2x1o", 2, filter_ir_out=[o3.Irrep("1o")])
    assert {ir for _, ir in tp.irreps_out} == {o3.Irrep("1o")}


def test_equivariant():
    tp = ChannelwiseTensorProduct("3x0e+2x1o+2x2e", 2).double()
    w = torch.randn(6, tp.weight_numel, dtype=torch.float64)
    assert_equivariant(lambda x, sh: tp(x, sh, w), irreps_in=[tp.irreps_in, tp.irreps_sh],
                       irreps_out=tp.irreps_out,
                       args_in=[torch.randn(6, tp.irreps_in.dim, dtype=torch.float64),
                                o3.spherical_harmonics(tp.irreps_sh,
                                                       torch.randn(6, 3, dtype=torch.float64),
                                                       True, normalization="component")])
