r"""The per-edge tensor product of AtomCloudConv, isolated so that a faster
kernel can replace it: same inputs, same outputs, same weight layout."""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from e3nn import o3
from torch import Tensor


class ChannelwiseTensorProduct(torch.nn.Module):
    r"""Channel-wise (e3nn :obj:`"uvu"`) tensor product of node features with
    edge spherical harmonics, weighted per edge:

    .. math::
        \mathbf{m}^{(l_3)}_{ij,u} = w_{ij,u}^{(l_1 l_2 l_3)}
        \sqrt{2 l_3 + 1} \; C^{l_3}_{l_1 l_2} \left(
        \mathbf{x}^{(l_1)}_{j,u} \otimes Y^{(l_2)}(\hat{\mathbf{r}}_{ij}) \right)

    with :math:`C` the Wigner 3j symbols. Each channel :math:`u` of each input
    irrep is combined with every :math:`Y^{(l_2)}`, :math:`l_2 \leq
    l_\mathrm{max}`, into every output irrep :math:`l_3 \leq l_\mathrm{max}`
    the selection rules allow; channels are never mixed here (that happens per
    atom, where it is a dense matrix product). Numerically equal to
    :class:`e3nn.o3.TensorProduct` with the same :obj:`"uvu"` instructions,
    :obj:`irrep_normalization="component"` and :obj:`path_normalization="none"`;
    the weights use its layout.

    Each input irrep is one matrix product with a precomputed Clebsch-Gordan
    block, :math:`[|\mathcal{E}| \cdot u, (2l_1+1)(l_\mathrm{max}+1)^2]` by
    :math:`[\cdot, \sum (2l_3+1)]`, so the cost is a handful of dense kernels.

    Args:
        irreps_in (e3nn.o3.Irreps): Irreps of the node features.
        lmax (int): The largest degree of the spherical harmonics and of the
            outputs.
        filter_ir_out (list of e3nn.o3.Irrep, optional): If set, only these
            output irreps are produced. (default: :obj:`None`)

    Shapes:
        - **x:** :math:`(|\mathcal{E}|, \dim(\mathrm{irreps\_in}))`
        - **sh:** :math:`(|\mathcal{E}|, (l_\mathrm{max}+1)^2)`
        - **weight:** :math:`(|\mathcal{E}|, \mathrm{weight\_numel})`
        - **output:** :math:`(|\mathcal{E}|, \dim(\mathrm{irreps\_out}))`
    """

    def __init__(self, irreps_in, lmax: int,
                 filter_ir_out: Optional[Sequence[o3.Irrep]] = None):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.lmax = int(lmax)
        self.irreps_sh = o3.Irreps.spherical_harmonics(self.lmax)
        filter_ir_out = None if filter_ir_out is None else [o3.Irrep(ir) for ir in filter_ir_out]

        # (input block, l2, output irrep), grouped by input block.
        self.instructions: List[Tuple[int, int, o3.Irrep]] = []
        for i_in, (_, ir1) in enumerate(self.irreps_in):
            for l2 in range(self.lmax + 1):
                for ir3 in ir1 * o3.Irrep(l2, (-1) ** l2):
                    if ir3.l <= self.lmax and (filter_ir_out is None or ir3 in filter_ir_out):
                        self.instructions.append((i_in, l2, ir3))
        self.irreps_out = o3.Irreps(
            [(self.irreps_in[i_in].mul, ir3) for i_in, _, ir3 in self.instructions])
        self.weight_numel = sum(self.irreps_in[i_in].mul for i_in, _, _ in self.instructions)

        dim_sh = self._dim_sh = self.irreps_sh.dim
        in_slices = self.irreps_in.slices()
        self._blocks: List[Tuple[int, int, int, int]] = []  # (start, mul, d1, out width)
        weight_index: List[Tensor] = []
        w_offset = 0
        for i_in, (mul, ir1) in enumerate(self.irreps_in):
            paths = [(l2, ir3) for k, l2, ir3 in self.instructions if k == i_in]
            if not paths:
                continue
            width = sum(ir3.dim for _, ir3 in paths)
            cg = torch.zeros(ir1.dim, dim_sh, width, dtype=torch.float64)
            # perm maps the e3nn layout (path-major, then channel, then m) onto
            # the kernel's layout (channel, then path and m).
            perm, col = [], 0
            for l2, ir3 in paths:
                w3j = o3.wigner_3j(ir1.l, l2, ir3.l, dtype=torch.float64)
                cg[:, l2 * l2:(l2 + 1) ** 2, col:col + ir3.dim] = math.sqrt(ir3.dim) * w3j
                u = torch.arange(mul).unsqueeze(1)
                perm.append((u * width + col + torch.arange(ir3.dim)).flatten())
                weight_index.append(
                    (w_offset + u).expand(mul, ir3.dim).flatten())
                w_offset += mul
                col += ir3.dim
            k = len(self._blocks)
            self.register_buffer(f"cg_{k}", cg.reshape(ir1.dim * dim_sh, width).to(
                torch.get_default_dtype()), persistent=False)
            self.register_buffer(f"perm_{k}", torch.cat(perm), persistent=False)
            self._blocks.append((in_slices[i_in].start, mul, ir1.dim, width))
        self.register_buffer(
            "weight_index",
            torch.cat(weight_index) if weight_index else torch.zeros(0, dtype=torch.long),
            persistent=False)

    def forward(self, x: Tensor, sh: Tensor, weight: Tensor) -> Tensor:
        num_edges, dim_sh = x.size(0), self._dim_sh
        outs = []
        for k, (start, mul, d1, width) in enumerate(self._blocks):
            x1 = x[:, start:start + mul * d1].reshape(num_edges, mul, d1, 1)
            t = (x1 * sh.reshape(num_edges, 1, 1, dim_sh)).reshape(num_edges, mul, d1 * dim_sh)
            out = torch.matmul(t, getattr(self, f"cg_{k}")).reshape(num_edges, mul * width)
            outs.append(out.index_select(1, getattr(self, f"perm_{k}")))
        if not outs:
            return x.new_zeros(num_edges, 0)
        return torch.cat(outs, dim=1) * weight.index_select(1, self.weight_index)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps_in} x {self.irreps_sh} -> "
                f"{self.irreps_out.simplify()} | {self.weight_numel} weights)")
