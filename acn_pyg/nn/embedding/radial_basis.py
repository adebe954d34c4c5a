import math

import torch
from torch import Tensor


class BesselBasis(torch.nn.Module):
    r"""Radial Bessel basis of DimeNet:

    .. math::
        e_n(r) = \sqrt{\frac{2}{r_c}} \frac{\sin(n \pi r / r_c)}{r},
        \qquad n = 1, \dots, N.

    Args:
        cutoff (float): The cutoff radius :math:`r_c` in Angstrom.
        num_basis (int, optional): The number of basis functions :math:`N`.
            (default: :obj:`8`)
        trainable (bool, optional): If :obj:`True`, the frequencies
            :math:`n \pi / r_c` are learned. (default: :obj:`False`)

    Shapes:
        - **input:** edge lengths :math:`(|\mathcal{E}|)`, all positive
        - **output:** :math:`(|\mathcal{E}|, N)`
    """

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        self.num_basis = int(num_basis)
        self.trainable = trainable
        freq = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff
        if trainable:
            self.freq = torch.nn.Parameter(freq)
        else:
            self.register_buffer("freq", freq)
        self.prefactor = math.sqrt(2.0 / cutoff)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.freq.copy_(torch.arange(1, self.num_basis + 1, dtype=self.freq.dtype,
                                         device=self.freq.device) * math.pi / self.cutoff)

    def forward(self, length: Tensor) -> Tensor:
        length = length.unsqueeze(-1)
        return self.prefactor * torch.sin(self.freq * length) / length

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(cutoff={self.cutoff}, num_basis={self.num_basis}, "
                f"trainable={self.trainable})")
