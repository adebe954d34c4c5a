from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from acn_pyg.graph import full_graph, radius_graph
from acn_pyg.nn.embedding.cutoff import PolynomialCutoff
from acn_pyg.utils.checks import (check_batch, check_pos, check_same_device, check_z,
                                  is_tracing)
from acn_pyg.utils.ranges import expand_ranges

MANY_BODY_TERMS = ("coulomb", "london", "atm")


def signed_log1p(x: Tensor) -> Tensor:
    r""":math:`\mathrm{sign}(x) \log(1 + |x|)`: smooth, odd, strictly
    increasing, the identity near zero and logarithmic for large :math:`|x|`."""
    return torch.sign(x) * torch.log1p(x.abs())


class ManyBodyTerms(torch.nn.Module):
    r"""Invariant many-body atom descriptors of the original AtomCloudNet:
    per-atom sums of two-body and three-body interactions (positions in
    Angstrom, :math:`Z` the atomic number):

    .. math::
        \mathrm{coulomb}_i &= \sum_{j \neq i} \frac{Z_i Z_j}{R_{ij}}\, f_{ij} \\
        \mathrm{london}_i &= \sum_{j \neq i} \frac{Z_i Z_j}{R_{ij}^6}\, f_{ij} \\
        \mathrm{atm}_i &= \sum_{\{j, k\},\, j \neq k \neq i}
            \frac{Z_i Z_j Z_k \,(1 + \cos a \cos b \cos c)}{(R_{ij} R_{jk} R_{ki})^3}
            \, f_{ij} f_{ik}

    with :math:`a, b, c` the interior angles of the triangle :math:`i, j, k`
    (Axilrod-Teller-Muto) and :math:`f` the smooth
    :class:`~acn_pyg.nn.PolynomialCutoff` envelope when :obj:`cutoff` is set
    (:math:`f \equiv 1` and sums over the whole molecule otherwise). With a
    cutoff, the cost is linear in the number of atoms. The sums are
    differentiable with respect to positions, so forces stay exact.

    With :obj:`normalize=True` every raw sum :math:`s` becomes
    :math:`\mathrm{sign}(s) \log(1 + |s|)` (:func:`signed_log1p`): smooth,
    monotone, and it brings Coulomb sums of hundreds and London sums near
    one to comparable scales.

    Args:
        terms (tuple of str, optional): Which terms, in output order, from
            :obj:`"coulomb"`, :obj:`"london"`, :obj:`"atm"`.
            (default: :obj:`("coulomb", "london", "atm")`)
        cutoff (float, optional): Cutoff radius in Angstrom. (default: :obj:`None`)
        normalize (bool, optional): Apply :func:`signed_log1p`. (default: :obj:`True`)

    Shapes:
        - **input:** atomic numbers :math:`(|\mathcal{V}|)`, positions
          :math:`(|\mathcal{V}|, 3)`, batch :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, \mathrm{len(terms)})`
    """

    def __init__(self, terms: Sequence[str] = MANY_BODY_TERMS, cutoff: Optional[float] = None,
                 normalize: bool = True):
        super().__init__()
        if isinstance(terms, str):
            terms = (terms,)
        terms = tuple(terms)
        unknown = [t for t in terms if t not in MANY_BODY_TERMS]
        if not terms or unknown or len(set(terms)) != len(terms):
            raise ValueError(
                f"'terms' must be distinct names from {MANY_BODY_TERMS} (got {terms!r})")
        if cutoff is not None and not cutoff > 0:
            raise ValueError(f"'cutoff' must be None or positive (got {cutoff!r})")
        self.terms: Tuple[str, ...] = terms
        self.cutoff = None if cutoff is None else float(cutoff)
        self.normalize = normalize
        self.envelope = PolynomialCutoff(cutoff) if cutoff is not None else None

    @property
    def num_features(self) -> int:
        return len(self.terms)

    def forward(self, z: Tensor, pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        if not is_tracing():
            check_same_device(z=z, pos=pos, batch=batch)
            check_z(z)
            check_pos(pos)
            if z.numel() != pos.size(0):
                raise ValueError(f"'z' has {z.numel()} atoms but 'pos' has {pos.size(0)}")
            check_batch(batch, pos.size(0))
        num_atoms = pos.size(0)
        if self.cutoff is None:
            edge_index = full_graph(num_atoms, batch, device=pos.device)
        else:
            edge_index = radius_graph(pos, self.cutoff, batch)
        j, i = edge_index
        # index_select rather than advanced indexing: faster on CPU.
        vec = pos.index_select(0, j) - pos.index_select(0, i)
        dist2 = vec.pow(2).sum(-1)
        dist = dist2.sqrt()
        zf = z.to(pos.dtype)
        zj = zf.index_select(0, j)
        zz = zf.index_select(0, i) * zj
        weight = torch.ones_like(dist) if self.envelope is None else self.envelope(dist).squeeze(-1)

        out = []
        for term in self.terms:
            if term == "coulomb":
                pair = zz / dist * weight
            elif term == "london":
                pair = zz / dist2.pow(3) * weight
            else:
                out.append(self._atm(zz, zj, vec, dist2, weight, i, num_atoms))
                continue
            out.append(pos.new_zeros(num_atoms).index_add(0, i, pair))
        result = torch.stack(out, dim=-1) if out else pos.new_zeros(num_atoms, 0)
        return signed_log1p(result) if self.normalize else result

    @staticmethod
    def _atm(zz: Tensor, zj: Tensor, vec: Tensor, dist2: Tensor, weight: Tensor, i: Tensor,
             num_atoms: int) -> Tensor:
        # Unordered pairs of edges (i <- j, i <- k) sharing the centre i, j < k:
        # edges are sorted by (i, j), so the edge of rank r pairs with ranks > r.
        num_edges = i.numel()
        count = torch.bincount(i, minlength=num_atoms)
        first = torch.cumsum(count, 0) - count
        rank = torch.arange(num_edges, device=i.device) - first.index_select(0, i)
        partners = count.index_select(0, i) - 1 - rank
        e1, within = expand_ranges(partners)
        e2 = e1 + 1 + within
        d_ij, d_ik = dist2.index_select(0, e1), dist2.index_select(0, e2)
        d_jk = (vec.index_select(0, e2) - vec.index_select(0, e1)).pow(2).sum(-1)
        # Product of the cosines of the three interior angles (law of cosines).
        cos3 = ((d_ij + d_ik - d_jk) * (d_ij + d_jk - d_ik) * (d_ik + d_jk - d_ij)
                / (8.0 * d_ij * d_ik * d_jk))
        triple = (zz.index_select(0, e1) * zj.index_select(0, e2) * (1.0 + cos3)
                  / (d_ij * d_ik * d_jk).pow(1.5)
                  * weight.index_select(0, e1) * weight.index_select(0, e2))
        return dist2.new_zeros(num_atoms).index_add(0, i.index_select(0, e1), triple)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(terms={self.terms}, cutoff={self.cutoff}, "
                f"normalize={self.normalize})")
