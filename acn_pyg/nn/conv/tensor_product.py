r"""The tensor product + scatter of AtomCloudConv, isolated so that a faster
kernel can replace it: same inputs, same outputs, same weight layout."""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.nn.embedding import EdgeFeatures
from acn_pyg.utils.irreps import split_blocks


class ChannelwiseTensorProduct(torch.nn.Module):
    r"""Channel-wise (e3nn :obj:`"uvu"`) tensor product of neighbour features
    with edge spherical harmonics, weighted per edge and summed over the
    neighbours of each atom:

    .. math::
        \mathbf{A}^{(l_3)}_{i,u} = \sum_{j \in \mathcal{N}(i)}
        w_{ij,u}^{(l_1 l_2 l_3)} \sqrt{2 l_3 + 1} \; C^{l_3}_{l_1 l_2}
        \left( \mathbf{x}^{(l_1)}_{j,u} \otimes Y^{(l_2)}(\hat{\mathbf{r}}_{ij}) \right)

    with :math:`C` the Wigner 3j symbols. Each channel :math:`u` of each input
    irrep is combined with every :math:`Y^{(l_2)}`, :math:`l_2 \leq
    l_\mathrm{max}`, into every output irrep :math:`l_3 \leq l_\mathrm{max}`
    the selection rules allow; channels are never mixed. Per edge and summed,
    it equals :class:`e3nn.o3.TensorProduct` with the same :obj:`"uvu"`
    instructions, :obj:`irrep_normalization="component"` and
    :obj:`path_normalization="none"` (see :meth:`e3nn_weight_index`).

    Since :math:`C` is linear it commutes with the sum over neighbours, so the
    work is split where it is cheapest:

    1. :meth:`message`, per edge: :math:`\mathbf{m}_{ij,pu} = w_{ij,pu}\,
       \mathbf{x}_{j,u}`, channel-wise (no :math:`2l+1`-fold blow-up; laid
       out path-major, so the channel index runs fastest);
    2. :meth:`aggregate`, per atom: the cloud projection
       :math:`\mathbf{B}_i = \sum_j \mathbf{m}_{ij} \otimes Y(\hat{\mathbf{r}}_{ij})`,
       batched matrix products over each atom's (padded) neighbour list;
    3. :meth:`couple`, per atom: :math:`\mathbf{A}_i = C\, \mathbf{B}_i`, one
       dense matrix product per input irrep.

    Args:
        irreps_in (e3nn.o3.Irreps): Irreps of the node features.
        lmax (int): The largest degree of the spherical harmonics and of the
            outputs.
        filter_ir_out (list of e3nn.o3.Irrep, optional): If set, only these
            output irreps are produced. (default: :obj:`None`)
        scale (float, optional): A constant factor on the output, folded
            into the coupling matrices (AtomCloudConv's :math:`1/\bar{n}`).
            (default: :obj:`1.0`)
        sort_output (bool, optional): If :obj:`True`, the output blocks are
            grouped by irrep (:obj:`irreps_out` sorted by :math:`l`, then
            parity; paths of one irrep keep their order), so that every
            irrep is one contiguous slice: free, since the output is gathered
            into place anyway. :obj:`False` keeps e3nn's instruction order.
            (default: :obj:`False`)

    Shapes:
        - **x:** :math:`(|\mathcal{V}|, \dim(\mathrm{irreps\_in}))`
        - **weight:** :math:`(|\mathcal{E}|, \mathrm{weight\_numel})`
        - **neighbors:** see :class:`~acn_pyg.nn.embedding.EdgeFeatures`
        - **output:** :math:`(|\mathcal{V}|, \dim(\mathrm{irreps\_out}))`
    """

    def __init__(self, irreps_in, lmax: int,
                 filter_ir_out: Optional[Sequence[o3.Irrep]] = None, scale: float = 1.0,
                 sort_output: bool = False):
        super().__init__()
        self.scale = float(scale)
        self.sort_output = sort_output
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
        blocks_out = [(self.irreps_in[i_in].mul, ir3) for i_in, _, ir3 in self.instructions]
        order = list(range(len(blocks_out)))
        if sort_output:
            order.sort(key=lambda k: (blocks_out[k][1].l, -blocks_out[k][1].p))
        self.irreps_out = o3.Irreps([blocks_out[k] for k in order])
        self.weight_numel = sum(self.irreps_in[i_in].mul for i_in, _, _ in self.instructions)

        dim_sh = self._dim_sh = self.irreps_sh.dim
        in_slices = self.irreps_in.slices()
        # Where the output of instruction k starts in irreps_out.
        out_starts = [0] * len(order)
        for s, k in zip(self.irreps_out.slices(), order):
            out_starts[k] = s.start
        # Per input block with paths: (input start, mul, d1, num paths, out width).
        self._blocks: List[Tuple[int, int, int, int, int]] = []
        out_perm: List[Tensor] = []
        e3nn_weight: List[Tensor] = []
        e3nn_offsets = [0]
        for i_in, _, _ in self.instructions:
            e3nn_offsets.append(e3nn_offsets[-1] + self.irreps_in[i_in].mul)
        k_out = 0
        kernel_out_offset = 0
        for i_in, (mul, ir1) in enumerate(self.irreps_in):
            paths = [(k, l2, ir3) for k, (b, l2, ir3) in enumerate(self.instructions) if b == i_in]
            if not paths:
                continue
            width = sum(ir3.dim for _, _, ir3 in paths)
            # Rows (path, m1, m2), columns (path, m3).
            cg = torch.zeros(len(paths), ir1.dim, dim_sh, width, dtype=torch.float64)
            col = 0
            for p, (k, l2, ir3) in enumerate(paths):
                w3j = o3.wigner_3j(ir1.l, l2, ir3.l, dtype=torch.float64)
                cg[p, :, l2 * l2:(l2 + 1) ** 2, col:col + ir3.dim] = (
                    self.scale * math.sqrt(ir3.dim) * w3j)
                # Kernel output (channel u, column col + m3) -> e3nn position.
                u = torch.arange(mul).unsqueeze(1)
                kernel_pos = kernel_out_offset + u * width + col + torch.arange(ir3.dim)
                e3nn_pos = out_starts[k] + u * ir3.dim + torch.arange(ir3.dim)
                out_perm.append(torch.stack([e3nn_pos.flatten(), kernel_pos.flatten()]))
                col += ir3.dim
                k_out += 1
            # Kernel weight layout (path p, channel u) -> e3nn weight index.
            e3nn_weight.append(torch.stack(
                [torch.tensor([e3nn_offsets[k] for k, _, _ in paths]) + u for u in range(mul)]
            ).t().flatten())
            self.register_buffer(f"cg_{len(self._blocks)}",
                                 cg.permute(2, 0, 1, 3).reshape(dim_sh * len(paths) * ir1.dim,
                                                                width).to(
                                     torch.get_default_dtype()), persistent=False)
            self._blocks.append((in_slices[i_in].start, mul, ir1.dim, len(paths), width))
            kernel_out_offset += mul * width
        if out_perm:
            pairs = torch.cat(out_perm, dim=1)
            gather = torch.empty(pairs.size(1), dtype=torch.long)
            gather[pairs[0]] = pairs[1]
        else:
            gather = torch.zeros(0, dtype=torch.long)
        self.register_buffer("out_index", gather, persistent=False)
        self._e3nn_weight_index = torch.cat(e3nn_weight) if e3nn_weight else gather
        self.message_dim = sum(mul * p * d1 for _, mul, d1, p, _ in self._blocks)
        # Split sizes (torch.split: its backward is one cat, where a slice's
        # is a zero fill and a copy): the input blocks, with or without paths;
        # the weights and the message blocks of the blocks with paths.
        self._x_sizes = [mul * ir.dim for mul, ir in self.irreps_in]
        used = {start for start, _, _, _, _ in self._blocks}
        self._x_used = [s.start in used for s in in_slices]
        self._w_sizes = [mul * p for _, mul, _, p, _ in self._blocks]
        self._m_sizes = [mul * p * d1 for _, mul, d1, p, _ in self._blocks]

    def e3nn_weight_index(self) -> Tensor:
        r"""For each weight of this module, its index in the weights of the
        equivalent :class:`e3nn.o3.TensorProduct`: :obj:`w_e3nn[:, idx] = w`."""
        return self._e3nn_weight_index.clone()

    def message(self, x_j: Tensor, weight: Tensor) -> Tensor:
        r"""Per edge: :math:`w_{ij,pu}\, \mathbf{x}_{j,u}`,
        shape :math:`(|\mathcal{E}|, \mathrm{message\_dim})`."""
        num_edges = x_j.size(0)
        if not self._blocks:
            return x_j.new_zeros(num_edges, 0)
        xs = [x for x, u in zip(split_blocks(x_j, self._x_sizes, dim=1), self._x_used) if u]
        ws = split_blocks(weight, self._w_sizes, dim=1)
        outs = [(w.reshape(num_edges, num_paths, mul, 1) * x.reshape(num_edges, 1, mul, d1))
                .reshape(num_edges, num_paths * mul * d1)
                for x, w, (_, mul, d1, num_paths, _) in zip(xs, ws, self._blocks)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def aggregate(self, message: Tensor, neighbors: EdgeFeatures) -> Tensor:
        r"""Per atom: :math:`\sum_j Y(\hat{\mathbf{r}}_{ij}) \otimes \mathbf{m}_{ij}`,
        shape :math:`(|\mathcal{V}|, (l_\mathrm{max}+1)^2, \mathrm{message\_dim})`
        (harmonics first, so that the batched product reads the padded
        messages as they lie instead of copying them). The messages are laid
        out as the harmonics of :obj:`neighbors`, one batched product per
        bucket of atoms; the atoms come in the bucket order (see
        :class:`~acn_pyg.nn.embedding.EdgeFeatures`), which :meth:`couple`
        undoes on its smaller output."""
        # In place into fresh zeros: no copy of the padded tensor.
        dense = message.new_zeros(neighbors.sh_dense.size(0), message.size(1))
        dense = dense.index_copy_(0, neighbors.slot, message)
        sizes = [n * k for n, k in neighbors.buckets]
        clouds = [torch.bmm(sh.reshape(n, k, sh.size(1)).transpose(1, 2),
                            m.reshape(n, k, m.size(1)))
                  for sh, m, (n, k) in zip(split_blocks(neighbors.sh_dense, sizes, dim=0),
                                           split_blocks(dense, sizes, dim=0),
                                           neighbors.buckets)]
        return clouds[0] if len(clouds) == 1 else torch.cat(clouds)

    def couple(self, cloud: Tensor, node_order: Optional[Tensor] = None) -> Tensor:
        r"""Per atom: Clebsch-Gordan coupling into :obj:`irreps_out` (e3nn
        layout); with :obj:`node_order`, atom :obj:`i`'s output is row
        :obj:`node_order[i]` of the coupled :obj:`cloud`."""
        num_nodes = cloud.size(0)
        if not self._blocks:
            return cloud.new_zeros(num_nodes, 0)
        parts = split_blocks(cloud, self._m_sizes, dim=2)
        # [N, sh, (path, u, m1)] -> [N, u, (sh, path, m1)], the rows of cg_k.
        outs = [torch.matmul(
                    b.reshape(num_nodes, self._dim_sh, num_paths, mul, d1).permute(0, 3, 1, 2, 4)
                    .reshape(num_nodes, mul, self._dim_sh * num_paths * d1),
                    getattr(self, f"cg_{k}")).reshape(num_nodes, mul * width)
                for k, (b, (_, mul, d1, num_paths, width)) in enumerate(zip(parts, self._blocks))]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        if node_order is not None:
            out = out.index_select(0, node_order)
        return out.index_select(1, self.out_index)

    def forward(self, x: Tensor, edge_index: Tensor, weight: Tensor,
                neighbors: EdgeFeatures) -> Tensor:
        """Gather, tensor product and scatter in one call."""
        return self.couple(self.aggregate(self.message(x[edge_index[0]], weight), neighbors),
                           neighbors.node_order)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps_in} x {self.irreps_sh} -> "
                f"{self.irreps_out.simplify()} | {self.weight_numel} weights)")
