from typing import List, Optional, Sequence

import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.nn.irreps_linear import IrrepsLinear


class SymmetricProduct(torch.nn.Module):
    r"""Products of an atom's cloud with itself (body order three), as in the
    product basis of MACE: the cloud is projected on :obj:`channels` channels
    per irrep, and every pair of its irreps is coupled channel-wise (e3nn
    :obj:`"uuu"`) into the requested output irreps,

    .. math::
        \tilde{\mathbf{A}}_i &= \mathbf{W}\, \mathbf{A}_i \\
        \mathbf{B}^{(l_3)}_{i,u} &= \sqrt{2 l_3 + 1}\; C^{l_3}_{l_1 l_2}
        \left( \tilde{\mathbf{A}}^{(l_1)}_{i,u} \otimes
        \tilde{\mathbf{A}}^{(l_2)}_{i,u} \right), \quad l_1 \leq l_2 .

    A cloud :math:`\mathbf{A}_i = \sum_j \phi(\mathbf{r}_{ij}, \mathbf{x}_j)`
    sums over single neighbours; :math:`\mathbf{B}_i` sums over pairs of
    neighbours :math:`(j, k)`, so it sees the angle :math:`j\,i\,k` and the
    directions of both: the power spectrum :math:`\sum_m A^2` of
    :class:`~acn_pyg.nn.AtomCloudConv` is its :math:`l_1 = l_2,\, l_3 = 0`
    part without the mixing :math:`\mathbf{W}`. Pairs :math:`l_1 > l_2` are
    left out: for a product of a tensor with itself they repeat
    :math:`l_1 < l_2` up to a sign.

    Args:
        irreps_in (e3nn.o3.Irreps or str): Irreps of the cloud.
        channels (int): Channels per irrep after the projection.
        filter_ir_out (list of e3nn.o3.Irrep, optional): The output irreps to
            produce. (default: :obj:`None`, every product)

    Shapes:
        - **input:** :math:`(|\mathcal{V}|, \dim(\mathrm{irreps\_in}))`
        - **output:** :math:`(|\mathcal{V}|, \dim(\mathrm{irreps\_out}))`
    """

    def __init__(self, irreps_in, channels: int,
                 filter_ir_out: Optional[Sequence[o3.Irrep]] = None):
        super().__init__()
        if not (isinstance(channels, int) and channels >= 1):
            raise ValueError(f"'channels' must be a positive int (got {channels!r})")
        self.irreps_in = o3.Irreps(irreps_in).simplify()
        self.channels = channels
        irs = sorted({ir for _, ir in self.irreps_in})
        self.irreps_mid = o3.Irreps([(channels, ir) for ir in irs])
        wanted = None if filter_ir_out is None else {o3.Irrep(ir) for ir in filter_ir_out}
        out: List[tuple] = []
        instructions = []
        for i1, (_, ir1) in enumerate(self.irreps_mid):
            for i2, (_, ir2) in enumerate(self.irreps_mid):
                if i2 < i1:
                    continue
                for ir3 in ir1 * ir2:
                    if wanted is not None and ir3 not in wanted:
                        continue
                    # A vector crossed with itself vanishes: drop the
                    # antisymmetric coupling of one irrep with itself.
                    if i1 == i2 and (ir1.l * 2 - ir3.l) % 2 == 1:
                        continue
                    instructions.append((i1, i2, len(out), "uuu", False))
                    out.append((channels, ir3))
        if not out:
            raise ValueError(f"no product of {self.irreps_in} gives any of {filter_ir_out}")
        self.projection = IrrepsLinear(str(self.irreps_in), self.irreps_mid, bias=False)
        self.tensor_product = o3.TensorProduct(
            self.irreps_mid, self.irreps_mid, o3.Irreps(out), instructions,
            irrep_normalization="component", path_normalization="none")
        self.irreps_out = self.tensor_product.irreps_out

    def reset_parameters(self) -> None:
        self.projection.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        a = self.projection(x)
        return self.tensor_product(a, a)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, "
                f"channels={self.channels})")
