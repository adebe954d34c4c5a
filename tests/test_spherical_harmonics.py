import pytest
import torch
from e3nn import o3

from acn_pyg.nn.embedding import SphericalHarmonics


@pytest.mark.parametrize("lmax", [0, 1, 2, 3])
def test_equal_to_e3nn_values_and_gradients(lmax):
    g = torch.Generator().manual_seed(lmax)
    vec = (3 * torch.randn(64, 3, generator=g)).requires_grad_(True)
    ours = SphericalHarmonics(lmax)(vec)
    ref = o3.spherical_harmonics(list(range(lmax + 1)), vec, normalize=True,
                                 normalization="component")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    if lmax == 0:  # constant: no gradient
        return
    w = torch.randn(ref.shape, generator=g)
    (g_ours,) = torch.autograd.grad((ours * w).sum(), vec)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), vec)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def test_equivariant_and_batched_shapes():
    sh = SphericalHarmonics(2)
    vec = torch.randn(2, 5, 3)
    rot = o3.rand_matrix()
    d = o3.Irreps.spherical_harmonics(2).D_from_matrix(rot)
    torch.testing.assert_close(sh(vec @ rot.T), sh(vec) @ d.T, rtol=1e-10, atol=1e-10)
    assert sh(vec).shape == (2, 5, 9)
    with pytest.raises(ValueError, match="lmax"):
        SphericalHarmonics(-1)


def test_given_length_equals_computed():
    vec = torch.randn(10, 3)
    sh = SphericalHarmonics(2)
    torch.testing.assert_close(sh(vec, vec.norm(dim=-1)), sh(vec), rtol=0, atol=0)
