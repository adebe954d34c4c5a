import torch
from torch import Tensor


class PolynomialCutoff(torch.nn.Module):
    r"""Smooth cutoff envelope of Klicpera et al. (DimeNet), as in NequIP and MACE:

    .. math::
        f(r) = 1 - \frac{(p+1)(p+2)}{2} x^{p} + p(p+2) x^{p+1}
        - \frac{p(p+1)}{2} x^{p+2}, \qquad x = r / r_c,

    and :math:`f(r) = 0` for :math:`r \geq r_c`. Its value and its first and
    second derivatives vanish at :math:`r_c`, so messages fade in and out
    smoothly as atoms cross the cutoff.

    Args:
        cutoff (float): The cutoff radius :math:`r_c` in Angstrom.
        p (int, optional): The polynomial order. (default: :obj:`6`)

    Shapes:
        - **input:** edge lengths :math:`(|\mathcal{E}|)`
        - **output:** :math:`(|\mathcal{E}|, 1)`
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, length: Tensor) -> Tensor:
        p = self.p
        # f = 1 - x^p (a + x (c x - b)) with x clamped at 1, where f and its
        # derivative vanish exactly (a - b + c = 1): one clamp, no mask.
        a, b, c = 0.5 * (p + 1) * (p + 2), p * (p + 2.0), 0.5 * p * (p + 1)
        x = torch.clamp(length / self.cutoff, max=1.0)
        out = 1.0 - x.pow(p) * ((x * c - b) * x + a)
        return out.unsqueeze(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(cutoff={self.cutoff}, p={self.p})"
