import math
from typing import Optional

import torch
from e3nn import o3
from torch import Tensor


class SphericalHarmonics(torch.nn.Module):
    r"""Real spherical harmonics :math:`Y^{(l)}(\hat{\mathbf{r}})` of the
    directions of :obj:`vec`, :math:`l = 0, \dots, l_\mathrm{max}`, equal to
    :func:`e3nn.o3.spherical_harmonics` with :obj:`normalize=True` and
    :obj:`normalization="component"` (so :math:`\|Y^{(l)}\|^2 = 2l + 1`).

    For :math:`l_\mathrm{max} \le 2` they are one matrix product,

    .. math::
        Y = \left[1,\ \hat{\mathbf{r}},\ \hat{\mathbf{r}} \otimes
        \hat{\mathbf{r}}\right] C,

    with a constant :math:`C`: for :math:`\hat{\mathbf{r}} = (x, y, z)`,
    :math:`Y^{(1)} = \sqrt{3}\,(x, y, z)` and :math:`Y^{(2)} = (\sqrt{15}\,xz,
    \sqrt{15}\,xy, \sqrt{5}\,(y^2 - (x^2 + z^2)/2), \sqrt{15}\,yz,
    \tfrac{\sqrt{15}}{2}(z^2 - x^2))`. That is a handful of kernels instead
    of e3nn's few dozen elementwise ones, which matters where launches, not
    arithmetic, bound the step (small molecules on a GPU). Higher
    :math:`l_\mathrm{max}` uses e3nn.

    Args:
        lmax (int): The largest degree.

    Shapes:
        - **input:** vectors :math:`(*, 3)`, none of zero length
        - **output:** :math:`(*, (l_\mathrm{max} + 1)^2)`
    """

    def __init__(self, lmax: int):
        super().__init__()
        if lmax < 0:
            raise ValueError(f"'lmax' must be >= 0 (got {lmax})")
        self.lmax = int(lmax)
        if self.lmax <= 2:
            self.register_buffer("coefficients", _coefficients(self.lmax), persistent=False)

    def forward(self, vec: Tensor, length: Optional[Tensor] = None) -> Tensor:
        """:obj:`length` (:obj:`vec.norm(dim=-1)`, shape :obj:`(*)`) may be
        passed where the caller has it already."""
        if self.lmax > 2:
            return o3.spherical_harmonics(list(range(self.lmax + 1)), vec, normalize=True,
                                          normalization="component")
        if length is None:
            length = vec.norm(dim=-1)
        unit = vec / length.unsqueeze(-1)
        outer = (unit.unsqueeze(-1) * unit.unsqueeze(-2)).flatten(-2)
        monomials = torch.cat([torch.ones_like(unit[..., :1]), unit, outer], dim=-1)
        return monomials @ self.coefficients.to(vec.dtype)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(lmax={self.lmax})"


def _coefficients(lmax: int) -> Tensor:
    """Rows: 1, x, y, z, then xx, xy, xz, yx, yy, yz, zx, zy, zz; columns: Y
    up to degree :obj:`lmax`."""
    s3, s5, s15 = math.sqrt(3.0), math.sqrt(5.0), math.sqrt(15.0)
    xx, xy, xz, yy, yz, zz = 4, 5, 6, 8, 9, 12
    c = torch.zeros(13, 9, dtype=torch.float64)
    c[0, 0] = 1.0
    c[1, 1] = c[2, 2] = c[3, 3] = s3
    c[xz, 4] = s15
    c[xy, 5] = s15
    c[yy, 6], c[xx, 6], c[zz, 6] = s5, -s5 / 2, -s5 / 2
    c[yz, 7] = s15
    c[zz, 8], c[xx, 8] = s15 / 2, -s15 / 2
    return c[:, :(lmax + 1) ** 2].contiguous().to(torch.get_default_dtype())
