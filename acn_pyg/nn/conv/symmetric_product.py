from typing import List, Optional, Sequence

import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.nn.irreps_linear import IrrepsLinear
from acn_pyg.utils.irreps import split_blocks


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
        self.irreps_out = o3.Irreps(out)
        # The coupling as one matrix: every channel u uses the same bilinear
        # map of its (2l+1)-vectors, so B_u = (a_u outer a_u) C with C read off
        # e3nn's one-channel product on pairs of basis vectors. One outer
        # product and one matrix product replace a kernel chain per path.
        one = o3.TensorProduct(
            o3.Irreps([(1, ir) for ir in irs]), o3.Irreps([(1, ir) for ir in irs]),
            o3.Irreps([(1, ir) for _, ir in out]), instructions,
            irrep_normalization="component", path_normalization="none")
        dim = sum(ir.dim for ir in irs)
        eye = torch.eye(dim, dtype=torch.float64)
        with torch.no_grad():
            coupling = one.to(torch.float64)(eye.repeat_interleave(dim, 0), eye.repeat(dim, 1))
        self.register_buffer("coupling", coupling.to(torch.get_default_dtype()),
                             persistent=False)
        self._mid_dims = [channels * ir.dim for ir in irs]
        self._out_dims = [ir.dim for _, ir in out]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # An earlier implementation kept an e3nn TensorProduct here, whose
        # state was constants only (no weights): those keys are dropped.
        for key in [k for k in state_dict if k.startswith(prefix + "tensor_product.")]:
            if state_dict[key].numel() and key.endswith(".weight"):
                raise ValueError(f"'{key}' holds weights: not a SymmetricProduct state dict")
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters(self) -> None:
        self.projection.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        n, k = x.size(0), self.channels
        # [n, u, sum of 2l+1]: the projected irreps of each channel side by side.
        a = torch.cat([block.reshape(n, k, -1) for block in
                       split_blocks(self.projection(x), self._mid_dims)], dim=-1)
        outer = (a.unsqueeze(-1) * a.unsqueeze(-2)).flatten(-2)
        b = outer @ self.coupling  # [n, u, sum over paths of 2 l3 + 1]
        # Back to e3nn's layout: one [u, 2 l3 + 1] block per path.
        return torch.cat([block.reshape(n, -1) for block in
                          split_blocks(b, self._out_dims, dim=-1)], dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, "
                f"channels={self.channels})")
