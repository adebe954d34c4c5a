from typing import List, Optional, Sequence, Tuple

import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.nn.irreps_linear import IrrepsLinear
from acn_pyg.utils.irreps import split_blocks


class SymmetricProduct(torch.nn.Module):
    r"""Products of an atom's cloud with itself, as in the product basis of
    MACE: the cloud is projected on :obj:`channels` channels per irrep, and
    its irreps are coupled channel-wise (e3nn :obj:`"uuu"`) into the requested
    output irreps, two at a time (body order three) and, with
    :obj:`correlation=3`, three at a time (body order four),

    .. math::
        \tilde{\mathbf{A}}_i &= \mathbf{W}\, \mathbf{A}_i \\
        \mathbf{B}^{(2)}_{i,u} &= \sqrt{2 l_3 + 1}\; C^{l_3}_{l_1 l_2}
        \left( \tilde{\mathbf{A}}^{(l_1)}_{i,u} \otimes
        \tilde{\mathbf{A}}^{(l_2)}_{i,u} \right), \quad l_1 \leq l_2 \\
        \mathbf{B}^{(3)}_{i,u} &= \sqrt{2 l_4 + 1}\; C^{l_4}_{l_3 l}
        \left( \mathbf{B}^{(2, l_3)}_{i,u} \otimes
        \tilde{\mathbf{A}}^{(l)}_{i,u} \right),

    every path :math:`p` then multiplied by an element-dependent weight
    :math:`1 + \mathbf{V}_{pu} \cdot \mathbf{s}_i` when atom attributes
    :math:`\mathbf{s}_i` (e.g. the element embedding) are given
    (:obj:`attr_channels`), so that each element weighs the shapes of its
    cloud in its own way; :math:`\mathbf{V}` starts at zero.

    With :obj:`contract=True` the paths are contracted per channel into one
    feature per output irrep, as in MACE's symmetric contraction:

    .. math::
        \bar{\mathbf{B}}^{(L)}_{i,u} = \sum_{p \to L} w_{pu}\,
        \mathbf{B}^{(p)}_{i,u},

    the sum running over every path :math:`p` that gives the irrep :math:`L`,
    the projected cloud :math:`\tilde{\mathbf{A}}^{(L)}_{i,u}` itself (the
    one-factor term) included, with learned weights
    :math:`w_{pu} \sim \mathcal{N}(0, 1/P_L)` (:math:`P_L` such paths),
    times the element-dependent factors when given.

    A cloud :math:`\mathbf{A}_i = \sum_j \phi(\mathbf{r}_{ij}, \mathbf{x}_j)`
    sums over single neighbours; :math:`\mathbf{B}^{(2)}_i` sums over pairs of
    neighbours :math:`(j, k)`, so it sees the angle :math:`j\,i\,k` and the
    directions of both, :math:`\mathbf{B}^{(3)}_i` over triples, which also
    sees the dihedral angles. The power spectrum :math:`\sum_m A^2` of
    :class:`~acn_pyg.nn.AtomCloudConv` is the :math:`l_1 = l_2,\, l_3 = 0`
    part of :math:`\mathbf{B}^{(2)}` without the mixing :math:`\mathbf{W}`.
    Pairs :math:`l_1 > l_2` are left out: for a product of a tensor with
    itself they repeat :math:`l_1 < l_2` up to a sign. The intermediate
    :math:`\mathbf{B}^{(2, l_3)}` are those whose :math:`l_3` the cloud holds.

    Args:
        irreps_in (e3nn.o3.Irreps or str): Irreps of the cloud.
        channels (int): Channels per irrep after the projection.
        filter_ir_out (list of e3nn.o3.Irrep, optional): The output irreps to
            produce. (default: :obj:`None`, every product)
        correlation (int, optional): The most cloud factors in a product:
            :obj:`2` or :obj:`3`. (default: :obj:`2`)
        attr_channels (int, optional): Size of the atom attributes
            :math:`\mathbf{s}_i` given to :meth:`forward`; :obj:`0`: the
            weights are the same for every atom. (default: :obj:`0`)
        contract (bool, optional): If :obj:`True`, the output is
            :math:`\bar{\mathbf{B}}`: :obj:`channels` features per output
            irrep instead of per path. (default: :obj:`False`)

    Shapes:
        - **input:** :math:`(|\mathcal{V}|, \dim(\mathrm{irreps\_in}))`, atom
          attributes :math:`(|\mathcal{V}|, \mathrm{attr\_channels})` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, \dim(\mathrm{irreps\_out}))`
    """

    def __init__(self, irreps_in, channels: int,
                 filter_ir_out: Optional[Sequence[o3.Irrep]] = None,
                 correlation: int = 2, attr_channels: int = 0, contract: bool = False):
        super().__init__()
        if not (isinstance(channels, int) and channels >= 1):
            raise ValueError(f"'channels' must be a positive int (got {channels!r})")
        if correlation not in (2, 3):
            raise ValueError(f"'correlation' must be 2 or 3 (got {correlation!r})")
        if not (isinstance(attr_channels, int) and attr_channels >= 0):
            raise ValueError(
                f"'attr_channels' must be a non-negative int (got {attr_channels!r})")
        self.irreps_in = o3.Irreps(irreps_in).simplify()
        self.channels = channels
        self.correlation = correlation
        self.attr_channels = attr_channels
        self.contract = bool(contract)
        irs = sorted({ir for _, ir in self.irreps_in})
        self.irreps_mid = o3.Irreps([(channels, ir) for ir in irs])
        wanted = None if filter_ir_out is None else {o3.Irrep(ir) for ir in filter_ir_out}

        def keep(ir: o3.Irrep) -> bool:
            return wanted is None or ir in wanted

        # Pairs (l1 <= l2 -> l3): those wanted out and, for triples, those
        # whose l3 the cloud holds.
        pairs: List[Tuple[int, int, o3.Irrep]] = []
        for i1, ir1 in enumerate(irs):
            for i2 in range(i1, len(irs)):
                for ir3 in ir1 * irs[i2]:
                    # A vector crossed with itself vanishes: drop the
                    # antisymmetric coupling of one irrep with itself.
                    if i1 == i2 and (ir1.l * 2 - ir3.l) % 2 == 1:
                        continue
                    if keep(ir3) or (correlation == 3 and ir3 in irs):
                        pairs.append((i1, i2, ir3))
        pair_dims = [ir.dim for _, _, ir in pairs]
        starts = [sum(pair_dims[:k]) for k in range(len(pairs))]
        out_pairs = [k for k, (_, _, ir) in enumerate(pairs) if keep(ir)]
        mid_pairs = ([k for k, (_, _, ir) in enumerate(pairs) if ir in irs]
                     if correlation == 3 else [])
        triples: List[Tuple[int, int, o3.Irrep]] = []
        for m, k in enumerate(mid_pairs):
            for i3, ir in enumerate(irs):
                for ir4 in pairs[k][2] * ir:
                    if keep(ir4):
                        triples.append((m, i3, ir4))
        out = [pairs[k][2] for k in out_pairs] + [ir for _, _, ir in triples]
        # Contracted: the projected cloud's own wanted irreps are paths too.
        linear = [i for i, ir in enumerate(irs) if keep(ir)] if self.contract else []
        out = [irs[i] for i in linear] + out
        if not out:
            raise ValueError(f"no product of {self.irreps_in} gives any of {filter_ir_out}")
        self.projection = IrrepsLinear(str(self.irreps_in), self.irreps_mid, bias=False)
        self.irreps_paths = o3.Irreps([(channels, ir) for ir in out])
        irs_out = sorted(set(out))
        self.irreps_out = (o3.Irreps([(channels, ir) for ir in irs_out]) if self.contract
                           else self.irreps_paths)
        # Every channel u uses the same bilinear map of its (2l+1)-vectors,
        # a sparse one (Clebsch-Gordan): B_u[k] = sum over nonzero (i, j, k)
        # of c a_u[i] a_u[j], one gather, product and scatter-add over all
        # channels at once.
        dt, d = torch.get_default_dtype(), sum(ir.dim for ir in irs)
        self._register_sparse("pair", _coupling(irs, irs, pairs).to(dt), d)

        def columns(ks):
            return torch.tensor([starts[k] + c for k in ks for c in range(pair_dims[k])],
                                dtype=torch.long)

        self._all_out = out_pairs == list(range(len(pairs)))
        self.register_buffer("out_columns", columns(out_pairs), persistent=False)
        self._triples = bool(triples)
        if triples:
            self.register_buffer("mid_columns", columns(mid_pairs), persistent=False)
            self._register_sparse("triple", _coupling(
                [pairs[k][2] for k in mid_pairs], irs, triples).to(dt), d)
        self._mid_dims = [channels * ir.dim for ir in irs]
        ir_starts = [sum(ir.dim for ir in irs[:i]) for i in range(len(irs))]
        self.register_buffer("linear_columns", torch.tensor(
            [ir_starts[i] + c for i in linear for c in range(irs[i].dim)], dtype=torch.long)
            if linear else None, persistent=False)
        if self.contract:
            # w_pu, and the output row each path's (2l+1) rows are summed into.
            self.path_weight = torch.nn.Parameter(torch.empty(len(out), channels))
            ends = [sum(ir.dim for ir in irs_out[:k]) for k in range(len(irs_out))]
            self.register_buffer("output_row", torch.tensor(
                [ends[irs_out.index(ir)] + c for ir in out for c in range(ir.dim)],
                dtype=torch.long), persistent=False)
            self._out_rows = sum(ir.dim for ir in irs_out)
            self._paths_per_output = [out.count(ir) for ir in out]
        else:
            self.register_parameter("path_weight", None)
        # Contracted into one output irrep (e.g. scalars only): the sum over
        # paths is a plain sum over [paths, 2L+1] rows.
        self._single_out = irs_out[0].dim if self.contract and len(irs_out) == 1 else 0
        self._out_dims = [ir.dim for ir in (irs_out if self.contract else out)]
        self.element_weights = (ElementFactors(attr_channels, channels * len(out))
                                if attr_channels > 0 else None)
        # Every component of a channel's outputs -> its path (the index into V s).
        self.register_buffer("path_of_column", torch.tensor(
            [p for p, ir in enumerate(out) for _ in range(ir.dim)], dtype=torch.long)
            if attr_channels > 0 or self.contract else None, persistent=False)
        self._one_row_per_path = all(ir.dim == 1 for ir in out)
        self.reset_parameters()

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
        if self.path_weight is not None:
            with torch.no_grad():
                paths = self.path_weight.new_tensor(self._paths_per_output)
                self.path_weight.normal_().div_(paths.sqrt().unsqueeze(-1))
        if self.element_weights is not None:
            self.element_weights.reset_parameters()

    def _register_sparse(self, name: str, coupling: Tensor, d2: int) -> None:
        # The nonzero entries of a [d1 d2, d_out] coupling matrix as the
        # rows i of the first factor, j of the second, k of the output and
        # their values; d_out as _{name}_rows.
        setattr(self, f"_{name}_rows", coupling.size(1))
        rows, k = (coupling.abs() > 1e-10).nonzero().unbind(-1)
        self.register_buffer(f"{name}_i", rows // d2, persistent=False)
        self.register_buffer(f"{name}_j", rows % d2, persistent=False)
        self.register_buffer(f"{name}_k", k, persistent=False)
        self.register_buffer(f"{name}_c", coupling[rows, k].unsqueeze(-1).unsqueeze(-1),
                             persistent=False)

    @staticmethod
    def _bilinear(x: Tensor, y: Tensor, i: Tensor, j: Tensor, k: Tensor, c: Tensor,
                  rows: int) -> Tensor:
        # [rows, n, u]: sum over nonzeros (i, j, k) of c x[i] y[j] into row k.
        src = x.index_select(0, i) * c * y.index_select(0, j)
        return src.new_zeros((rows,) + src.shape[1:]).index_add_(0, k, src)

    def forward(self, x: Tensor, attrs: Optional[Tensor] = None) -> Tensor:
        n, k = x.size(0), self.channels
        # [sum of 2l+1, n, u]: the projected irreps' components as rows, so
        # that every gather and scatter below moves whole rows.
        a = torch.cat([block.reshape(n, k, -1).permute(2, 0, 1) for block in
                       split_blocks(self.projection(x), self._mid_dims)], dim=0).contiguous()
        b2 = self._bilinear(a, a, self.pair_i, self.pair_j, self.pair_k, self.pair_c,
                            self._pair_rows)
        parts = [] if self.linear_columns is None else [a.index_select(0, self.linear_columns)]
        parts.append(b2 if self._all_out else b2.index_select(0, self.out_columns))
        if self._triples:
            mid = b2.index_select(0, self.mid_columns)
            parts.append(self._bilinear(mid, a, self.triple_i, self.triple_j, self.triple_k,
                                        self.triple_c, self._triple_rows))
        b = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]  # [paths' 2l+1, n, u]
        # Per path (and channel): the element factors times the contraction's
        # weights, one factor spread over the path's 2l+1 rows.
        w = None
        if self.element_weights is not None:
            if attrs is None:
                raise ValueError(f"this SymmetricProduct weighs its paths by atom attributes "
                                 f"(attr_channels={self.attr_channels}): pass 'attrs'")
            w = self.element_weights(attrs).view(n, k, -1).permute(2, 0, 1)
        if self.path_weight is not None:
            pw = self.path_weight.unsqueeze(1)  # [paths, 1, u]
            w = pw if w is None else w * pw
        if w is not None:
            b = b * (w if self._one_row_per_path else w.index_select(0, self.path_of_column))
        if self._single_out:
            b = b.view(-1, self._single_out, n, k).sum(0)
        elif self.path_weight is not None:
            b = b.new_zeros((self._out_rows, n, k)).index_add_(0, self.output_row, b)
        # Back to e3nn's layout: one [u, 2 l + 1] block per path (or output irrep).
        return torch.cat([block.permute(1, 2, 0).reshape(n, -1) for block in
                          split_blocks(b, self._out_dims, dim=0)], dim=-1)

    def __repr__(self) -> str:
        contract = ", contract=True" if self.contract else ""
        return (f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, "
                f"channels={self.channels}, correlation={self.correlation}{contract})")


class ElementFactors(torch.nn.Linear):
    r"""Per-atom factors :math:`1 + \mathbf{V}\mathbf{s}_i` from atom attributes
    :math:`\mathbf{s}_i`, with :math:`\mathbf{V}` (no bias) starting at zero,
    so that the factors start at one.

    Shapes:
        - **input:** :math:`(|\mathcal{V}|, \mathrm{in\_features})`
        - **output:** :math:`(|\mathcal{V}|, \mathrm{out\_features})`
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def reset_parameters(self) -> None:
        torch.nn.init.zeros_(self.weight)

    def forward(self, attrs: Tensor) -> Tensor:
        return 1.0 + super().forward(attrs)


def _coupling(irreps1: Sequence[o3.Irrep], irreps2: Sequence[o3.Irrep],
              instructions: List[Tuple[int, int, o3.Irrep]]) -> Tensor:
    r"""One channel's bilinear map as a matrix :math:`C` of shape
    :math:`[d_1 d_2, d_\mathrm{out}]`: :math:`(\mathbf{x} \otimes \mathbf{y})\, C`
    couples :math:`\mathbf{x}` (the irreps :obj:`irreps1` side by side) with
    :math:`\mathbf{y}` (:obj:`irreps2`) along :obj:`instructions` (index in
    :obj:`irreps1`, index in :obj:`irreps2`, output irrep), read off e3nn's
    one-channel product (component normalisation) on pairs of basis vectors."""
    one = o3.TensorProduct(
        o3.Irreps([(1, ir) for ir in irreps1]), o3.Irreps([(1, ir) for ir in irreps2]),
        o3.Irreps([(1, ir) for _, _, ir in instructions]),
        [(i1, i2, k, "uuu", False) for k, (i1, i2, _) in enumerate(instructions)],
        irrep_normalization="component", path_normalization="none")
    d1, d2 = sum(ir.dim for ir in irreps1), sum(ir.dim for ir in irreps2)
    eye1, eye2 = torch.eye(d1, dtype=torch.float64), torch.eye(d2, dtype=torch.float64)
    with torch.no_grad():
        return one.to(torch.float64)(eye1.repeat_interleave(d2, 0), eye2.repeat(d1, 1))
